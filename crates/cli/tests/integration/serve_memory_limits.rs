//! Bounded memory without refusing honest large values (issue 11, item 5):
//!
//! * a request over `--max-frame` is read and thrown away and answered with
//!   a `MemoryError` naming the limit and the flag, and the CPython proxy
//!   that sent it keeps working (it used to get `BrokenPipeError` and stay
//!   dead);
//! * a 300 MB `bytes` stored in a dict and read back works with the
//!   defaults, as with CPython's server;
//! * hostile requests of the worst shapes (up to 121× their size to
//!   decode before) sent at once by several connections fail with a
//!   readable `MemoryError` and the server keeps serving; the ignored perf
//!   test `hostile_requests_keep_peak_rss_under_the_bound` (run with
//!   `--ignored`) checks the server's peak RSS against the documented
//!   bound and prints its figures.

use crate::serve_common;

use std::time::Duration;

use mpmanager_pickle::Value;
use mpmanager_protocol::{PublicOp, Reply};
use mpmanager_testutil::pythons;
use serve_common::*;

const KEY: &str = "membound";

/// Oversized requests through a CPython proxy, then the same proxy again.
const OVERSIZED: &str = r#"
from multiprocessing.managers import RemoteError
m = SyncManager(address=address, authkey=key)
m.connect()
d = m.dict()
d['small'] = b'x' * 1000
for attempt in range(3):
    try:
        d['big'] = b'x' * (2 << 20)
        raise SystemExit('a 2 MiB request passed a 1 MiB --max-frame')
    except RemoteError as e:
        text = str(e)
        assert 'MemoryError: request of ' in text, text
        assert "exceeds the server's frame limit of 1048576 bytes" in text, text
        assert '--max-frame' in text, text
    # The proxy and its connection keep working.
    d['n'] = attempt
    assert d['n'] == attempt and d['small'] == b'x' * 1000
    assert 'big' not in d
print('OK')
"#;

#[test]
fn oversized_frame_gets_error_and_proxy_keeps_working() {
    let all = pythons();
    assert!(!all.is_empty(), "no CPython found");
    // The oldest and the newest interpreter.
    let mut picked = vec![all[0].clone()];
    if all.len() > 1 {
        picked.push(all[all.len() - 1].clone());
    }
    let dir = TempDir::new("oversized");
    for address in [
        "127.0.0.1:0".to_string(),
        format!("unix:{}", dir.path("sock").display()),
    ] {
        let srv = ServeProc::start(&address, Key::Env(KEY), &["--max-frame", "1MiB"]);
        for py in &picked {
            let code = format!("{PY_PRELUDE}{OVERSIZED}");
            let out = py.run_ok(&code, &[&srv.py_address(), &hex(KEY.as_bytes())], b"");
            assert_eq!(
                String::from_utf8_lossy(&out).trim(),
                "OK",
                "{} {address}",
                py.label()
            );
        }
        assert!(
            srv.stderr().contains("--max-frame"),
            "the refusal is logged: {}",
            srv.stderr()
        );
    }
}

/// A 300 MB `bytes` in a dict and back, as CPython's server takes it.
const BIG_BYTES: &str = r#"
m = SyncManager(address=address, authkey=key)
m.connect()
d = m.dict()
big = bytes(range(256)) * (300_000_000 // 256)
d['big'] = big
back = d['big']
assert len(back) == len(big) and back == big
del back
d['big'] = b'small'
assert d['big'] == b'small'
print('OK', len(big))
"#;

#[test]
fn big_bytes_value_round_trips_like_cpython() {
    let py = pythons().pop().expect("no CPython found");
    // The defaults: no limit flags.
    let srv = ServeProc::start("127.0.0.1:0", Key::Env(KEY), &[]);
    let code = format!("{PY_PRELUDE}{BIG_BYTES}");
    let out = py.run_ok(&code, &[&srv.py_address(), &hex(KEY.as_bytes())], b"");
    assert!(
        String::from_utf8_lossy(&out).starts_with("OK 300000000"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    eprintln!(
        "300 MB bytes round trip: server peak RSS {} MiB",
        proc_status(srv.pid(), "VmHWM:") / 1024
    );
}

// ---------------------------------------------------------------- memory

fn repeat(prefix: &[u8], unit: &[u8], size: usize, suffix: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    while v.len() + unit.len() + suffix.len() <= size {
        v.extend_from_slice(unit);
    }
    v.extend_from_slice(suffix);
    v
}

/// The worst shapes we know, each just under `size` bytes.
fn hostile(size: usize) -> Vec<(&'static str, Vec<u8>)> {
    let mut bytearrays = b"\x80\x04B\x00\x00\x10\x00".to_vec(); // 1 MiB bytes
    bytearrays.extend(vec![0u8; 1 << 20]);
    bytearrays.extend(b"\x94\x8c\x08builtins\x8c\x09bytearray\x93\x94(");
    let bytearrays = repeat(&bytearrays, b"h\x01h\x00\x85R", size, b"l.");
    let mut sets = b"\x80\x04](".to_vec();
    for i in 0..10_000u32 {
        sets.push(b'J');
        sets.extend(i.to_le_bytes());
    }
    sets.extend(b"e\x94\x8c\x08builtins\x8c\x09frozenset\x93\x94(");
    let sets = repeat(&sets, b"h\x01h\x00\x85R", size, b"l.");
    let deep = {
        let mut v = repeat(b"\x80\x04", b"](", size / 3 * 2, b"");
        let n = (v.len() - 2) / 2;
        v.extend(std::iter::repeat_n(b'e', n));
        v.push(b'.');
        v
    };
    vec![
        (
            "flat list of empty lists",
            repeat(b"\x80\x04](", b"]", size, b"e."),
        ),
        (
            "flat list of empty dicts",
            repeat(b"\x80\x04](", b"}", size, b"e."),
        ),
        (
            "memo GETs",
            repeat(b"\x80\x04]\x94(", b"h\x00", size, b"e."),
        ),
        ("DUPs", repeat(b"\x80\x04](K\x01", b"2", size, b"e.")),
        ("deep nesting", deep),
        ("bytearray copies", bytearrays),
        ("frozenset copies", sets),
    ]
}

struct StormFigures {
    idle_kib: u64,
    peak_kib: u64,
    requests: usize,
}

/// `threads` connections send every hostile shape `rounds` times at once;
/// each must get a `MemoryError` traceback. Then a CPython client checks
/// that the server serves.
fn storm(threads: usize, rounds: usize, budget_mib: usize) -> StormFigures {
    let frame = 8 << 20;
    let srv = ServeProc::start(
        "127.0.0.1:0",
        Key::Env(KEY),
        &[
            "--max-frame",
            "8MiB",
            "--max-request-memory",
            &format!("{budget_mib}MiB"),
            "--request-memory-wait",
            "5",
            "--log-level",
            "warn",
        ],
    );
    let addr = srv.address.clone();
    // Warm up: a few ordinary calls.
    let Reply::Return(Value::Tuple(t)) = one_shot(
        &addr,
        KEY.as_bytes(),
        PublicOp::Create,
        vec![Value::str("list"), Value::list(vec![Value::Int(1)])],
    ) else {
        panic!("create failed")
    };
    let ident = t[0].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(200));
    let idle_kib = proc_status(srv.pid(), "VmRSS:");
    let shapes = std::sync::Arc::new(hostile(frame));
    let workers: Vec<_> = (0..threads)
        .map(|w| {
            let (addr, shapes) = (addr.clone(), shapes.clone());
            std::thread::spawn(move || {
                let mut c = served(&addr, KEY.as_bytes());
                let mut n = 0;
                for r in 0..rounds {
                    for i in 0..shapes.len() {
                        let (name, data) = &shapes[(i + w + r) % shapes.len()];
                        assert!(data.len() <= 8 << 20, "{name}: {} bytes", data.len());
                        c.send(data).unwrap();
                        match recv(&mut c) {
                            Reply::Traceback(tb) => {
                                assert!(tb.contains("MemoryError: "), "{name}: {tb}")
                            }
                            other => panic!("{name}: {other:?}"),
                        }
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let requests = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let peak_kib = proc_status(srv.pid(), "VmHWM:");
    // It keeps serving: the raw list, and a CPython client.
    let mut c = served(&addr, KEY.as_bytes());
    assert_eq!(
        call(&mut c, &ident, "__len__", vec![]),
        Reply::Return(Value::Int(1))
    );
    let py = pythons().pop().expect("no CPython found");
    let code = format!(
        "{PY_PRELUDE}m = SyncManager(address=address, authkey=key); m.connect()\n\
         d = m.dict(); d['x'] = list(range(1000)); assert d['x'] == list(range(1000)); print('OK')"
    );
    let out = py.run_ok(&code, &[&srv.py_address(), &hex(KEY.as_bytes())], b"");
    assert_eq!(String::from_utf8_lossy(&out).trim(), "OK");
    StormFigures {
        idle_kib,
        peak_kib,
        requests,
    }
}

#[test]
fn hostile_requests_fail_readably_and_server_keeps_serving() {
    let f = storm(3, 1, 64);
    eprintln!(
        "{} hostile 8 MiB requests from 3 connections: server RSS idle {} MiB, peak {} MiB",
        f.requests,
        f.idle_kib / 1024,
        f.peak_kib / 1024
    );
}

/// The documented bound (README, "Memory limits"): the idle server plus
/// 2.5 × `--max-request-memory` plus 16 MiB. What requests in flight
/// hold is counted within the budget; the rest is what the allocator
/// keeps in the arenas of the connection threads and the transient
/// vectors that free a refused request's values. The threshold depends on
/// the allocator and kernel: a perf test. Measured here (glibc, 6
/// connections, 64 MiB): +115 to +145 MiB.
#[test]
#[ignore = "perf: allocator/kernel-dependent RSS threshold; run with --ignored"]
fn hostile_requests_keep_peak_rss_under_the_bound() {
    let budget_mib = 64;
    let threads = 6;
    let f = storm(threads, 3, budget_mib);
    let growth_mib = (f.peak_kib.saturating_sub(f.idle_kib)) / 1024;
    let bound_mib = (budget_mib * 5 / 2 + 16) as u64;
    eprintln!(
        "{} hostile 8 MiB requests from {threads} connections, --max-request-memory {budget_mib}MiB: \
         server RSS idle {} MiB, peak {} MiB (+{growth_mib} MiB; bound +{bound_mib} MiB)",
        f.requests,
        f.idle_kib / 1024,
        f.peak_kib / 1024
    );
    assert!(
        growth_mib <= bound_mib,
        "peak RSS grew by {growth_mib} MiB, over the bound of {bound_mib} MiB"
    );
}
