//! What decoding allocates, measured with a counting allocator, against
//! what the decoder counts ([`DecodeOptions::max_alloc`]): the count is an
//! upper bound of the real peak (within the allocator's rounding), honest
//! shapes fit the default limit, and hostile shapes are stopped at it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use mpmanager_pickle::{
    decode_with, decode_with_budget, encode, BudgetRefusal, DecodeErrorKind, DecodeOptions,
    MemoryBudget, Value,
};
use proptest::prelude::*;

/// Counts the bytes this thread has allocated (live and peak).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size() as isize);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note(-(l.size() as isize));
        // SAFETY: `p` came from `alloc` with `l`, as the caller guarantees.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // A moving realloc holds both blocks for a moment.
        note(new as isize);
        // SAFETY: `p` came from `alloc` with `l`, as the caller guarantees.
        let r = unsafe { System.realloc(p, l, new) };
        note(-(l.size() as isize));
        r
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Peak bytes allocated (above what was live before) while decoding
/// `data` with `opts`, and whether it decoded.
fn peak_of(data: &[u8], opts: &DecodeOptions) -> (usize, Result<(), DecodeErrorKind>) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = decode_with(data, opts);
    let peak = PEAK.with(Cell::get) - base;
    let r = r.map(drop).map_err(|e| e.kind);
    (peak.max(0) as usize, r)
}

/// A budget that grants everything and records how much.
struct Recording(usize);

impl MemoryBudget for Recording {
    fn take(&mut self, bytes: usize) -> Result<(), BudgetRefusal> {
        self.0 += bytes;
        Ok(())
    }
}

/// The decoder's own count for `data` (within one budget chunk, 1 MiB)
/// with a limit of 256 MiB (some hostile shapes would take gigabytes), and
/// the real peak of that decode.
fn counted(data: &[u8]) -> (usize, usize) {
    let opts = DecodeOptions::default().with_max_alloc(0, 256 << 20);
    let mut rec = Recording(0);
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    drop(decode_with_budget(data, &opts, &mut rec));
    let peak = PEAK.with(Cell::get) - base;
    (rec.0, peak.max(0) as usize)
}

fn repeat(prefix: &[u8], unit: &[u8], n: usize, suffix: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    for _ in 0..n {
        v.extend_from_slice(unit);
    }
    v.extend_from_slice(suffix);
    v
}

/// Honest values, pickled as CPython does (protocol 4, memoized).
fn honest() -> Vec<(&'static str, Vec<u8>)> {
    let n = 100_000;
    let mk = |v: Value| encode(&v).unwrap();
    vec![
        ("bytes 16 MB", mk(Value::bytes(&vec![7u8; 16 << 20]))),
        ("str 16 MB", mk(Value::str(&"x".repeat(16 << 20)))),
        (
            "list of small ints",
            mk(Value::list((0..n).map(|i| Value::Int(i % 200)).collect())),
        ),
        (
            "list of big ints",
            mk(Value::list((0..n).map(|i| Value::Int(i << 20)).collect())),
        ),
        (
            "list of floats",
            mk(Value::list(
                (0..n).map(|i| Value::Float(i as f64)).collect(),
            )),
        ),
        (
            "list of short strs",
            mk(Value::list(
                (0..n).map(|i| Value::str(&format!("k{i}"))).collect(),
            )),
        ),
        (
            "list of 40-byte strs",
            mk(Value::list(
                (0..n).map(|i| Value::str(&format!("{i:040}"))).collect(),
            )),
        ),
        (
            "list of None",
            mk(Value::list(vec![Value::None; n as usize])),
        ),
        (
            "dict int->int",
            mk(Value::dict((0..n).map(|i| (Value::Int(i), Value::Int(i))).collect()).unwrap()),
        ),
        (
            "dict str->float",
            mk(Value::dict(
                (0..n)
                    .map(|i| (Value::str(&format!("key{i}")), Value::Float(1.5)))
                    .collect(),
            )
            .unwrap()),
        ),
        (
            "list of pairs",
            mk(Value::list(
                (0..n)
                    .map(|i| Value::tuple(vec![Value::Int(i), Value::Int(1)]))
                    .collect(),
            )),
        ),
        (
            "list of empty lists",
            mk(Value::list((0..n).map(|_| Value::list(vec![])).collect())),
        ),
        (
            "list of empty dicts",
            mk(Value::list(
                (0..n).map(|_| Value::dict(vec![]).unwrap()).collect(),
            )),
        ),
        (
            "list of small dicts",
            mk(Value::list(
                (0..n / 4)
                    .map(|i| {
                        Value::dict(vec![
                            (Value::str("id"), Value::Int(i)),
                            (Value::str("name"), Value::str("n")),
                        ])
                        .unwrap()
                    })
                    .collect(),
            )),
        ),
    ]
}

/// Hostile shapes: the most allocation per input byte we know of.
fn hostile() -> Vec<(&'static str, Vec<u8>)> {
    let n = 300_000;
    let mut big_bytes_copies = b"\x80\x04B\x00\x00\x10\x00".to_vec(); // 1 MiB bytes
    big_bytes_copies.extend(vec![0u8; 1 << 20]);
    big_bytes_copies.extend(b"\x94\x8c\x08builtins\x8c\x09bytearray\x93\x94(");
    for _ in 0..2000 {
        big_bytes_copies.extend(b"h\x01h\x00\x85R");
    }
    big_bytes_copies.extend(b"l.");
    let mut set_copies = b"\x80\x04](".to_vec();
    for i in 0..10_000u32 {
        set_copies.extend(b"J");
        set_copies.extend(i.to_le_bytes());
    }
    set_copies.extend(b"e\x94\x8c\x08builtins\x8c\x09frozenset\x93\x94(");
    for _ in 0..20_000 {
        set_copies.extend(b"h\x01h\x00\x85R");
    }
    set_copies.extend(b"l.");
    vec![
        (
            "flat list of empty lists",
            repeat(b"\x80\x04](", b"]", n, b"e."),
        ),
        (
            "flat list of empty dicts",
            repeat(b"\x80\x04](", b"}", n, b"e."),
        ),
        (
            "flat list of empty sets",
            repeat(b"\x80\x04](", b"\x8f", n, b"e."),
        ),
        (
            "memoized empty lists",
            repeat(b"\x80\x04](", b"]\x94", n, b"e."),
        ),
        (
            "memo GETs of a list",
            repeat(b"\x80\x04]\x94(", b"h\x00", n, b"e."),
        ),
        ("DUPs", repeat(b"\x80\x04](K\x01", b"2", n, b"e.")),
        ("marks", repeat(b"\x80\x04", b"(", n, b"N.")),
        ("deep nesting (rejected)", {
            let mut v = repeat(b"\x80\x04", b"]\x94(", n, b"");
            v.extend(std::iter::repeat_n(b'e', n));
            v.push(b'.');
            v
        }),
        ("deep nesting, no memo (rejected)", {
            let mut v = repeat(b"\x80\x04", b"](", n, b"");
            v.extend(std::iter::repeat_n(b'e', n));
            v.push(b'.');
            v
        }),
        (
            "empty tuples as objects",
            repeat(b"\x80\x04](", b"N)\x81", n / 2, b"e."),
        ),
        ("bytearray copies of 1 MiB", big_bytes_copies),
        ("frozenset copies of a 10k list", set_copies),
    ]
}

/// Prints and returns: the peak under `opts`, the unlimited count and the
/// unlimited peak, and the result under `opts`.
fn report(
    name: &str,
    data: &[u8],
    opts: &DecodeOptions,
) -> (usize, usize, usize, Result<(), DecodeErrorKind>) {
    let (peak, r) = peak_of(data, opts);
    let (count, free_peak) = counted(data);
    let len = data.len() as f64;
    eprintln!(
        "{name:34} {:>8} B in | up to 256 MiB: peak {:>6.1}x, counted {:>6.1}x | limited: peak {:>6.1}x {}",
        data.len(),
        free_peak as f64 / len,
        count as f64 / len,
        peak as f64 / len,
        match &r {
            Ok(()) => "ok".to_string(),
            Err(k) => format!("refused: {k}"),
        }
    );
    (peak, count, free_peak, r)
}

/// Slack for fixed costs: the memo the decoder reserves up front (at most
/// 1.5 MiB, counted as its slots are used) and the allocator's view of
/// small allocations.
const SLACK: usize = 2 << 20;

#[test]
fn honest_values_fit_the_default_budget_and_the_count_bounds_the_peak() {
    let opts = DecodeOptions::default();
    for (name, data) in honest() {
        let (_, count, peak, r) = report(name, &data, &opts);
        assert!(r.is_ok(), "{name}: {r:?}");
        assert!(
            peak <= count + count / 8 + SLACK,
            "{name}: peak {peak} B, counted {count} B"
        );
    }
}

#[test]
fn hostile_shapes_are_stopped_at_the_limit() {
    // A small fixed part, so that the per-byte factor is what binds.
    let opts = DecodeOptions::default().with_max_alloc(32, 1 << 20);
    for (name, data) in hostile() {
        let limit = opts.max_alloc(data.len());
        let (peak, _, _, r) = report(name, &data, &opts);
        assert!(
            peak <= limit + limit / 8 + SLACK,
            "{name}: peak {peak} B over the limit {limit} B ({r:?})"
        );
    }
}

#[test]
fn budget_refusal_leaves_nothing_behind_and_names_the_limit() {
    let data = repeat(b"\x80\x04](", b"]", 100_000, b"e.");
    let opts = DecodeOptions::default().with_max_alloc(8, 0);
    let e = decode_with(&data, &opts).unwrap_err();
    assert!(matches!(e.kind, DecodeErrorKind::AllocLimit { limit } if limit == 8 * data.len()));
    assert!(
        e.to_string()
            .contains(&format!("more than {} bytes", 8 * data.len())),
        "{e}"
    );
    let before = LIVE.with(Cell::get);
    drop(decode_with(&data, &opts));
    assert!(LIVE.with(Cell::get) - before < 64 << 10);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any mix of the cheap opcodes: the peak stays within the limit.
    #[test]
    fn peak_stays_within_the_limit(ops in proptest::collection::vec(0usize..12, 1..400), factor in 1usize..64) {
        const UNITS: [&[u8]; 12] = [
            b"]", b"}", b"\x8f", b"(", b"N", b"K\x01", b"\x94", b"h\x00", b"2", b")", b"\x85", b"a",
        ];
        let mut data = b"\x80\x04](N\x94".to_vec();
        for _ in 0..50 {
            for &o in &ops {
                data.extend_from_slice(UNITS[o]);
            }
        }
        data.extend_from_slice(b"e.");
        let opts = DecodeOptions::default().with_max_alloc(factor, 0);
        let limit = opts.max_alloc(data.len());
        let (peak, _) = peak_of(&data, &opts);
        prop_assert!(peak <= limit + limit / 8 + SLACK, "peak {} limit {}", peak, limit);
    }
}
