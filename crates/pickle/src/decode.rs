//! The pickle decoder: protocols 0–5, bounded, never executing anything.
//!
//! [`decode`] reads what CPython 3.8–3.14's `pickle.dumps` writes for plain
//! data and objects, and produces a [`Value`]:
//!
//! * Built-in types become native values (`int`, `str`, `list`, `dict`, …).
//!   Shared and recursive references survive: a memo `GET` yields the very
//!   same value (see [`Value::is`]).
//! * `GLOBAL`/`STACK_GLOBAL` only *record* a [`Global`](crate::value::Global) (Python 2 names are
//!   mapped as CPython's `fix_imports` does); nothing is ever imported.
//! * `REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `INST` and `OBJ` record an opaque
//!   [`Object`], except for a few pure built-in constructors with arguments
//!   of the expected shape, which become native values: `set`, `frozenset`,
//!   `bytearray`, `bytes`, `complex`, `slice`, `list`, `tuple`, `dict` (from
//!   `builtins`) and `_codecs.encode(str, 'latin1')` (how protocols 0–2
//!   write `bytes`).
//! * Persistent ids, the extension registry and out-of-band buffers are
//!   rejected with [`DecodeErrorKind::Unsupported`].
//!
//! The decoder is a stack machine without recursion. Input size, memo size,
//! total work ([`DecodeOptions::max_items`]), nesting depth and decimal
//! integer length are bounded, so hostile input yields a [`DecodeError`]
//! naming the opcode and byte offset, never a panic, a crash or a hang.
//!
//! Nesting depth is tracked per stack entry (a container is one deeper than
//! the deepest thing put into it) and per memo entry. A container that is
//! mutated *after* it was placed inside another one (only possible through
//! memo references) does not update the depth recorded for its parents, so
//! the depth bound is exact for everything CPython writes but only a best
//! effort against crafted input; consumers walking a decoded value must
//! still guard their own recursion (cycles are possible anyway).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use num_bigint::BigInt;
use num_traits::Num;
use rustc_hash::FxHashMap;

use crate::exc::PyErr;
use crate::value::{Construct, Dict, Key, Object, PyStr, Set, Slice, Tuple, Value};

/// Limits applied while decoding.
///
/// ```
/// use mpmanager_pickle::decode::{decode_with, DecodeErrorKind, DecodeOptions};
/// let opts = DecodeOptions::default().with_max_depth(2);
/// // [[[]]] at protocol 2
/// let err = decode_with(b"\x80\x02]]]aa.", &opts).unwrap_err();
/// assert!(matches!(err.kind, DecodeErrorKind::DepthLimit { max: 2 }));
/// assert!(decode_with(b"\x80\x02]]a.", &opts).is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// Largest accepted input, in bytes (default 1 GiB).
    pub max_input: usize,
    /// Deepest accepted nesting of containers and objects (default 1000).
    /// A scalar has depth 0, a container one more than its deepest item.
    pub max_depth: usize,
    /// Most memo entries (default `1 << 24`).
    pub max_memo: usize,
    /// Most work items: stack pushes plus elements put into containers
    /// (default `1 << 28`).
    pub max_items: usize,
    /// Most digits in a decimal integer written as text (`INT`/`LONG`
    /// opcodes of protocol 0), default 4300 as CPython 3.11+'s
    /// `sys.get_int_max_str_digits()`; parsing long decimal text is
    /// quadratic.
    pub max_int_digits: usize,
    /// Memory decoding may allocate, per input byte (default 32). With
    /// [`max_alloc_extra`](DecodeOptions::max_alloc_extra), decoding an
    /// input of `n` bytes fails with [`DecodeErrorKind::AllocLimit`] once
    /// it has allocated more than `max_alloc_factor × n + max_alloc_extra`
    /// bytes (see [`DecodeOptions::max_alloc`]).
    ///
    /// What is counted: every value made (a `str`/`bytes` costs its
    /// length, a container its header), the capacity of containers and of
    /// the decoder's stack (each growth counts the whole new block, as a
    /// moving `realloc` holds both), memo slots as they are used (the memo
    /// reserved up front, at most 1.5 MiB, costs address space until
    /// then), and copies made by the builtin constructors decoded natively
    /// (`bytearray(b)`, `frozenset(l)`, …), with an allocator overhead per
    /// allocation. Nothing freed during decoding is given back, so the
    /// count bounds the decoder's peak memory (measured in
    /// `tests/decode_memory.rs`). Bytes and text cost about 1× their input;
    /// containers of small items written by CPython 10–35×, of empty lists
    /// or dicts ~100×; the densest hostile shapes (a flat list of a million
    /// empty lists, memo references copied into new containers) are
    /// stopped at the limit.
    pub max_alloc_factor: usize,
    /// Memory any input may allocate besides
    /// [`max_alloc_factor`](DecodeOptions::max_alloc_factor) per byte
    /// (default 64 MiB), so that small requests of any honest shape pass.
    pub max_alloc_extra: usize,
}

impl Default for DecodeOptions {
    fn default() -> DecodeOptions {
        DecodeOptions {
            max_input: 1 << 30,
            max_depth: crate::limits::MAX_DEPTH,
            max_memo: 1 << 24,
            max_items: 1 << 28,
            max_int_digits: crate::limits::INT_MAX_STR_DIGITS,
            max_alloc_factor: DEFAULT_ALLOC_FACTOR,
            max_alloc_extra: DEFAULT_ALLOC_EXTRA,
        }
    }
}

/// Default [`DecodeOptions::max_alloc_factor`].
pub const DEFAULT_ALLOC_FACTOR: usize = 32;
/// Default [`DecodeOptions::max_alloc_extra`]: 64 MiB.
pub const DEFAULT_ALLOC_EXTRA: usize = 64 << 20;

impl DecodeOptions {
    /// Sets [`max_input`](DecodeOptions::max_input).
    pub fn with_max_input(mut self, n: usize) -> DecodeOptions {
        self.max_input = n;
        self
    }
    /// Sets [`max_depth`](DecodeOptions::max_depth).
    pub fn with_max_depth(mut self, n: usize) -> DecodeOptions {
        self.max_depth = n;
        self
    }
    /// Sets [`max_memo`](DecodeOptions::max_memo).
    pub fn with_max_memo(mut self, n: usize) -> DecodeOptions {
        self.max_memo = n;
        self
    }
    /// Sets [`max_items`](DecodeOptions::max_items).
    pub fn with_max_items(mut self, n: usize) -> DecodeOptions {
        self.max_items = n;
        self
    }
    /// Sets [`max_int_digits`](DecodeOptions::max_int_digits).
    pub fn with_max_int_digits(mut self, n: usize) -> DecodeOptions {
        self.max_int_digits = n;
        self
    }
    /// Sets [`max_alloc_factor`](DecodeOptions::max_alloc_factor) and
    /// [`max_alloc_extra`](DecodeOptions::max_alloc_extra).
    pub fn with_max_alloc(mut self, factor: usize, extra: usize) -> DecodeOptions {
        self.max_alloc_factor = factor;
        self.max_alloc_extra = extra;
        self
    }

    /// The most memory decoding an input of `input_len` bytes may
    /// allocate: `max_alloc_factor × input_len + max_alloc_extra`.
    ///
    /// ```
    /// use mpmanager_pickle::decode::{decode_with, DecodeErrorKind, DecodeOptions};
    /// let opts = DecodeOptions::default().with_max_alloc(4, 1024);
    /// assert_eq!(opts.max_alloc(100), 1424);
    /// // A flat list of 10,000 empty lists: 10 KB of input, ~1 MB decoded.
    /// let mut p = b"\x80\x04](".to_vec();
    /// p.extend(std::iter::repeat(b']').take(10_000));
    /// p.extend(b"e.");
    /// let err = decode_with(&p, &opts).unwrap_err();
    /// assert!(matches!(err.kind, DecodeErrorKind::AllocLimit { limit } if limit == opts.max_alloc(p.len())));
    /// assert!(decode_with(&p, &DecodeOptions::default()).is_ok());
    /// ```
    pub fn max_alloc(&self, input_len: usize) -> usize {
        self.max_alloc_factor
            .saturating_mul(input_len)
            .saturating_add(self.max_alloc_extra)
    }
}

/// Memory shared by several decoders, e.g. a server's budget for all the
/// requests it decodes at once ([`decode_with_budget`]). The decoder takes
/// from it in chunks (from 64 KiB up to [`BUDGET_CHUNK`], but never past its
/// own [`DecodeOptions::max_alloc`]) as its count of allocated memory grows;
/// giving the memory back once the decoded value is dropped or stored is
/// the budget owner's business.
pub trait MemoryBudget {
    /// Takes `bytes` more. An error (why not: the budget is exhausted, a
    /// wait timed out, …) stops decoding with
    /// [`DecodeErrorKind::MemoryRefused`].
    fn take(&mut self, bytes: usize) -> Result<(), BudgetRefusal>;
}

/// Why a [`MemoryBudget`] refused memory.
pub type BudgetRefusal = Arc<dyn std::error::Error + Send + Sync>;

/// The most a decoder takes from a [`MemoryBudget`] at once beyond what it
/// needs right now: 1 MiB.
pub const BUDGET_CHUNK: usize = 1 << 20;

/// What went wrong while decoding (see [`DecodeError`] for where).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input is empty (CPython: `EOFError: Ran out of input`).
    #[error("empty input")]
    EmptyInput,
    /// The input is larger than [`DecodeOptions::max_input`].
    #[error("input of {len} bytes exceeds the limit of {max} bytes")]
    InputTooLarge {
        /// The input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ends inside an opcode's argument.
    #[error("truncated argument")]
    Truncated,
    /// The input ends before a `STOP` opcode.
    #[error("pickle data ended without a STOP opcode")]
    MissingStop,
    /// A byte that is no pickle opcode.
    #[error("unknown opcode")]
    UnknownOpcode,
    /// A valid opcode this decoder refuses (persistent ids, the extension
    /// registry, out-of-band buffers).
    #[error("unsupported opcode: {0}")]
    Unsupported(&'static str),
    /// A `PROTO` above 5.
    #[error("unsupported pickle protocol {0}")]
    UnsupportedProtocol(u8),
    /// An opcode needs more stack entries (above the last MARK) than exist.
    #[error("stack underflow")]
    StackUnderflow,
    /// An opcode needs a MARK and there is none.
    #[error("no MARK on the stack")]
    MissingMark,
    /// A memo `GET` of a key never `PUT`.
    #[error("memo key {0} not found")]
    MemoKeyNotFound(u64),
    /// A malformed argument (text number, quoting, negative length, …).
    #[error("invalid argument: {0}")]
    BadArgument(Cow<'static, str>),
    /// A `str` opcode whose bytes are not (surrogate-allowing) UTF-8, or a
    /// global name that is not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A Python 2 `str` (`STRING`/`BINSTRING`/`SHORT_BINSTRING`) that is not
    /// ASCII, which CPython's default `encoding='ASCII'` rejects too.
    #[error("Python 2 str is not ASCII")]
    NonAsciiString,
    /// A `FRAME` longer than the rest of the input.
    #[error("frame of {len} bytes but only {remaining} bytes left")]
    FrameTooLong {
        /// The frame length.
        len: u64,
        /// Bytes left after the frame header.
        remaining: usize,
    },
    /// A decimal text integer longer than [`DecodeOptions::max_int_digits`].
    #[error("integer of {digits} decimal digits exceeds the limit of {max}")]
    IntTooLong {
        /// The number of digits.
        digits: usize,
        /// The limit.
        max: usize,
    },
    /// A dict key or set member that cannot be hashed (a list, a dict, …).
    #[error("unhashable key: {0}")]
    Unhashable(PyErr),
    /// An operand of the wrong type (e.g. `APPEND` to a tuple, `REDUCE`
    /// arguments that are not a tuple, a `BUILD` state for a native value).
    #[error("{0}")]
    WrongType(Cow<'static, str>),
    /// Nesting deeper than [`DecodeOptions::max_depth`].
    #[error("nesting deeper than {max} levels")]
    DepthLimit {
        /// The limit.
        max: usize,
    },
    /// More memo entries than [`DecodeOptions::max_memo`].
    #[error("more than {max} memo entries")]
    MemoLimit {
        /// The limit.
        max: usize,
    },
    /// More work than [`DecodeOptions::max_items`].
    #[error("more than {max} items")]
    ItemLimit {
        /// The limit.
        max: usize,
    },
    /// Decoding would allocate more than [`DecodeOptions::max_alloc`]
    /// allows for this input.
    #[error("decoding would allocate more than {limit} bytes")]
    AllocLimit {
        /// The limit for this input, in bytes.
        limit: usize,
    },
    /// The shared [`MemoryBudget`] refused more memory (the source says
    /// why).
    #[error("no memory left to decode: {wanted} more bytes refused")]
    MemoryRefused {
        /// The bytes asked for.
        wanted: usize,
        /// Why the budget refused.
        #[source]
        source: BudgetRefusal,
    },
}

/// A decoding failure: what, at which byte offset, in which opcode.
///
/// ```
/// use mpmanager_pickle::decode::{decode, DecodeErrorKind};
/// // BINUNICODE claiming 5 bytes, with only 2 present
/// let err = decode(b"\x80\x04X\x05\x00\x00\x00ab").unwrap_err();
/// assert!(matches!(err.kind, DecodeErrorKind::Truncated));
/// assert_eq!((err.offset, err.opcode), (2, Some(b'X')));
/// assert_eq!(err.to_string(), "truncated argument of opcode BINUNICODE (0x58) at byte 2");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DecodeError {
    /// What went wrong.
    pub kind: DecodeErrorKind,
    /// Byte offset of the failing opcode (or of the end of input).
    pub offset: usize,
    /// The failing opcode, if the error belongs to one.
    pub opcode: Option<u8>,
}

impl DecodeError {
    fn new(kind: DecodeErrorKind, offset: usize, opcode: Option<u8>) -> DecodeError {
        DecodeError {
            kind,
            offset,
            opcode,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, self.opcode) {
            (DecodeErrorKind::UnknownOpcode, Some(op)) => {
                write!(f, "unknown opcode 0x{op:02x} at byte {}", self.offset)
            }
            (kind, Some(op)) => {
                let prep = if matches!(kind, DecodeErrorKind::Truncated) {
                    "of"
                } else {
                    "in"
                };
                match opcode_name(op) {
                    Some(name) => write!(f, "{kind} {prep} opcode {name} (0x{op:02x})")?,
                    None => write!(f, "{kind} {prep} opcode 0x{op:02x}")?,
                }
                write!(f, " at byte {}", self.offset)
            }
            (kind, None) => write!(f, "{kind} at byte {}", self.offset),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            DecodeErrorKind::MemoryRefused { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// The name of a pickle opcode (`"BINUNICODE"` for `0x58`), as in
/// CPython's `pickletools`; `None` for a byte that is no opcode.
///
/// ```
/// assert_eq!(mpmanager_pickle::decode::opcode_name(b'.'), Some("STOP"));
/// assert_eq!(mpmanager_pickle::decode::opcode_name(0xff), None);
/// ```
pub fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

/// Decodes one pickle with the default [`DecodeOptions`].
///
/// Bytes after the `STOP` opcode are ignored, as `pickle.loads` does.
///
/// ```
/// use mpmanager_pickle::{decode, Value};
/// // l = [1]; l.append(l); pickle.dumps(l, 2)
/// let v = decode(b"\x80\x02]q\x00(K\x01h\x00e.").unwrap();
/// let Value::List(l) = &v else { panic!() };
/// let items = l.read().items.clone();
/// assert_eq!(items[0].as_i64(), Some(1));
/// assert!(items[1].is(&v));
/// ```
pub fn decode(data: &[u8]) -> Result<Value, DecodeError> {
    decode_with(data, &DecodeOptions::default())
}

/// Decodes one pickle with the given limits.
///
/// ```
/// use mpmanager_pickle::decode::{decode_with, DecodeOptions};
/// use mpmanager_pickle::Value;
/// // pickle.dumps(('#RETURN', None), 4) as a manager reply
/// let v = decode_with(b"\x80\x04\x8c\x07#RETURN\x94N\x86\x94.", &DecodeOptions::default()).unwrap();
/// let Value::Tuple(t) = &v else { panic!() };
/// assert_eq!(t[0].as_str(), Some("#RETURN"));
/// assert!(matches!(t[1], Value::None));
/// ```
pub fn decode_with(data: &[u8], opts: &DecodeOptions) -> Result<Value, DecodeError> {
    decode_inner(data, opts, None)
}

/// [`decode_with`], taking the memory decoding allocates from `budget` as
/// well (besides the per-input bound [`DecodeOptions::max_alloc`]).
///
/// ```
/// use std::sync::Arc;
/// use mpmanager_pickle::decode::{decode_with_budget, BudgetRefusal, DecodeErrorKind, DecodeOptions, MemoryBudget};
/// struct Pool(usize);
/// impl MemoryBudget for Pool {
///     fn take(&mut self, bytes: usize) -> Result<(), BudgetRefusal> {
///         if bytes > self.0 {
///             return Err(Arc::from(Box::<dyn std::error::Error + Send + Sync>::from("pool empty")));
///         }
///         self.0 -= bytes;
///         Ok(())
///     }
/// }
/// let opts = DecodeOptions::default();
/// let small = b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94K\x01a.";
/// let mut pool = Pool(4 << 20);
/// assert!(decode_with_budget(small, &opts, &mut pool).is_ok());
/// let mut empty = Pool(0);
/// let err = decode_with_budget(small, &opts, &mut empty).unwrap_err();
/// assert!(matches!(err.kind, DecodeErrorKind::MemoryRefused { .. }));
/// ```
pub fn decode_with_budget(
    data: &[u8],
    opts: &DecodeOptions,
    budget: &mut dyn MemoryBudget,
) -> Result<Value, DecodeError> {
    decode_inner(data, opts, Some(budget))
}

fn decode_inner<'a>(
    data: &'a [u8],
    opts: &'a DecodeOptions,
    budget: Option<&'a mut dyn MemoryBudget>,
) -> Result<Value, DecodeError> {
    if data.is_empty() {
        return Err(DecodeError::new(DecodeErrorKind::EmptyInput, 0, None));
    }
    if data.len() > opts.max_input {
        return Err(DecodeError::new(
            DecodeErrorKind::InputTooLarge {
                len: data.len(),
                max: opts.max_input,
            },
            0,
            None,
        ));
    }
    let bufs = BUFFERS.with(Cell::take).unwrap_or_else(|| Buffers {
        stack: Vec::with_capacity(16),
        marks: Vec::new(),
        memo: Vec::new(),
    });
    let limit = opts.max_alloc(data.len());
    let granted = if budget.is_some() { 0 } else { limit };
    let mut d = Decoder {
        data,
        pos: 0,
        op_pos: 0,
        op: 0,
        stack: bufs.stack,
        marks: bufs.marks,
        memo: bufs.memo,
        sparse: FxHashMap::default(),
        memo_count: 0,
        items: 0,
        proto: 0,
        empty_tuple: None,
        opts,
        alloc: 0,
        granted,
        limit,
        budget,
    };
    // The vectors kept from an earlier decode are this decode's memory too.
    // Every memo entry costs at least two bytes of input; most values
    // take more. Reserving up front saves copying a large memo as it grows
    // (at most 64 Ki entries, 1.5 MiB, are reserved).
    // The reservation is counted as its slots are used (untouched, it
    // costs address space, not memory): a large input may be one `bytes`.
    let memo = (data.len() / 8).clamp(8, 1 << 16).max(d.memo.capacity());
    let result = d
        .charge(d.stack.capacity() * size_of::<Entry>())
        .map_err(|mut e| {
            // Before the first opcode.
            e.opcode = None;
            e
        })
        .and_then(|()| {
            d.memo.reserve(memo);
            d.run()
        });
    let mut bufs = Buffers {
        stack: std::mem::take(&mut d.stack),
        marks: std::mem::take(&mut d.marks),
        memo: std::mem::take(&mut d.memo),
    };
    drop(d);
    bufs.stack.clear();
    bufs.marks.clear();
    bufs.memo.clear();
    if bufs.stack.capacity() <= KEEP_STACK && bufs.memo.capacity() <= KEEP_MEMO {
        BUFFERS.with(|b| b.set(Some(bufs)));
    }
    result
}

/// The decoder's vectors, kept per thread between decodes so that decoding
/// a small message allocates nothing but its values.
struct Buffers {
    stack: Vec<Entry>,
    marks: Vec<usize>,
    memo: Vec<Option<MemoSlot>>,
}

/// Largest vectors kept for the next decode (entries).
const KEEP_STACK: usize = 1024;
const KEEP_MEMO: usize = 4096;

thread_local! {
    static BUFFERS: Cell<Option<Buffers>> = const { Cell::new(None) };
}

type Result<T, E = DecodeError> = std::result::Result<T, E>;

const NO_MEMO: u32 = u32::MAX;

/// A stack entry: the value, its nesting depth, and the memo key it was
/// last stored under or fetched from (to keep the memo's depth current).
struct Entry {
    v: Value,
    d: u32,
    memo: u32,
}

struct MemoSlot {
    v: Value,
    d: u32,
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    op: u8,
    stack: Vec<Entry>,
    marks: Vec<usize>,
    /// Dense memo for small keys; `sparse` for the others.
    memo: Vec<Option<MemoSlot>>,
    sparse: FxHashMap<u64, MemoSlot>,
    memo_count: usize,
    items: usize,
    proto: u8,
    empty_tuple: Option<Value>,
    opts: &'a DecodeOptions,
    /// Bytes counted as allocated so far (see
    /// [`DecodeOptions::max_alloc_factor`]).
    alloc: usize,
    /// Bytes `alloc` may reach before more is asked of `budget` (all of
    /// `limit` without a budget).
    granted: usize,
    /// [`DecodeOptions::max_alloc`] for this input.
    limit: usize,
    budget: Option<&'a mut dyn MemoryBudget>,
}

// ---- what decoding allocates -------------------------------------------------

/// Allocator overhead counted per allocation (a glibc chunk header and
/// rounding to 16 bytes).
const MALLOC: usize = 16;
/// A memo slot.
const MEMO_SLOT: usize = size_of::<Option<MemoSlot>>();
/// An entry of the sparse memo (hash table slot and control byte).
const SPARSE_SLOT: usize = size_of::<(u64, MemoSlot)>() * 2 + 2;
/// A `Value` in a vector or tuple.
const VALUE: usize = size_of::<Value>();
/// An `Arc` allocation holding `T`.
const fn arc<T>() -> usize {
    2 * size_of::<usize>() + size_of::<T>() + MALLOC
}
/// A new list, dict, set or object (its shared cell).
const LIST: usize = arc::<parking_lot::RwLock<crate::value::List>>();
const DICT: usize = arc::<parking_lot::RwLock<Dict>>();
const SET: usize = arc::<parking_lot::RwLock<Set>>();
const OBJECT: usize = arc::<parking_lot::RwLock<Object>>();
/// One unit of a dict's capacity: an entry (hash, key, value) and its
/// index slot in the hash table (8 bytes and a control byte, with the
/// table at most 7/8 full).
const DICT_ENTRY: usize = 8 + size_of::<Key>() + VALUE + 11;
/// One unit of a set's capacity.
const SET_ENTRY: usize = 8 + size_of::<Key>() + 11;
/// A cycle-collector candidate ([`crate::cycles::track`]).
const TRACKED: usize = 32;
/// A `str`/`bytes`/`bigint` of `n` bytes on the heap.
const fn heap_bytes(n: usize) -> usize {
    n + 2 * size_of::<usize>() + MALLOC
}
/// What copying `v` into a new container costs at most (for the builtin
/// constructors decoded natively: `bytearray(b)`, `set(l)`, `dict(d)` …).
fn copy_cost(v: &Value) -> usize {
    match v {
        Value::Str(s) => heap_bytes(s.as_wtf8().len()),
        Value::Bytes(b) => heap_bytes(b.len()),
        Value::ByteArray(b) => heap_bytes(b.read().len()),
        Value::List(l) => l.read().len() * DICT_ENTRY,
        Value::Tuple(t) => t.len() * DICT_ENTRY,
        Value::Set(x) => x.read().len() * DICT_ENTRY,
        Value::FrozenSet(x) => x.len() * DICT_ENTRY,
        Value::Dict(d) => d.read().len() * DICT_ENTRY,
        _ => 0,
    }
}

use DecodeErrorKind as K;

fn wrong(msg: impl Into<Cow<'static, str>>) -> DecodeErrorKind {
    K::WrongType(msg.into())
}

fn bad(msg: impl Into<Cow<'static, str>>) -> DecodeErrorKind {
    K::BadArgument(msg.into())
}

impl<'a> Decoder<'a> {
    #[cold]
    fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(kind, self.op_pos, Some(self.op))
    }

    // ---- memory ----------------------------------------------------------

    /// Counts `n` more bytes as allocated (see
    /// [`DecodeOptions::max_alloc_factor`]).
    #[inline]
    fn charge(&mut self, n: usize) -> Result<()> {
        self.alloc = self.alloc.saturating_add(n);
        if self.alloc > self.granted {
            return self.charge_slow();
        }
        Ok(())
    }

    /// Past what was granted: over the limit, or time to ask the budget.
    #[cold]
    fn charge_slow(&mut self) -> Result<()> {
        if self.alloc > self.limit {
            return Err(self.err(K::AllocLimit { limit: self.limit }));
        }
        // Chunks grow with what was taken, from 64 KiB (most requests need
        // no more) to BUDGET_CHUNK.
        let chunk = self.granted.clamp(BUDGET_CHUNK / 16, BUDGET_CHUNK);
        let need = self.alloc - self.granted;
        let want = need.max(chunk).min(self.limit - self.granted);
        let Some(b) = self.budget.as_mut() else {
            self.granted = self.limit;
            return Ok(());
        };
        // A whole chunk if there is one, else just what is needed.
        let r = match b.take(want) {
            Ok(()) => Ok(want),
            Err(_) if want > need => b.take(need).map(|()| need),
            Err(e) => Err(e),
        };
        match r {
            Ok(n) => {
                self.granted += n;
                Ok(())
            }
            Err(source) => Err(self.err(K::MemoryRefused {
                wanted: need,
                source,
            })),
        }
    }

    /// Counts the growth of a vector that is about to receive `extra` more
    /// items of `item` bytes (nothing while its capacity suffices).
    #[inline]
    fn charge_vec(&mut self, len: usize, cap: usize, extra: usize, item: usize) -> Result<()> {
        let need = len.saturating_add(extra);
        if need <= cap {
            return Ok(());
        }
        // Vec grows to at least double (4 items at first); a moving
        // `realloc` holds the old and the new block for a moment, so the
        // whole new block is counted (in all, twice the final capacity).
        let new_cap = need.max(cap.saturating_mul(2)).max(4);
        self.charge(new_cap.saturating_mul(item).saturating_add(MALLOC))
    }

    // ---- readers -------------------------------------------------------

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let data = self.data;
        if data.len() - self.pos < n {
            return Err(self.err(K::Truncated));
        }
        let s = &data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    #[inline]
    fn u8(&mut self) -> Result<u8> {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.err(K::Truncated)),
        }
    }

    #[inline]
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }

    #[inline]
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }

    /// Reads `n` bytes where `n` comes from the input as a `u64`.
    #[inline]
    fn take_u64(&mut self, n: u64) -> Result<&'a [u8]> {
        match usize::try_from(n) {
            Ok(n) => self.take(n),
            Err(_) => Err(self.err(K::Truncated)),
        }
    }

    /// A negative 4-byte length is an error, as in CPython.
    fn take_i32_len(&mut self) -> Result<&'a [u8]> {
        let n = i32::from_le_bytes(self.arr()?);
        if n < 0 {
            return Err(self.err(bad("negative byte count")));
        }
        self.take(n as usize)
    }

    /// A text line, without its `\n`.
    fn line(&mut self) -> Result<&'a [u8]> {
        let data = self.data;
        let rest = &data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => Err(self.err(K::Truncated)),
        }
    }

    // ---- stack -----------------------------------------------------------

    #[inline]
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    #[inline]
    fn count(&mut self, n: usize) -> Result<()> {
        self.items = self.items.saturating_add(n);
        if self.items > self.opts.max_items {
            return Err(self.err(K::ItemLimit {
                max: self.opts.max_items,
            }));
        }
        Ok(())
    }

    #[inline]
    fn push(&mut self, v: Value, d: u32) -> Result<()> {
        self.count(1)?;
        if self.stack.len() == self.stack.capacity() {
            self.charge_vec(
                self.stack.len(),
                self.stack.capacity(),
                1,
                size_of::<Entry>(),
            )?;
        }
        self.stack.push(Entry {
            v,
            d,
            memo: NO_MEMO,
        });
        Ok(())
    }

    /// Pushes a scalar (depth 0).
    #[inline]
    fn push0(&mut self, v: Value) -> Result<()> {
        self.push(v, 0)
    }

    #[inline]
    fn pop(&mut self) -> Result<Entry> {
        if self.stack.len() <= self.fence() {
            return Err(self.err(K::StackUnderflow));
        }
        match self.stack.pop() {
            Some(e) => Ok(e),
            None => Err(self.err(K::StackUnderflow)),
        }
    }

    /// Index of the top entry, which must be above the fence.
    #[inline]
    fn top_index(&self) -> Result<usize> {
        let n = self.stack.len();
        if n <= self.fence() {
            return Err(self.err(K::StackUnderflow));
        }
        Ok(n - 1)
    }

    /// Pops the last MARK, returning the stack index it points to.
    #[inline]
    fn pop_mark(&mut self) -> Result<usize> {
        match self.marks.pop() {
            Some(m) => Ok(m),
            None => Err(self.err(K::MissingMark)),
        }
    }

    /// The depth of a container holding items of depth at most `child`.
    #[inline]
    fn nest(&self, child: u32) -> Result<u32> {
        let d = child.saturating_add(1);
        if d as usize > self.opts.max_depth {
            return Err(self.err(K::DepthLimit {
                max: self.opts.max_depth,
            }));
        }
        Ok(d)
    }

    /// Records that stack entry `i` now holds something of depth `child`.
    fn deepen(&mut self, i: usize, child: u32) -> Result<()> {
        let d = self.nest(child)?;
        if d > self.stack[i].d {
            self.stack[i].d = d;
            let key = self.stack[i].memo;
            if key != NO_MEMO {
                let v = &self.stack[i].v;
                let slot = match self.memo.get_mut(key as usize) {
                    Some(Some(s)) => Some(s),
                    _ => self.sparse.get_mut(&(key as u64)),
                };
                if let Some(s) = slot {
                    if s.v.is(v) && s.d < d {
                        s.d = d;
                    }
                }
            }
        }
        Ok(())
    }

    /// Drains the stack above `from` into a vector, with the maximum depth.
    fn drain_values(&mut self, from: usize) -> (Vec<Value>, u32) {
        let mut maxd = 0;
        let items = self
            .stack
            .drain(from..)
            .map(|e| {
                maxd = maxd.max(e.d);
                e.v
            })
            .collect();
        (items, maxd)
    }

    fn max_depth_from(&self, from: usize) -> u32 {
        self.stack[from..].iter().map(|e| e.d).max().unwrap_or(0)
    }

    // ---- memo ------------------------------------------------------------

    fn memo_get(&self, key: u64) -> Option<&MemoSlot> {
        if let Ok(i) = usize::try_from(key) {
            if let Some(Some(s)) = self.memo.get(i) {
                return Some(s);
            }
        }
        if self.sparse.is_empty() {
            None
        } else {
            self.sparse.get(&key)
        }
    }

    fn new_memo_entry(&mut self) -> Result<()> {
        self.memo_count += 1;
        if self.memo_count > self.opts.max_memo {
            return Err(self.err(K::MemoLimit {
                max: self.opts.max_memo,
            }));
        }
        Ok(())
    }

    /// Stores the top of the stack under `key`.
    fn memo_put(&mut self, key: u64) -> Result<()> {
        let t = self.top_index()?;
        let slot = MemoSlot {
            v: self.stack[t].v.clone(),
            d: self.stack[t].d,
        };
        let dense_limit = self.memo_count.saturating_mul(2).saturating_add(256);
        match usize::try_from(key) {
            // The common case: MEMOIZE numbers entries sequentially.
            Ok(i) if i == self.memo.len() && self.sparse.is_empty() => {
                self.new_memo_entry()?;
                self.charge_vec(self.memo.len(), self.memo.capacity(), 1, MEMO_SLOT)?;
                self.charge(MEMO_SLOT)?;
                self.memo.push(Some(slot));
            }
            Ok(i) if i < self.memo.len() => {
                if self.memo[i].replace(slot).is_none()
                    && (self.sparse.is_empty() || self.sparse.remove(&key).is_none())
                {
                    self.new_memo_entry()?;
                }
            }
            Ok(i) if i <= dense_limit => {
                if self.sparse.is_empty() || self.sparse.remove(&key).is_none() {
                    self.new_memo_entry()?;
                }
                let extra = i + 1 - self.memo.len();
                self.charge_vec(self.memo.len(), self.memo.capacity(), extra, MEMO_SLOT)?;
                self.charge(extra * MEMO_SLOT)?;
                self.memo.resize_with(i + 1, || None);
                self.memo[i] = Some(slot);
            }
            _ => {
                self.charge(SPARSE_SLOT)?;
                if self.sparse.insert(key, slot).is_none() {
                    self.new_memo_entry()?;
                }
            }
        }
        self.stack[t].memo = u32::try_from(key).unwrap_or(NO_MEMO);
        Ok(())
    }

    fn memo_fetch(&mut self, key: u64) -> Result<()> {
        let (v, d) = match self.memo_get(key) {
            Some(s) => (s.v.clone(), s.d),
            None => return Err(self.err(K::MemoKeyNotFound(key))),
        };
        // A mutable container met a second time may close a cycle: let the
        // cycle collector know, so it is reclaimed once unreachable.
        self.track(&v)?;
        self.push(v, d)?;
        if let Some(e) = self.stack.last_mut() {
            e.memo = u32::try_from(key).unwrap_or(NO_MEMO);
        }
        Ok(())
    }

    /// A memo key written as text (`PUT`/`GET`).
    fn text_memo_key(&mut self) -> Result<u64> {
        let line = self.line()?;
        let s = std::str::from_utf8(line).map_err(|_| self.err(bad("memo key is not a number")))?;
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        match s.strip_prefix('+').unwrap_or(s).parse::<u64>() {
            Ok(k) => Ok(k),
            Err(_) if s.starts_with('-') => Err(self.err(bad("negative memo key"))),
            Err(_) => Err(self.err(bad("memo key is not a number"))),
        }
    }

    // ---- the machine -----------------------------------------------------

    fn run(&mut self) -> Result<Value> {
        let data = self.data;
        while self.pos < data.len() {
            self.op_pos = self.pos;
            let op = data[self.pos];
            self.op = op;
            self.pos += 1;
            match op {
                // -- strings and bytes (hot paths first) --
                0x8c => {
                    let n = self.u8()? as usize;
                    // Short strs (most of them): read a whole 16-byte chunk
                    // when the input has one.
                    if n <= PyStr::INLINE_MAX {
                        if let Some(chunk) = data.get(self.pos..self.pos + 16) {
                            let chunk: &[u8; 16] = chunk.try_into().expect("16 bytes");
                            self.pos += n;
                            match PyStr::from_wtf8_chunk(chunk, n) {
                                Some(s) => self.push0(Value::Str(s))?,
                                None => return Err(self.err(K::InvalidUtf8)),
                            }
                            continue;
                        }
                    }
                    let b = self.take(n)?;
                    self.push_str(b)?;
                }
                b'X' => {
                    let n = self.u32()? as u64;
                    let b = self.take_u64(n)?;
                    self.push_str(b)?;
                }
                0x8d => {
                    let n = self.u64()?;
                    let b = self.take_u64(n)?;
                    self.push_str(b)?;
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push_bytes(b)?;
                }
                b'B' => {
                    let n = self.u32()? as u64;
                    let b = self.take_u64(n)?;
                    self.push_bytes(b)?;
                }
                0x8e => {
                    let n = self.u64()?;
                    let b = self.take_u64(n)?;
                    self.push_bytes(b)?;
                }
                0x96 => {
                    let n = self.u64()?;
                    let b = self.take_u64(n)?;
                    self.charge(heap_bytes(b.len()) + arc::<parking_lot::RwLock<Vec<u8>>>())?;
                    self.push0(Value::bytearray(b.to_vec()))?;
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push_py2_str(b)?;
                }
                b'T' => {
                    let b = self.take_i32_len()?;
                    self.push_py2_str(b)?;
                }
                b'S' => {
                    let line = self.line()?;
                    self.charge(heap_bytes(line.len()))?;
                    let b = self.string_literal(line)?;
                    self.push_py2_str(&b)?;
                }
                b'V' => {
                    let line = self.line()?;
                    self.charge(heap_bytes(line.len().saturating_mul(2)))?;
                    let s = raw_unicode_escape(line).map_err(|m| self.err(bad(m)))?;
                    self.push0(Value::Str(s))?;
                }

                // -- memo --
                0x94 => {
                    // Fast path: MEMOIZE appends to a dense memo.
                    let i = self.memo_count;
                    let n = self.stack.len();
                    if i == self.memo.len()
                        && i < self.opts.max_memo
                        && i < NO_MEMO as usize
                        && n > self.fence()
                        && self.sparse.is_empty()
                    {
                        if i == self.memo.capacity() {
                            self.charge_vec(i, i, 1, MEMO_SLOT)?;
                        }
                        self.charge(MEMO_SLOT)?;
                        let e = &mut self.stack[n - 1];
                        e.memo = i as u32;
                        let slot = MemoSlot {
                            v: e.v.clone(),
                            d: e.d,
                        };
                        self.memo.push(Some(slot));
                        self.memo_count = i + 1;
                        continue;
                    }
                    let key = self.memo_count as u64;
                    self.memo_put(key)?;
                }
                b'q' => {
                    let key = self.u8()? as u64;
                    self.memo_put(key)?;
                }
                b'r' => {
                    let key = self.u32()? as u64;
                    self.memo_put(key)?;
                }
                b'p' => {
                    let key = self.text_memo_key()?;
                    self.memo_put(key)?;
                }
                b'h' => {
                    let key = self.u8()? as u64;
                    self.memo_fetch(key)?;
                }
                b'j' => {
                    let key = self.u32()? as u64;
                    self.memo_fetch(key)?;
                }
                b'g' => {
                    let key = self.text_memo_key()?;
                    self.memo_fetch(key)?;
                }

                // -- numbers and constants --
                b'K' => {
                    let b = self.u8()?;
                    self.push0(Value::Int(b as i64))?;
                }
                b'M' => {
                    let b = u16::from_le_bytes(self.arr()?);
                    self.push0(Value::Int(b as i64))?;
                }
                b'J' => {
                    let b = i32::from_le_bytes(self.arr()?);
                    self.push0(Value::Int(b as i64))?;
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        self.charge(heap_bytes(n) + arc::<BigInt>())?;
                    }
                    self.push0(decode_long(b))?;
                }
                0x8b => {
                    let b = self.take_i32_len()?;
                    if b.len() > 8 {
                        self.charge(heap_bytes(b.len()) + arc::<BigInt>())?;
                    }
                    self.push0(decode_long(b))?;
                }
                b'G' => {
                    let b = self.arr::<8>()?;
                    self.push0(Value::Float(f64::from_be_bytes(b)))?;
                }
                b'N' => self.push0(Value::None)?,
                0x88 => self.push0(Value::Bool(true))?,
                0x89 => self.push0(Value::Bool(false))?,
                b'I' => {
                    let line = self.line()?;
                    let v = match line {
                        b"00" => Value::Bool(false),
                        b"01" => Value::Bool(true),
                        _ => self.text_int(line)?,
                    };
                    self.push0(v)?;
                }
                b'L' => {
                    let line = self.line()?;
                    let line = line.strip_suffix(b"L").unwrap_or(line);
                    let v = self.text_int(line)?;
                    self.push0(v)?;
                }
                b'F' => {
                    let line = self.line()?;
                    let f = parse_float(line).ok_or_else(|| self.err(bad("not a float")))?;
                    self.push0(Value::Float(f))?;
                }

                // -- tuples --
                b')' => {
                    let t = self
                        .empty_tuple
                        .get_or_insert_with(|| Value::tuple(Vec::new()))
                        .clone();
                    self.push(t, 1)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < self.fence() + n {
                        return Err(self.err(K::StackUnderflow));
                    }
                    let from = self.stack.len() - n;
                    self.make_tuple(from)?;
                }
                b't' => {
                    let from = self.pop_mark()?;
                    self.make_tuple(from)?;
                }

                // -- lists --
                b']' => {
                    self.charge(LIST)?;
                    self.push(Value::list(Vec::new()), 1)?
                }
                b'a' => {
                    let t = self.top_index()?;
                    if t <= self.fence() {
                        return Err(self.err(K::StackUnderflow));
                    }
                    self.extend_list(t - 1, t)?;
                }
                b'e' => {
                    let m = self.pop_mark()?;
                    if m == 0 || m <= self.fence() || m > self.stack.len() {
                        return Err(self.err(K::StackUnderflow));
                    }
                    self.extend_list(m - 1, m)?;
                }
                b'l' => {
                    let from = self.pop_mark()?;
                    self.charge(LIST + heap_bytes((self.stack.len() - from) * VALUE))?;
                    let (items, maxd) = self.drain_values(from);
                    let d = self.nest(maxd)?;
                    self.count(items.len())?;
                    self.push(Value::list(items), d)?;
                }

                // -- dicts --
                b'}' => {
                    self.charge(DICT)?;
                    self.push(Value::Dict(crate::value::shared(Dict::default())), 1)?
                }
                b's' => {
                    let n = self.stack.len();
                    if n < self.fence() + 3 {
                        return Err(self.err(K::StackUnderflow));
                    }
                    self.set_items(n - 3, n - 2)?;
                }
                b'u' => {
                    let m = self.pop_mark()?;
                    if m == 0 || m <= self.fence() || m > self.stack.len() {
                        return Err(self.err(K::StackUnderflow));
                    }
                    self.set_items(m - 1, m)?;
                }
                b'd' => {
                    let from = self.pop_mark()?;
                    if (self.stack.len() - from) % 2 != 0 {
                        return Err(self.err(wrong("odd number of items for DICT")));
                    }
                    let maxd = self.max_depth_from(from);
                    let d = self.nest(maxd)?;
                    self.charge(DICT)?;
                    let mut dict = Dict::default();
                    self.fill_dict(&mut dict, from)?;
                    self.push(Value::Dict(crate::value::shared(dict)), d)?;
                }

                // -- sets --
                0x8f => {
                    self.charge(SET)?;
                    self.push(Value::Set(crate::value::shared(Set::default())), 1)?
                }
                0x90 => {
                    let m = self.pop_mark()?;
                    if m == 0 || m <= self.fence() || m > self.stack.len() {
                        return Err(self.err(K::StackUnderflow));
                    }
                    self.add_items(m - 1, m)?;
                }
                0x91 => {
                    let from = self.pop_mark()?;
                    let maxd = self.max_depth_from(from);
                    let d = self.nest(maxd)?;
                    self.charge(SET)?;
                    let mut set = Set::default();
                    self.fill_set(&mut set, from)?;
                    self.push(Value::FrozenSet(Arc::new(set)), d)?;
                }

                // -- stack manipulation --
                b'(' => {
                    self.count(1)?;
                    if self.marks.len() == self.marks.capacity() {
                        let n = self.marks.len();
                        self.charge_vec(n, n, 1, size_of::<usize>())?;
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    let n = self.stack.len();
                    if self.marks.last() == Some(&n) {
                        self.marks.pop();
                    } else if n <= self.fence() {
                        return Err(self.err(K::StackUnderflow));
                    } else {
                        self.stack.pop();
                    }
                }
                b'1' => {
                    let m = self.pop_mark()?;
                    self.stack.truncate(m);
                }
                b'2' => {
                    let t = self.top_index()?;
                    let (v, d) = (self.stack[t].v.clone(), self.stack[t].d);
                    // A second reference can close a cycle (`]2a`: a list
                    // appended to itself), as a memo GET can.
                    self.track(&v)?;
                    self.push(v, d)?;
                }

                // -- framing and control --
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(K::UnsupportedProtocol(p)));
                    }
                    self.proto = p;
                }
                0x95 => {
                    let n = self.u64()?;
                    let remaining = data.len() - self.pos;
                    if n > remaining as u64 {
                        return Err(self.err(K::FrameTooLong { len: n, remaining }));
                    }
                }
                b'.' => {
                    let e = self.pop()?;
                    return Ok(e.v);
                }

                // -- globals and objects --
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let (module, name) =
                        match (std::str::from_utf8(module), std::str::from_utf8(name)) {
                            (Ok(m), Ok(n)) => (m, n),
                            _ => return Err(self.err(K::InvalidUtf8)),
                        };
                    self.charge_global(module, name)?;
                    let g = self.global(module, name);
                    self.push0(g)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let g = match (module.v.as_str(), name.v.as_str()) {
                        (Some(m), Some(n)) => {
                            self.charge_global(m, n)?;
                            self.global(m, n)
                        }
                        _ => {
                            return Err(self.err(wrong("STACK_GLOBAL requires str module and name")))
                        }
                    };
                    self.push0(g)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    if !matches!(args.v, Value::Tuple(_)) {
                        return Err(self.err(wrong(format!(
                            "REDUCE arguments must be a tuple, not '{}'",
                            args.v.type_name()
                        ))));
                    }
                    self.construct(func, args, None, Construct::Reduce)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    if !matches!(args.v, Value::Tuple(_)) {
                        return Err(self.err(wrong("NEWOBJ expected an arg tuple")));
                    }
                    self.construct(cls, args, None, Construct::NewObj)?;
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    if !matches!(args.v, Value::Tuple(_)) {
                        return Err(self.err(wrong("NEWOBJ_EX args must be a tuple")));
                    }
                    if !matches!(kwargs.v, Value::Dict(_)) {
                        return Err(self.err(wrong("NEWOBJ_EX kwargs must be a dict")));
                    }
                    self.construct(cls, args, Some(kwargs), Construct::NewObjEx)?;
                }
                b'i' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let (module, name) =
                        match (std::str::from_utf8(module), std::str::from_utf8(name)) {
                            (Ok(m), Ok(n)) => (m, n),
                            _ => return Err(self.err(K::InvalidUtf8)),
                        };
                    self.charge_global(module, name)?;
                    let cls = self.global(module, name);
                    let from = self.pop_mark()?;
                    self.charge(2 * heap_bytes((self.stack.len() - from) * VALUE))?;
                    let (items, maxd) = self.drain_values(from);
                    let d = self.nest(maxd)?;
                    self.count(items.len())?;
                    let args = Entry {
                        v: Value::tuple(items),
                        d,
                        memo: NO_MEMO,
                    };
                    let cls = Entry {
                        v: cls,
                        d: 0,
                        memo: NO_MEMO,
                    };
                    self.construct(cls, args, None, Construct::Reduce)?;
                }
                b'o' => {
                    let from = self.pop_mark()?;
                    if from >= self.stack.len() {
                        return Err(self.err(K::StackUnderflow));
                    }
                    self.charge(2 * heap_bytes((self.stack.len() - from) * VALUE))?;
                    let (items, maxd) = self.drain_values(from + 1);
                    let cls = self
                        .stack
                        .pop()
                        .ok_or_else(|| self.err(K::StackUnderflow))?;
                    let d = self.nest(maxd)?;
                    self.count(items.len())?;
                    let args = Entry {
                        v: Value::tuple(items),
                        d,
                        memo: NO_MEMO,
                    };
                    self.construct(cls, args, None, Construct::Reduce)?;
                }
                b'b' => self.build()?,

                // -- refused --
                b'P' | b'Q' => {
                    return Err(self.err(K::Unsupported("persistent IDs are not supported")))
                }
                0x82..=0x84 => {
                    return Err(self.err(K::Unsupported("the extension registry is not supported")))
                }
                0x97 | 0x98 => {
                    return Err(self.err(K::Unsupported("out-of-band buffers are not supported")))
                }
                _ => return Err(self.err(K::UnknownOpcode)),
            }
        }
        Err(DecodeError::new(K::MissingStop, data.len(), None))
    }

    // ---- opcode helpers ----------------------------------------------------

    #[inline]
    fn push_str(&mut self, b: &[u8]) -> Result<()> {
        if b.len() > PyStr::INLINE_MAX {
            self.charge(heap_bytes(b.len()))?;
        }
        match PyStr::from_wtf8(b) {
            Some(s) => self.push0(Value::Str(s)),
            None => Err(self.err(K::InvalidUtf8)),
        }
    }

    #[inline]
    fn push_bytes(&mut self, b: &[u8]) -> Result<()> {
        self.charge(heap_bytes(b.len()))?;
        self.push0(Value::Bytes(b.into()))
    }

    /// Registers a container met a second time with the cycle collector.
    #[inline]
    fn track(&mut self, v: &Value) -> Result<()> {
        if matches!(
            v,
            Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::Object(_)
        ) {
            self.charge(TRACKED)?;
            crate::cycles::track(v);
        }
        Ok(())
    }

    /// Counts a new [`Global`](crate::value::Global) and its two names.
    fn charge_global(&mut self, module: &str, name: &str) -> Result<()> {
        self.charge(
            arc::<crate::value::Global>() + heap_bytes(module.len()) + heap_bytes(name.len()),
        )
    }

    /// A Python 2 `str`, decoded as CPython's default `encoding='ASCII'`.
    fn push_py2_str(&mut self, b: &[u8]) -> Result<()> {
        if !b.is_ascii() {
            return Err(self.err(K::NonAsciiString));
        }
        if b.len() > PyStr::INLINE_MAX {
            self.charge(heap_bytes(b.len()))?;
        }
        match std::str::from_utf8(b) {
            Ok(s) => self.push0(Value::str(s)),
            Err(_) => Err(self.err(K::NonAsciiString)),
        }
    }

    /// The argument of `STRING`: a quoted, backslash-escaped literal.
    fn string_literal(&self, line: &[u8]) -> Result<Vec<u8>> {
        let inner = match line {
            [q, inner @ .., e] if q == e && (*q == b'\'' || *q == b'"') => inner,
            _ => return Err(self.err(bad("the STRING opcode argument must be quoted"))),
        };
        escape_decode(inner).map_err(|m| self.err(bad(m)))
    }

    fn text_int(&self, line: &[u8]) -> Result<Value> {
        parse_int(line, self.opts.max_int_digits).map_err(|k| self.err(k))
    }

    fn global(&self, module: &str, name: &str) -> Value {
        if self.proto < 3 {
            if let Some((m, n)) = map_py2_name(module, name) {
                return Value::global(m, n);
            }
        }
        Value::global(module, name)
    }

    fn make_tuple(&mut self, from: usize) -> Result<()> {
        let maxd = self.max_depth_from(from);
        let d = self.nest(maxd)?;
        self.count(self.stack.len() - from)?;
        self.charge(heap_bytes((self.stack.len() - from) * VALUE))?;
        // One allocation, filled straight from the stack.
        let t = Tuple::from_exact_iter(self.stack.drain(from..).map(|e| e.v));
        self.push(Value::Tuple(t), d)
    }

    /// APPEND/APPENDS: stack[from..] go into stack[target].
    fn extend_list(&mut self, target: usize, from: usize) -> Result<()> {
        let n = self.stack.len() - from;
        if n == 0 {
            return Ok(());
        }
        self.count(n)?;
        let maxd = self.max_depth_from(from);
        let t = self.stack[target].v.clone();
        match &t {
            Value::List(l) => {
                let mut l = l.write();
                self.charge_vec(l.items.len(), l.items.capacity(), n, VALUE)?;
                l.items.extend(self.stack.drain(from..).map(|e| e.v));
            }
            Value::Object(o) => {
                let mut o = o.write();
                let (len, cap) = (o.list_items.len(), o.list_items.capacity());
                self.charge_vec(len, cap, n, VALUE)?;
                o.list_items.extend(self.stack.drain(from..).map(|e| e.v));
            }
            other => {
                return Err(self.err(wrong(format!("cannot append to a '{}'", other.type_name()))))
            }
        }
        self.deepen(target, maxd)
    }

    /// Moves the key/value pairs stack[from..] into `dict`.
    fn fill_dict(&mut self, dict: &mut Dict, from: usize) -> Result<()> {
        let n = self.stack.len() - from;
        self.count(n / 2)?;
        let cap = dict.items.capacity();
        dict.items.reserve(n / 2);
        if dict.items.capacity() > cap {
            self.charge(dict.items.capacity() * DICT_ENTRY)?;
        }
        let mut i = from;
        while i + 1 < self.stack.len() {
            let k = std::mem::take(&mut self.stack[i].v);
            let v = std::mem::take(&mut self.stack[i + 1].v);
            let key = Key::new(k).map_err(|e| self.err(K::Unhashable(e)))?;
            dict.items.insert(key, v);
            i += 2;
        }
        self.stack.truncate(from);
        Ok(())
    }

    /// Moves stack[from..] into `set`.
    fn fill_set(&mut self, set: &mut Set, from: usize) -> Result<()> {
        let n = self.stack.len() - from;
        self.count(n)?;
        let cap = set.items.capacity();
        set.items.reserve(n);
        if set.items.capacity() > cap {
            self.charge(set.items.capacity() * SET_ENTRY)?;
        }
        for i in from..self.stack.len() {
            let k = std::mem::take(&mut self.stack[i].v);
            let key = Key::new(k).map_err(|e| self.err(K::Unhashable(e)))?;
            set.items.insert(key);
        }
        self.stack.truncate(from);
        Ok(())
    }

    /// SETITEM/SETITEMS: pairs stack[from..] go into stack[target].
    fn set_items(&mut self, target: usize, from: usize) -> Result<()> {
        let n = self.stack.len() - from;
        if n % 2 != 0 {
            return Err(self.err(wrong("odd number of items for SETITEMS")));
        }
        if n == 0 {
            return Ok(());
        }
        let maxd = self.max_depth_from(from);
        let t = self.stack[target].v.clone();
        match &t {
            Value::Dict(dl) => {
                // Take the contents out so that no lock is held while keys
                // are hashed and compared (they may refer to this dict).
                let mut dict = std::mem::take(&mut *dl.write());
                let r = self.fill_dict(&mut dict, from);
                *dl.write() = dict;
                r?;
            }
            Value::Object(o) => {
                self.count(n / 2)?;
                let mut pairs = Vec::with_capacity(n / 2);
                let mut it = self.stack.drain(from..).map(|e| e.v);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                drop(it);
                let mut o = o.write();
                let (len, cap) = (o.dict_items.len(), o.dict_items.capacity());
                self.charge_vec(len, cap, pairs.len(), 2 * VALUE)?;
                o.dict_items.extend(pairs);
            }
            other => {
                return Err(self.err(wrong(format!(
                    "cannot set items of a '{}'",
                    other.type_name()
                ))))
            }
        }
        self.deepen(target, maxd)
    }

    /// ADDITEMS: stack[from..] go into the set stack[target].
    fn add_items(&mut self, target: usize, from: usize) -> Result<()> {
        if self.stack.len() == from {
            return Ok(());
        }
        let maxd = self.max_depth_from(from);
        let t = self.stack[target].v.clone();
        match &t {
            Value::Set(sl) => {
                let mut set = std::mem::take(&mut *sl.write());
                let r = self.fill_set(&mut set, from);
                *sl.write() = set;
                r?;
            }
            other => {
                return Err(self.err(wrong(format!(
                    "cannot add items to a '{}'",
                    other.type_name()
                ))))
            }
        }
        self.deepen(target, maxd)
    }

    /// REDUCE/NEWOBJ/NEWOBJ_EX/INST/OBJ: a native value for a whitelisted
    /// pure builtin constructor, an opaque object otherwise.
    fn construct(
        &mut self,
        func: Entry,
        args: Entry,
        kwargs: Option<Entry>,
        construct: Construct,
    ) -> Result<()> {
        let mut maxd = func.d.max(args.d);
        if let Some(k) = &kwargs {
            maxd = maxd.max(k.d);
        }
        let d = self.nest(maxd)?;
        if construct == Construct::Reduce {
            if let (Value::Tuple(t), Value::Global(_)) = (&args.v, &func.v) {
                // A builtin constructor may copy its argument (`bytearray(b)`,
                // `set(l)` of a memoized value): count the copy first.
                let copy = t.iter().map(copy_cost).sum::<usize>();
                self.charge(copy + OBJECT)?;
                if let Some(v) = native_call(&func.v, t).map_err(|k| self.err(k))? {
                    return self.push(v, d);
                }
            }
        }
        self.charge(OBJECT)?;
        let obj = Object {
            callable: func.v,
            args: args.v,
            kwargs: kwargs.map(|k| k.v),
            construct,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        };
        self.push(Value::object(obj), d)
    }

    fn build(&mut self) -> Result<()> {
        let state = self.pop()?;
        let t = self.top_index()?;
        let target = self.stack[t].v.clone();
        match &target {
            Value::Object(o) => {
                // Read the old state and merge without holding the lock:
                // merging hashes and compares keys.
                let old = o.read().state.clone();
                if let (Some(Value::Dict(a)), Value::Dict(b)) = (&old, &state.v) {
                    if !Arc::ptr_eq(a, b) {
                        let n = a.read().len() + b.read().len();
                        self.charge(DICT + n * DICT_ENTRY)?;
                    }
                }
                let new = match (&old, &state.v) {
                    (Some(Value::Dict(a)), Value::Dict(b)) if !Arc::ptr_eq(a, b) => {
                        let mut merged = Dict::default();
                        merged.items = a.read().items.clone();
                        let add: Vec<_> = b
                            .read()
                            .items
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        for (k, v) in add {
                            merged.items.insert(k, v);
                        }
                        Value::Dict(crate::value::shared(merged))
                    }
                    _ => state.v,
                };
                o.write().state = Some(new);
                self.deepen(t, state.d)
            }
            other => {
                let empty = match &state.v {
                    Value::None => true,
                    Value::Dict(d) => d.read().is_empty(),
                    _ => false,
                };
                if empty {
                    Ok(())
                } else {
                    Err(self.err(wrong(format!(
                        "BUILD with a state on a native '{}'",
                        other.type_name()
                    ))))
                }
            }
        }
    }
}

// ---- argument decoding -------------------------------------------------------

/// LONG1/LONG4 payload: little-endian two's complement.
#[inline]
fn decode_long(b: &[u8]) -> Value {
    match b.last() {
        None => Value::Int(0),
        Some(&last) if b.len() <= 8 => {
            let mut buf = if last & 0x80 != 0 {
                [0xffu8; 8]
            } else {
                [0u8; 8]
            };
            buf[..b.len()].copy_from_slice(b);
            Value::Int(i64::from_le_bytes(buf))
        }
        Some(_) => Value::from_bigint(BigInt::from_signed_bytes_le(b)),
    }
}

/// `int(text, 0)`, as the `INT` and `LONG` opcodes read their argument.
fn parse_int(line: &[u8], max_digits: usize) -> Result<Value, DecodeErrorKind> {
    let s = std::str::from_utf8(line).map_err(|_| bad("not an integer"))?;
    let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.get(..2).map(|p| p.to_ascii_lowercase());
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &body[2..]),
        Some("0o") => (8, &body[2..]),
        Some("0b") => (2, &body[2..]),
        _ => (10, body),
    };
    // Underscores are allowed between digits (and after a base prefix).
    let digits = digits
        .strip_prefix('_')
        .filter(|_| radix != 10)
        .unwrap_or(digits);
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits
            .bytes()
            .all(|c| c == b'_' || (c as char).is_digit(radix))
    {
        return Err(bad("not an integer"));
    }
    let clean: Cow<'_, str> = if digits.contains('_') {
        Cow::Owned(digits.replace('_', ""))
    } else {
        Cow::Borrowed(digits)
    };
    if radix == 10 {
        if clean.len() > 1 && clean.starts_with('0') && clean.bytes().any(|c| c != b'0') {
            return Err(bad("leading zeros in a decimal integer"));
        }
        if clean.len() > max_digits {
            return Err(K::IntTooLong {
                digits: clean.len(),
                max: max_digits,
            });
        }
    }
    if clean.len() <= 18 {
        if let Ok(v) = i64::from_str_radix(&clean, radix) {
            return Ok(Value::Int(if neg { -v } else { v }));
        }
    }
    let v = BigInt::from_str_radix(&clean, radix).map_err(|_| bad("not an integer"))?;
    Ok(Value::from_bigint(if neg { -v } else { v }))
}

/// `float(text)`, as the `FLOAT` opcode reads its argument.
fn parse_float(line: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(line).ok()?;
    let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
    // Rust accepts the same spellings as Python except underscores, which
    // pickle never writes; reject anything exotic Rust would take.
    if s.is_empty() || s.contains('_') {
        return None;
    }
    s.parse::<f64>().ok()
}

/// `codecs.escape_decode`: the escapes of a Python 2 `str` literal.
fn escape_decode(b: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = b.get(i) else {
            return Err("trailing \\ in string");
        };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(11),
            b'a' => out.push(7),
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match b.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let hex = |j: usize| b.get(j).and_then(|&h| (h as char).to_digit(16));
                match (hex(i), hex(i + 1)) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => return Err("invalid \\x escape"),
                }
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// `raw-unicode-escape` decoding, as the `UNICODE` opcode uses: bytes are
/// Latin-1 code points, except `\uXXXX` and `\UXXXXXXXX` escapes.
fn raw_unicode_escape(b: &[u8]) -> Result<PyStr, &'static str> {
    if !b.contains(&b'\\') && b.is_ascii() {
        // ASCII without escapes is valid UTF-8 as is.
        return PyStr::from_wtf8(b).ok_or("invalid string");
    }
    let mut cps: Vec<u32> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c != b'\\' || i >= b.len() {
            cps.push(c as u32);
            continue;
        }
        let e = b[i];
        i += 1;
        let n = match e {
            b'u' => 4,
            b'U' => 8,
            _ => {
                cps.push(b'\\' as u32);
                cps.push(e as u32);
                continue;
            }
        };
        let mut v: u32 = 0;
        for _ in 0..n {
            match b.get(i).and_then(|&h| (h as char).to_digit(16)) {
                Some(h) => v = (v << 4) | h,
                None => return Err("truncated \\uXXXX escape"),
            }
            i += 1;
        }
        if v > 0x10FFFF {
            return Err("\\Uxxxxxxxx out of range");
        }
        cps.push(v);
    }
    PyStr::from_code_points(cps).ok_or("code point out of range")
}

// ---- whitelisted builtin constructors ------------------------------------------

/// The items of a list, tuple, set or frozenset, copied out (no lock held).
fn iter_items(v: &Value) -> Option<Vec<Value>> {
    Some(match v {
        Value::List(l) => l.read().items.clone(),
        Value::Tuple(t) => t.items.clone(),
        Value::Set(s) => s.read().iter().map(|k| k.value().clone()).collect(),
        Value::FrozenSet(s) => s.iter().map(|k| k.value().clone()).collect(),
        _ => return None,
    })
}

fn is_latin1_name(enc: &Value) -> bool {
    let Some(e) = enc.as_str() else { return false };
    let e = e.to_ascii_lowercase().replace(['-', ' '], "_");
    matches!(
        e.as_str(),
        "latin1" | "latin_1" | "iso_8859_1" | "iso8859_1" | "l1" | "8859" | "cp819"
    )
}

fn latin1_encode(s: &Value) -> Option<Vec<u8>> {
    let Value::Str(s) = s else { return None };
    s.code_points().map(|c| u8::try_from(c).ok()).collect()
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::Bool(b) => Some(*b as i64 as f64),
        _ => None,
    }
}

/// `func(*args)` for the pure builtins turned into native values; `None`
/// keeps the call opaque.
fn native_call(func: &Value, args: &[Value]) -> Result<Option<Value>, DecodeErrorKind> {
    let Value::Global(g) = func else {
        return Ok(None);
    };
    let unhashable = K::Unhashable;
    let v = match (&*g.module, &*g.name) {
        ("builtins", name @ ("set" | "frozenset")) => {
            let items = match args {
                [] => Vec::new(),
                [x] => match iter_items(x) {
                    Some(items) => items,
                    None => return Ok(None),
                },
                _ => return Ok(None),
            };
            if name == "set" {
                Value::set(items).map_err(unhashable)?
            } else {
                Value::frozenset(items).map_err(unhashable)?
            }
        }
        ("builtins", "bytearray") => match args {
            [] => Value::bytearray(Vec::new()),
            [Value::Bytes(b)] => Value::bytearray(b.to_vec()),
            [Value::ByteArray(b)] => Value::bytearray(b.read().clone()),
            [s @ Value::Str(_), enc] if is_latin1_name(enc) => match latin1_encode(s) {
                Some(b) => Value::bytearray(b),
                None => return Ok(None),
            },
            _ => return Ok(None),
        },
        ("builtins", "bytes") => match args {
            [] => Value::Bytes(Arc::from(&[][..])),
            [b @ Value::Bytes(_)] => b.clone(),
            _ => return Ok(None),
        },
        // How protocols 2–3 name a nested class (`Outer.Inner`): the
        // inverse is plain name arithmetic, nothing is looked up.
        ("builtins", "getattr") => match args {
            [Value::Global(parent), Value::Str(attr)] => match attr.as_str() {
                Some(a) if !a.is_empty() && !a.contains(['\n', '.']) => {
                    Value::global(&parent.module, &format!("{}.{a}", parent.name))
                }
                _ => return Ok(None),
            },
            _ => return Ok(None),
        },
        ("_codecs", "encode") => match args {
            [s @ Value::Str(_), enc] if is_latin1_name(enc) => match latin1_encode(s) {
                Some(b) => Value::Bytes(b.into()),
                None => return Ok(None),
            },
            _ => return Ok(None),
        },
        ("builtins", "complex") => {
            let (re, im) = match args {
                [] => (Some(0.0), Some(0.0)),
                [r] => (as_f64(r), Some(0.0)),
                [r, i] => (as_f64(r), as_f64(i)),
                _ => return Ok(None),
            };
            match (re, im) {
                (Some(re), Some(im)) => Value::Complex(re, im),
                _ => return Ok(None),
            }
        }
        ("builtins", "slice") => {
            let (start, stop, step) = match args {
                [stop] => (Value::None, stop.clone(), Value::None),
                [a, b] => (a.clone(), b.clone(), Value::None),
                [a, b, c] => (a.clone(), b.clone(), c.clone()),
                _ => return Ok(None),
            };
            Value::Slice(Arc::new(Slice { start, stop, step }))
        }
        ("builtins", "list") => match args {
            [] => Value::list(Vec::new()),
            [x] => match iter_items(x) {
                Some(items) => Value::list(items),
                None => return Ok(None),
            },
            _ => return Ok(None),
        },
        ("builtins", "tuple") => match args {
            [] => Value::tuple(Vec::new()),
            [t @ Value::Tuple(_)] => t.clone(),
            [x] => match iter_items(x) {
                Some(items) => Value::tuple(items),
                None => return Ok(None),
            },
            _ => return Ok(None),
        },
        ("builtins", "dict") => match args {
            [] => Value::Dict(crate::value::shared(Dict::default())),
            [Value::Dict(d)] => {
                let items = d.read().items.clone();
                Value::Dict(crate::value::shared(Dict { items }))
            }
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(v))
}

// ---- Python 2 names ------------------------------------------------------------

/// Maps a Python 2 global to its Python 3 name, as `Unpickler.find_class`
/// does with `fix_imports=True` for protocols below 3.
fn map_py2_name<'n>(module: &str, name: &'n str) -> Option<(&'static str, &'n str)> {
    if let Ok(i) = NAME_MAPPING.binary_search_by(|((m, n), _)| (*m, *n).cmp(&(module, name))) {
        return Some(NAME_MAPPING[i].1);
    }
    if let Ok(i) = IMPORT_MAPPING.binary_search_by(|(m, _)| (*m).cmp(module)) {
        return Some((IMPORT_MAPPING[i].1, name));
    }
    None
}

/// A `(module, name)` pair.
type Name = (&'static str, &'static str);

/// `_compat_pickle.NAME_MAPPING` (CPython 3.12): Python 2 (module, name) to Python 3.
static NAME_MAPPING: &[(Name, Name)] = &[
    (
        ("UserDict", "IterableUserDict"),
        ("collections", "UserDict"),
    ),
    (("UserDict", "UserDict"), ("collections", "UserDict")),
    (("UserList", "UserList"), ("collections", "UserList")),
    (("UserString", "UserString"), ("collections", "UserString")),
    (("__builtin__", "basestring"), ("builtins", "str")),
    (("__builtin__", "intern"), ("sys", "intern")),
    (("__builtin__", "long"), ("builtins", "int")),
    (("__builtin__", "reduce"), ("functools", "reduce")),
    (("__builtin__", "unichr"), ("builtins", "chr")),
    (("__builtin__", "unicode"), ("builtins", "str")),
    (("__builtin__", "xrange"), ("builtins", "range")),
    (
        ("_multiprocessing", "Connection"),
        ("multiprocessing.connection", "Connection"),
    ),
    (("_socket", "fromfd"), ("socket", "fromfd")),
    (
        ("exceptions", "ArithmeticError"),
        ("builtins", "ArithmeticError"),
    ),
    (
        ("exceptions", "AssertionError"),
        ("builtins", "AssertionError"),
    ),
    (
        ("exceptions", "AttributeError"),
        ("builtins", "AttributeError"),
    ),
    (
        ("exceptions", "BaseException"),
        ("builtins", "BaseException"),
    ),
    (("exceptions", "BufferError"), ("builtins", "BufferError")),
    (("exceptions", "BytesWarning"), ("builtins", "BytesWarning")),
    (
        ("exceptions", "DeprecationWarning"),
        ("builtins", "DeprecationWarning"),
    ),
    (("exceptions", "EOFError"), ("builtins", "EOFError")),
    (
        ("exceptions", "EnvironmentError"),
        ("builtins", "EnvironmentError"),
    ),
    (("exceptions", "Exception"), ("builtins", "Exception")),
    (
        ("exceptions", "FloatingPointError"),
        ("builtins", "FloatingPointError"),
    ),
    (
        ("exceptions", "FutureWarning"),
        ("builtins", "FutureWarning"),
    ),
    (
        ("exceptions", "GeneratorExit"),
        ("builtins", "GeneratorExit"),
    ),
    (("exceptions", "IOError"), ("builtins", "IOError")),
    (("exceptions", "ImportError"), ("builtins", "ImportError")),
    (
        ("exceptions", "ImportWarning"),
        ("builtins", "ImportWarning"),
    ),
    (
        ("exceptions", "IndentationError"),
        ("builtins", "IndentationError"),
    ),
    (("exceptions", "IndexError"), ("builtins", "IndexError")),
    (("exceptions", "KeyError"), ("builtins", "KeyError")),
    (
        ("exceptions", "KeyboardInterrupt"),
        ("builtins", "KeyboardInterrupt"),
    ),
    (("exceptions", "LookupError"), ("builtins", "LookupError")),
    (("exceptions", "MemoryError"), ("builtins", "MemoryError")),
    (("exceptions", "NameError"), ("builtins", "NameError")),
    (
        ("exceptions", "NotImplementedError"),
        ("builtins", "NotImplementedError"),
    ),
    (("exceptions", "OSError"), ("builtins", "OSError")),
    (
        ("exceptions", "OverflowError"),
        ("builtins", "OverflowError"),
    ),
    (
        ("exceptions", "PendingDeprecationWarning"),
        ("builtins", "PendingDeprecationWarning"),
    ),
    (
        ("exceptions", "ReferenceError"),
        ("builtins", "ReferenceError"),
    ),
    (("exceptions", "RuntimeError"), ("builtins", "RuntimeError")),
    (
        ("exceptions", "RuntimeWarning"),
        ("builtins", "RuntimeWarning"),
    ),
    (("exceptions", "StandardError"), ("builtins", "Exception")),
    (
        ("exceptions", "StopIteration"),
        ("builtins", "StopIteration"),
    ),
    (("exceptions", "SyntaxError"), ("builtins", "SyntaxError")),
    (
        ("exceptions", "SyntaxWarning"),
        ("builtins", "SyntaxWarning"),
    ),
    (("exceptions", "SystemError"), ("builtins", "SystemError")),
    (("exceptions", "SystemExit"), ("builtins", "SystemExit")),
    (("exceptions", "TabError"), ("builtins", "TabError")),
    (("exceptions", "TypeError"), ("builtins", "TypeError")),
    (
        ("exceptions", "UnboundLocalError"),
        ("builtins", "UnboundLocalError"),
    ),
    (
        ("exceptions", "UnicodeDecodeError"),
        ("builtins", "UnicodeDecodeError"),
    ),
    (
        ("exceptions", "UnicodeEncodeError"),
        ("builtins", "UnicodeEncodeError"),
    ),
    (("exceptions", "UnicodeError"), ("builtins", "UnicodeError")),
    (
        ("exceptions", "UnicodeTranslateError"),
        ("builtins", "UnicodeTranslateError"),
    ),
    (
        ("exceptions", "UnicodeWarning"),
        ("builtins", "UnicodeWarning"),
    ),
    (("exceptions", "UserWarning"), ("builtins", "UserWarning")),
    (("exceptions", "ValueError"), ("builtins", "ValueError")),
    (("exceptions", "Warning"), ("builtins", "Warning")),
    (
        ("exceptions", "ZeroDivisionError"),
        ("builtins", "ZeroDivisionError"),
    ),
    (("itertools", "ifilter"), ("builtins", "filter")),
    (("itertools", "ifilterfalse"), ("itertools", "filterfalse")),
    (("itertools", "imap"), ("builtins", "map")),
    (("itertools", "izip"), ("builtins", "zip")),
    (("itertools", "izip_longest"), ("itertools", "zip_longest")),
    (
        ("multiprocessing", "AuthenticationError"),
        ("multiprocessing.context", "AuthenticationError"),
    ),
    (
        ("multiprocessing", "BufferTooShort"),
        ("multiprocessing.context", "BufferTooShort"),
    ),
    (
        ("multiprocessing", "ProcessError"),
        ("multiprocessing.context", "ProcessError"),
    ),
    (
        ("multiprocessing", "TimeoutError"),
        ("multiprocessing.context", "TimeoutError"),
    ),
    (
        ("multiprocessing.forking", "Popen"),
        ("multiprocessing.popen_fork", "Popen"),
    ),
    (
        ("multiprocessing.process", "Process"),
        ("multiprocessing.context", "Process"),
    ),
    (("socket", "_socketobject"), ("socket", "SocketType")),
    (
        ("urllib", "ContentTooShortError"),
        ("urllib.error", "ContentTooShortError"),
    ),
    (("urllib", "getproxies"), ("urllib.request", "getproxies")),
    (
        ("urllib", "pathname2url"),
        ("urllib.request", "pathname2url"),
    ),
    (("urllib", "quote"), ("urllib.parse", "quote")),
    (("urllib", "quote_plus"), ("urllib.parse", "quote_plus")),
    (("urllib", "unquote"), ("urllib.parse", "unquote")),
    (("urllib", "unquote_plus"), ("urllib.parse", "unquote_plus")),
    (
        ("urllib", "url2pathname"),
        ("urllib.request", "url2pathname"),
    ),
    (("urllib", "urlcleanup"), ("urllib.request", "urlcleanup")),
    (("urllib", "urlencode"), ("urllib.parse", "urlencode")),
    (("urllib", "urlopen"), ("urllib.request", "urlopen")),
    (("urllib", "urlretrieve"), ("urllib.request", "urlretrieve")),
    (("urllib2", "HTTPError"), ("urllib.error", "HTTPError")),
    (("urllib2", "URLError"), ("urllib.error", "URLError")),
    (("whichdb", "whichdb"), ("dbm", "whichdb")),
];
/// `_compat_pickle.IMPORT_MAPPING` (CPython 3.12): Python 2 module to Python 3.
static IMPORT_MAPPING: &[(&str, &str)] = &[
    ("BaseHTTPServer", "http.server"),
    ("CGIHTTPServer", "http.server"),
    ("ConfigParser", "configparser"),
    ("Cookie", "http.cookies"),
    ("Dialog", "tkinter.dialog"),
    ("DocXMLRPCServer", "xmlrpc.server"),
    ("FileDialog", "tkinter.filedialog"),
    ("HTMLParser", "html.parser"),
    ("Queue", "queue"),
    ("ScrolledText", "tkinter.scrolledtext"),
    ("SimpleDialog", "tkinter.simpledialog"),
    ("SimpleHTTPServer", "http.server"),
    ("SimpleXMLRPCServer", "xmlrpc.server"),
    ("SocketServer", "socketserver"),
    ("StringIO", "io"),
    ("Tix", "tkinter.tix"),
    ("Tkconstants", "tkinter.constants"),
    ("Tkdnd", "tkinter.dnd"),
    ("Tkinter", "tkinter"),
    ("UserDict", "collections"),
    ("UserList", "collections"),
    ("UserString", "collections"),
    ("__builtin__", "builtins"),
    ("_abcoll", "collections.abc"),
    ("_elementtree", "xml.etree.ElementTree"),
    ("_winreg", "winreg"),
    ("anydbm", "dbm"),
    ("cPickle", "pickle"),
    ("cStringIO", "io"),
    ("commands", "subprocess"),
    ("cookielib", "http.cookiejar"),
    ("copy_reg", "copyreg"),
    ("dbhash", "dbm.bsd"),
    ("dbm", "dbm.ndbm"),
    ("dumbdbm", "dbm.dumb"),
    ("dummy_thread", "_dummy_thread"),
    ("gdbm", "dbm.gnu"),
    ("htmlentitydefs", "html.entities"),
    ("httplib", "http.client"),
    ("markupbase", "_markupbase"),
    ("repr", "reprlib"),
    ("robotparser", "urllib.robotparser"),
    ("test.test_support", "test.support"),
    ("thread", "_thread"),
    ("tkColorChooser", "tkinter.colorchooser"),
    ("tkCommonDialog", "tkinter.commondialog"),
    ("tkFileDialog", "tkinter.filedialog"),
    ("tkFont", "tkinter.font"),
    ("tkMessageBox", "tkinter.messagebox"),
    ("tkSimpleDialog", "tkinter.simpledialog"),
    ("ttk", "tkinter.ttk"),
    ("urllib2", "urllib.request"),
    ("urlparse", "urllib.parse"),
    ("whichdb", "dbm"),
    ("xmlrpclib", "xmlrpc.client"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: &[u8]) -> Value {
        match decode(b) {
            Ok(v) => v,
            Err(e) => panic!("decode failed: {e}"),
        }
    }

    fn e(b: &[u8]) -> DecodeError {
        match decode(b) {
            Ok(v) => panic!("decoded to {} but expected an error", v.type_name()),
            Err(e) => e,
        }
    }

    fn list_items(v: &Value) -> Vec<Value> {
        match v {
            Value::List(l) => l.read().items.clone(),
            other => panic!("not a list: {}", other.type_name()),
        }
    }

    fn tuple_items(v: &Value) -> Vec<Value> {
        match v {
            Value::Tuple(t) => t.items.clone(),
            other => panic!("not a tuple: {}", other.type_name()),
        }
    }

    fn obj(v: &Value) -> Object {
        match v {
            Value::Object(o) => o.read().clone(),
            other => panic!("not an object: {}", other.type_name()),
        }
    }

    fn dict_get(v: &Value, k: &str) -> Option<Value> {
        match v {
            Value::Dict(dl) => dl.read().get(&Key::str(k)).cloned(),
            other => panic!("not a dict: {}", other.type_name()),
        }
    }

    fn int(v: &Value) -> BigInt {
        assert_eq!(v.type_name(), "int", "not an int");
        v.to_bigint().unwrap()
    }

    fn s(v: &Value) -> String {
        match v {
            Value::Str(s) => s.to_string_lossy().into_owned(),
            other => panic!("not a str: {}", other.type_name()),
        }
    }

    fn bytes(v: &Value) -> Vec<u8> {
        match v {
            Value::Bytes(b) => b.to_vec(),
            other => panic!("not bytes: {}", other.type_name()),
        }
    }

    // ---- numbers -----------------------------------------------------------

    /// Found by the fuzzer: protocols 2–3 write a nested class as
    /// `getattr(Outer, 'Inner')` (as CPython does); decoding must give the
    /// global back, so that a value round-trips to the same form.
    #[test]
    fn nested_class_globals_written_as_getattr_decode_to_dotted_globals() {
        // pickle.dumps(Outer.Inner, 2) from CPython 3.11.
        let v = decode(b"\x80\x02c__builtin__\ngetattr\nq\x00c__main__\nOuter\nq\x01X\x05\x00\x00\x00Innerq\x02\x86q\x03Rq\x04.").unwrap();
        assert!(
            matches!(&v, Value::Global(g) if g.is("__main__", "Outer.Inner")),
            "{v:?}"
        );
        for proto in 2..=5 {
            let g = Value::global("_codecs", "encod.e");
            let bytes = crate::encode_with(&g, &crate::EncodeOptions::protocol(proto)).unwrap();
            let back = decode(&bytes).unwrap();
            assert!(
                matches!(&back, Value::Global(b) if b.is("_codecs", "encod.e")),
                "protocol {proto}: {back:?}"
            );
        }
        // Anything else stays an opaque getattr call.
        let v = decode(b"\x80\x02c__builtin__\ngetattr\nK\x01X\x01\x00\x00\x00a\x86R.").unwrap();
        assert!(matches!(&v, Value::Object(_)));
    }

    #[test]
    fn binary_ints() {
        assert_eq!(d(b"K\xff.").as_i64(), Some(255));
        assert_eq!(d(b"M\x00\x01.").as_i64(), Some(256));
        assert_eq!(d(b"J\xff\xff\xff\xff.").as_i64(), Some(-1));
        assert_eq!(d(b"J\x00\x00\x00\x80.").as_i64(), Some(-(1 << 31)));
        assert_eq!(d(b"\x80\x02\x8a\x00.").as_i64(), Some(0));
        assert_eq!(d(b"\x80\x02\x8a\x01\xff.").as_i64(), Some(-1));
        assert_eq!(
            d(b"\x80\x02\x8a\x05\x00\x00\x00\x80\x00.").as_i64(),
            Some(1 << 31)
        );
        assert_eq!(
            d(b"\x80\x02\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80.").as_i64(),
            Some(i64::MIN)
        );
        // 2**63 needs 9 bytes and is a BigInt
        let v = d(b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00.");
        assert!(matches!(v, Value::BigInt(_)));
        assert_eq!(int(&v), BigInt::from(1u64 << 63));
        // LONG4 with a 9-byte payload that still fits an i64 is normalized
        let v = d(b"\x80\x02\x8b\x09\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff.");
        assert!(matches!(v, Value::Int(-1)));
        assert!(matches!(
            e(b"\x80\x02\x8b\xff\xff\xff\xff.").kind,
            K::BadArgument(_)
        ));
    }

    #[test]
    fn text_ints_and_bools() {
        assert!(matches!(d(b"I01\n."), Value::Bool(true)));
        assert!(matches!(d(b"I00\n."), Value::Bool(false)));
        assert_eq!(d(b"I-42\n.").as_i64(), Some(-42));
        assert_eq!(d(b"I0\n.").as_i64(), Some(0));
        assert_eq!(
            int(&d(b"I18446744073709551616\n.")),
            BigInt::from(1u128 << 64)
        );
        assert_eq!(
            int(&d(b"L-9223372036854775809L\n.")),
            BigInt::from(i64::MIN) - 1
        );
        assert_eq!(d(b"L5\n.").as_i64(), Some(5));
        assert_eq!(d(b"I0x1_0\n.").as_i64(), Some(16));
        assert!(matches!(e(b"I012\n.").kind, K::BadArgument(_)));
        assert!(matches!(e(b"I1.5\n.").kind, K::BadArgument(_)));
        assert!(matches!(e(b"I\n.").kind, K::BadArgument(_)));
        let long = format!("L{}L\n.", "7".repeat(5000));
        assert!(matches!(
            e(long.as_bytes()).kind,
            K::IntTooLong {
                digits: 5000,
                max: 4300
            }
        ));
        let opts = DecodeOptions::default().with_max_int_digits(6000);
        assert!(decode_with(long.as_bytes(), &opts).is_ok());
    }

    #[test]
    fn floats() {
        let f = |b: &[u8]| match d(b) {
            Value::Float(f) => f,
            other => panic!("not a float: {}", other.type_name()),
        };
        assert_eq!(f(b"G?\xb9\x99\x99\x99\x99\x99\x9a."), 0.1);
        assert_eq!(f(b"F0.1\n."), 0.1);
        assert_eq!(f(b"F1e+16\n."), 1e16);
        assert_eq!(f(b"Finf\n."), f64::INFINITY);
        assert_eq!(f(b"F-inf\n."), f64::NEG_INFINITY);
        assert!(f(b"Fnan\n.").is_nan());
        assert!(f(b"F-0.0\n.").is_sign_negative());
        assert_eq!(f(b"F0.10000000000000001\n."), 0.1);
        assert!(matches!(e(b"Fabc\n.").kind, K::BadArgument(_)));
        assert!(matches!(e(b"F1_0\n.").kind, K::BadArgument(_)));
    }

    #[test]
    fn constants() {
        assert!(matches!(d(b"N."), Value::None));
        assert!(matches!(d(b"\x80\x02\x88."), Value::Bool(true)));
        assert!(matches!(d(b"\x80\x02\x89."), Value::Bool(false)));
    }

    // ---- strings and bytes -------------------------------------------------------

    #[test]
    fn unicode_opcodes() {
        assert_eq!(s(&d(b"\x80\x04\x8c\x03abc.")), "abc");
        assert_eq!(s(&d(b"X\x04\x00\x00\x00\xf0\x9f\x98\x80.")), "\u{1F600}");
        assert_eq!(
            s(&d(b"\x80\x04\x8d\x02\x00\x00\x00\x00\x00\x00\x00\xc3\xa9.")),
            "\u{e9}"
        );
        // Lone surrogate, written with surrogatepass
        let Value::Str(lone) = d(b"X\x03\x00\x00\x00\xed\xb2\x80.") else {
            panic!()
        };
        assert_eq!(lone.code_points().collect::<Vec<_>>(), vec![0xDC80]);
        let err = e(b"X\x01\x00\x00\x00\xff.");
        assert!(matches!(err.kind, K::InvalidUtf8));
        assert_eq!((err.offset, err.opcode), (0, Some(b'X')));
    }

    #[test]
    fn raw_unicode_escape_text() {
        assert_eq!(s(&d(b"Vabc\n.")), "abc");
        // \u005c is how protocol 0 writes a backslash; \xe9 is Latin-1
        assert_eq!(s(&d(b"Va\\u005cb\\u000a\xe9\n.")), "a\\b\n\u{e9}");
        assert_eq!(s(&d(b"V\\U0001f600\n.")), "\u{1F600}");
        let Value::Str(lone) = d(b"Vx\\udc80\n.") else {
            panic!()
        };
        assert_eq!(lone.code_points().collect::<Vec<_>>(), vec![0x78, 0xDC80]);
        // A backslash not followed by u/U is kept, as are escaped pairs
        assert_eq!(s(&d(b"Va\\nb\\\\u0041\n.")), "a\\nb\\\\u0041");
        assert!(matches!(e(b"V\\u12\n.").kind, K::BadArgument(_)));
        assert!(matches!(e(b"V\\U00110000\n.").kind, K::BadArgument(_)));
    }

    #[test]
    fn python2_strings() {
        assert_eq!(s(&d(b"S'abc'\n.")), "abc");
        assert_eq!(s(&d(b"S\"it's\"\n.")), "it's");
        assert_eq!(s(&d(b"S'a\\n\\x41\\101\\'\\\\\\q'\n.")), "a\nAA'\\\\q");
        assert_eq!(s(&d(b"U\x02hi.")), "hi");
        assert_eq!(s(&d(b"T\x03\x00\x00\x00abc.")), "abc");
        assert!(matches!(e(b"U\x01\xe9.").kind, K::NonAsciiString));
        assert!(matches!(e(b"S'\\xe9'\n.").kind, K::NonAsciiString));
        assert!(matches!(e(b"Sabc\n.").kind, K::BadArgument(_)));
        assert!(matches!(e(b"S'abc\"\n.").kind, K::BadArgument(_)));
        assert!(matches!(e(b"S'\\x4'\n.").kind, K::BadArgument(_)));
        assert!(matches!(e(b"T\xff\xff\xff\xff.").kind, K::BadArgument(_)));
    }

    #[test]
    fn bytes_opcodes() {
        assert_eq!(bytes(&d(b"\x80\x03C\x02\x00\xff.")), vec![0, 255]);
        assert_eq!(bytes(&d(b"\x80\x03B\x01\x00\x00\x00z.")), b"z".to_vec());
        assert_eq!(
            bytes(&d(b"\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x00.")),
            Vec::<u8>::new()
        );
        let Value::ByteArray(ba) = d(b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00ab.") else {
            panic!()
        };
        assert_eq!(&*ba.read(), b"ab");
        // A length beyond the input is a truncation, not an allocation
        let err = e(b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff.");
        assert!(matches!(err.kind, K::Truncated));
    }

    // ---- containers ---------------------------------------------------------------

    #[test]
    fn tuples() {
        assert!(tuple_items(&d(b").")).is_empty());
        let t = tuple_items(&d(b"\x80\x02K\x01K\x02K\x03\x87."));
        assert_eq!(
            t.iter().map(|v| v.as_i64().unwrap()).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(tuple_items(&d(b"\x80\x02N\x85.")).len(), 1);
        assert_eq!(tuple_items(&d(b"\x80\x02NN\x86.")).len(), 2);
        assert_eq!(tuple_items(&d(b"(NNNNt.")).len(), 4);
        assert!(matches!(e(b"\x80\x02N\x86.").kind, K::StackUnderflow));
        // TUPLE2 cannot reach below a MARK
        assert!(matches!(e(b"\x80\x02N(N\x86.").kind, K::StackUnderflow));
    }

    #[test]
    fn lists() {
        let v = d(b"\x80\x02]q\x00(K\x01K\x02eK\x03a.");
        assert_eq!(
            list_items(&v)
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(list_items(&d(b"(K\x01K\x02l.")).len(), 2);
        assert!(list_items(&d(b"](e.")).is_empty());
        assert!(matches!(e(b"\x80\x02)K\x01a.").kind, K::WrongType(_)));
        assert!(matches!(e(b"K\x01a.").kind, K::StackUnderflow));
        // APPEND cannot take its target from below a MARK
        assert!(matches!(e(b"](K\x01a.").kind, K::StackUnderflow));
        assert!(matches!(e(b"K\x01e.").kind, K::MissingMark));
        assert!(matches!(e(b"(K\x01e.").kind, K::StackUnderflow));
    }

    #[test]
    fn dicts() {
        let v = d(b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02uX\x01\x00\x00\x00cK\x03s.");
        assert_eq!(dict_get(&v, "a").unwrap().as_i64(), Some(1));
        assert_eq!(dict_get(&v, "b").unwrap().as_i64(), Some(2));
        assert_eq!(dict_get(&v, "c").unwrap().as_i64(), Some(3));
        let v = d(b"(Vk\nI1\nVk\nI2\nd.");
        assert_eq!(dict_get(&v, "k").unwrap().as_i64(), Some(2));
        let Value::Dict(dl) = &v else { panic!() };
        assert_eq!(dl.read().len(), 1);
        assert!(matches!(e(b"(Vk\nd.").kind, K::WrongType(_)));
        assert!(matches!(e(b"}(NNNu.").kind, K::WrongType(_)));
        let err = e(b"\x80\x02}]Ns.");
        assert!(matches!(err.kind, K::Unhashable(_)));
        assert_eq!((err.offset, err.opcode), (5, Some(b's')));
        assert!(err.to_string().contains("unhashable type: 'list'"), "{err}");
        assert!(matches!(e(b"\x80\x02]NNs.").kind, K::WrongType(_)));
        // 1 and 1.0 and True are the same key, as in Python
        let v = d(b"\x80\x02}(K\x01N\x88K\x02G?\xf0\x00\x00\x00\x00\x00\x00K\x03u.");
        let Value::Dict(dl) = &v else { panic!() };
        let dl = dl.read();
        assert_eq!(dl.len(), 1);
        assert!(matches!(dl.keys().next().unwrap().value(), Value::Int(1)));
        assert_eq!(dl.values().next().unwrap().as_i64(), Some(3));
    }

    #[test]
    fn sets() {
        let Value::Set(st) = d(b"\x80\x04\x8f(K\x01K\x02K\x01\x90.") else {
            panic!()
        };
        assert_eq!(st.read().len(), 2);
        let Value::FrozenSet(fs) = d(b"\x80\x04(K\x01X\x01\x00\x00\x00a\x91.") else {
            panic!()
        };
        assert!(fs.contains(&Key::str("a")));
        assert!(matches!(e(b"\x80\x04\x8f(]\x90.").kind, K::Unhashable(_)));
        assert!(matches!(e(b"\x80\x04](K\x01\x90.").kind, K::WrongType(_)));
        assert!(matches!(e(b"\x80\x04(]\x91.").kind, K::Unhashable(_)));
    }

    #[test]
    fn stack_ops() {
        // DUP shares the value
        let t = tuple_items(&d(b"\x80\x02]2\x86."));
        assert!(t[0].is(&t[1]));
        // POP drops the top, or a MARK that is on top
        assert_eq!(d(b"K\x01K\x020.").as_i64(), Some(1));
        assert_eq!(d(b"K\x01(0.").as_i64(), Some(1));
        assert!(matches!(e(b"0.").kind, K::StackUnderflow));
        assert_eq!(d(b"K\x01(K\x02K\x031.").as_i64(), Some(1));
        assert!(matches!(e(b"K\x011.").kind, K::MissingMark));
        assert!(matches!(e(b"2.").kind, K::StackUnderflow));
        // STOP with an empty stack, and STOP right after a MARK
        assert!(matches!(e(b".").kind, K::StackUnderflow));
        assert!(matches!(e(b"N(.").kind, K::StackUnderflow));
    }

    // ---- memo ---------------------------------------------------------------------

    #[test]
    fn memo_shares_values() {
        let t = tuple_items(&d(b"\x80\x04\x8c\x02ab\x94h\x00\x86."));
        assert!(t[0].is(&t[1]));
        let t = tuple_items(&d(b"\x80\x02]r\x10\x00\x00\x00j\x10\x00\x00\x00\x86."));
        assert!(t[0].is(&t[1]));
        let t = tuple_items(&d(b"((lp7\ng7\nt."));
        assert!(t[0].is(&t[1]));
        assert!(matches!(e(b"\x80\x02h\x00.").kind, K::MemoKeyNotFound(0)));
        assert!(matches!(e(b"Np-1\n.").kind, K::BadArgument(_)));
        assert!(matches!(e(b"Npx\n.").kind, K::BadArgument(_)));
        // MEMOIZE uses the number of entries, like len(memo)
        let t = tuple_items(&d(b"\x80\x04K\x01q\x05K\x02\x94h\x01h\x05\x86."));
        assert_eq!(t[0].as_i64(), Some(2));
        assert_eq!(t[1].as_i64(), Some(1));
    }

    #[test]
    fn sparse_memo_keys_do_not_allocate() {
        // Keys near 2**32 go to the sparse map
        let v = d(b"\x80\x02K\x07r\xff\xff\xff\xff0K\x08r\xfe\xff\xff\xff0j\xff\xff\xff\xffj\xfe\xff\xff\xff\x86.");
        let t = tuple_items(&v);
        assert_eq!((t[0].as_i64(), t[1].as_i64()), (Some(7), Some(8)));
        // A huge text key too
        let t = tuple_items(&d(
            b"K\x01p99999999999999\n0g99999999999999\ng99999999999999\n\x86.",
        ));
        assert_eq!(t.len(), 2);
        // A sparse key later covered by the dense vector is still found
        let mut p = b"\x80\x02K\x01r\x00\x02\x00\x00".to_vec(); // put 512 (sparse)
        for i in 0..=255u8 {
            p.extend_from_slice(&[b'q', i]); // dense 0..=255
        }
        for i in 0..=255u8 {
            p.extend_from_slice(&[b'r', i, 1, 0, 0]); // dense 256..=511
        }
        p.extend_from_slice(b"0j\x00\x02\x00\x00.");
        assert_eq!(d(&p).as_i64(), Some(1));
    }

    // ---- globals and objects --------------------------------------------------------

    #[test]
    fn globals_and_python2_names() {
        let g = |v: Value| match v {
            Value::Global(g) => (g.module.to_string(), g.name.to_string()),
            other => panic!("not a global: {}", other.type_name()),
        };
        assert_eq!(
            g(d(b"c__builtin__\nset\n.")),
            ("builtins".into(), "set".into())
        );
        assert_eq!(
            g(d(b"cexceptions\nKeyError\n.")),
            ("builtins".into(), "KeyError".into())
        );
        assert_eq!(
            g(d(b"ccopy_reg\n_reconstructor\n.")),
            ("copyreg".into(), "_reconstructor".into())
        );
        assert_eq!(
            g(d(b"c__builtin__\nxrange\n.")),
            ("builtins".into(), "range".into())
        );
        assert_eq!(
            g(d(b"cUserDict\nIterableUserDict\n.")),
            ("collections".into(), "UserDict".into())
        );
        assert_eq!(
            g(d(b"cmultiprocessing\nAuthenticationError\n.")),
            (
                "multiprocessing.context".into(),
                "AuthenticationError".into()
            )
        );
        // Not mapped from protocol 3 on, like CPython
        assert_eq!(
            g(d(b"\x80\x03c__builtin__\nset\n.")),
            ("__builtin__".into(), "set".into())
        );
        assert_eq!(
            g(d(b"\x80\x04\x8c\x08datetime\x8c\x04date\x93.")),
            ("datetime".into(), "date".into())
        );
        assert!(matches!(
            e(b"\x80\x04K\x01\x8c\x01a\x93.").kind,
            K::WrongType(_)
        ));
        assert!(matches!(e(b"c\xff\nx\n.").kind, K::InvalidUtf8));
        assert!(matches!(e(b"cmod\n.").kind, K::Truncated));
    }

    #[test]
    fn reduce_stays_opaque() {
        // decimal.Decimal('1.5'), protocol 4
        let v = d(b"\x80\x04\x95!\x00\x00\x00\x00\x00\x00\x00\x8c\x07decimal\x94\x8c\x07Decimal\x94\x93\x94\x8c\x031.5\x94\x85\x94R\x94.");
        let o = obj(&v);
        assert!(o.global().unwrap().is("decimal", "Decimal"));
        assert_eq!(o.construct, Construct::Reduce);
        assert_eq!(s(&o.args_slice()[0]), "1.5");
        assert!(matches!(e(b"\x80\x02cm\nf\nNR.").kind, K::WrongType(_)));
    }

    #[test]
    fn newobj_build_and_items() {
        // Token: NEWOBJ then BUILD with a tuple state
        let v = d(b"\x80\x02cmultiprocessing.managers\nToken\nq\x00)\x81q\x01X\x04\x00\x00\x00listq\x02X\t\x00\x00\x00127.0.0.1q\x03M\x88\x13\x86q\x04X\x03\x00\x00\x00abcq\x05\x87q\x06b.");
        let o = obj(&v);
        assert!(o.global().unwrap().is("multiprocessing.managers", "Token"));
        assert_eq!(o.construct, Construct::NewObj);
        assert!(o.args_slice().is_empty());
        let st = tuple_items(o.state.as_ref().unwrap());
        assert_eq!(s(&st[0]), "list");
        assert_eq!(s(&st[2]), "abc");
        // Two dict BUILDs merge; APPEND/SETITEM on an object are recorded
        let v = d(b"\x80\x02cm\nC\n)\x81}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x01ub}X\x01\x00\x00\x00bK\x02sbK\x05aK\x06K\x07s.");
        let o = obj(&v);
        let st = o.state.clone().unwrap();
        assert_eq!(dict_get(&st, "a").unwrap().as_i64(), Some(1));
        assert_eq!(dict_get(&st, "b").unwrap().as_i64(), Some(2));
        assert_eq!(o.list_items.len(), 1);
        assert_eq!(o.dict_items.len(), 1);
        assert_eq!(o.dict_items[0].0.as_i64(), Some(6));
        // A non-dict BUILD replaces
        let o = obj(&d(b"\x80\x02cm\nC\n)\x81}bK\x01b."));
        assert_eq!(o.state.clone().unwrap().as_i64(), Some(1));
        // NEWOBJ_EX
        let o = obj(&d(
            b"\x80\x04cm\nC\nK\x01\x85}X\x01\x00\x00\x00kK\x02s\x92.",
        ));
        assert_eq!(o.construct, Construct::NewObjEx);
        assert_eq!(o.args_slice()[0].as_i64(), Some(1));
        assert_eq!(
            dict_get(o.kwargs.as_ref().unwrap(), "k").unwrap().as_i64(),
            Some(2)
        );
        assert!(matches!(e(b"\x80\x04cm\nC\n)N\x92.").kind, K::WrongType(_)));
        assert!(matches!(e(b"\x80\x04cm\nC\nN\x81.").kind, K::WrongType(_)));
    }

    #[test]
    fn inst_and_obj() {
        let o = obj(&d(b"(I1\nVx\nimymod\nMyClass\n."));
        assert!(o.global().unwrap().is("mymod", "MyClass"));
        assert_eq!(o.construct, Construct::Reduce);
        assert_eq!(o.args_slice().len(), 2);
        let o = obj(&d(b"(cmymod\nK\nK\x01o."));
        assert!(o.global().unwrap().is("mymod", "K"));
        assert_eq!(o.args_slice()[0].as_i64(), Some(1));
        assert!(matches!(e(b"(o.").kind, K::StackUnderflow));
        // INST of a whitelisted builtin is native
        let v = d(b"(I1\nI2\ni__builtin__\ncomplex\n.");
        assert!(matches!(v, Value::Complex(re, im) if re == 1.0 && im == 2.0));
    }

    #[test]
    fn build_on_native_values() {
        assert!(matches!(d(b"\x80\x02]Nb."), Value::List(_)));
        assert!(matches!(d(b"\x80\x02]}b."), Value::List(_)));
        let err = e(b"\x80\x02]K\x01b.");
        assert!(matches!(err.kind, K::WrongType(_)));
        assert!(err.to_string().contains("BUILD"), "{err}");
    }

    #[test]
    fn whitelisted_builtins_become_native() {
        // set/frozenset from a list, protocols 0-3
        let Value::Set(st) =
            d(b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.")
        else {
            panic!()
        };
        assert_eq!(st.read().len(), 2);
        assert!(matches!(
            d(b"\x80\x02c__builtin__\nfrozenset\n]\x85R."),
            Value::FrozenSet(_)
        ));
        assert!(matches!(
            e(b"\x80\x02c__builtin__\nset\n]]a\x85R.").kind,
            K::Unhashable(_)
        ));
        // bytes at protocols 0-2
        assert_eq!(bytes(&d(b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00\xc3\xa9aq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.")), b"\xe9a".to_vec());
        assert_eq!(
            bytes(&d(b"\x80\x02c__builtin__\nbytes\nq\x00)Rq\x01.")),
            Vec::<u8>::new()
        );
        // _codecs.encode beyond Latin-1 or with another codec stays opaque
        assert!(matches!(d(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00\xe2\x82\xacX\x06\x00\x00\x00latin1\x86R."), Value::Object(_)));
        assert!(matches!(
            d(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf-8\x86R."),
            Value::Object(_)
        ));
        // bytearray forms
        let ba = |v: Value| match v {
            Value::ByteArray(b) => b.read().clone(),
            other => panic!("not a bytearray: {}", other.type_name()),
        };
        assert_eq!(
            ba(d(
                b"\x80\x03cbuiltins\nbytearray\nq\x00C\x02abq\x01\x85q\x02Rq\x03."
            )),
            b"ab".to_vec()
        );
        assert_eq!(
            ba(d(b"\x80\x02c__builtin__\nbytearray\nq\x00)Rq\x01.")),
            Vec::<u8>::new()
        );
        assert_eq!(
            ba(d(b"c__builtin__\nbytearray\n(V\xe9\nVlatin-1\ntR.")),
            b"\xe9".to_vec()
        );
        // complex, slice
        assert!(
            matches!(d(b"\x80\x02c__builtin__\ncomplex\nG?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00\x86R."), Value::Complex(re, im) if re == 1.0 && im == 2.0)
        );
        assert!(matches!(
            d(b"\x80\x02c__builtin__\ncomplex\nX\x01\x00\x00\x001\x85R."),
            Value::Object(_)
        ));
        let Value::Slice(sl) =
            d(b"\x80\x04\x8c\x08builtins\x8c\x05slice\x93K\x01NJ\xff\xff\xff\xff\x87R.")
        else {
            panic!()
        };
        assert_eq!((sl.start.as_i64(), sl.step.as_i64()), (Some(1), Some(-1)));
        assert!(matches!(sl.stop, Value::None));
        // list (dict views), tuple, dict
        let v = d(b"\x80\x04\x8c\x08builtins\x8c\x04list\x93(K\x01K\x02l\x85R.");
        assert_eq!(list_items(&v).len(), 2);
        assert_eq!(
            tuple_items(&d(b"\x80\x04\x8c\x08builtins\x8c\x05tuple\x93]\x85R.")).len(),
            0
        );
        let v = d(b"\x80\x04\x8c\x08builtins\x8c\x04dict\x93}X\x01\x00\x00\x00aK\x01s\x85R.");
        assert_eq!(dict_get(&v, "a").unwrap().as_i64(), Some(1));
        // Another module's `set` stays opaque
        assert!(matches!(
            d(b"\x80\x03cmymod\nset\n]\x85R."),
            Value::Object(_)
        ));
        // NEWOBJ of a builtin is kept as written
        assert!(matches!(
            d(b"\x80\x03cbuiltins\nset\n)\x81."),
            Value::Object(_)
        ));
    }

    // ---- recursion ------------------------------------------------------------------

    #[test]
    fn recursive_structures() {
        // l = [1]; l.append(l)
        let v = d(b"\x80\x02]q\x00(K\x01h\x00e.");
        assert!(list_items(&v)[1].is(&v));
        // d = {}; d['self'] = d
        let v = d(b"\x80\x02}q\x00X\x04\x00\x00\x00selfq\x01h\x00s.");
        assert!(dict_get(&v, "self").unwrap().is(&v));
        // t = ([],); t[0].append(t) at protocols 0 and 2 (POP and POP_MARK+GET)
        for p in [
            &b"((lp0\n(g0\ntp1\na00g1\n."[..],
            b"\x80\x02]q\x00h\x00\x85q\x01a0h\x01.",
            b"(]q\x00(h\x00tq\x01a1h\x01.",
        ] {
            let t = d(p);
            let items = tuple_items(&t);
            assert_eq!(items.len(), 1);
            let inner = list_items(&items[0]);
            assert!(inner[0].is(&t), "tuple recursion lost for {p:?}");
        }
    }

    // ---- limits and errors -------------------------------------------------------------

    #[test]
    fn million_nested_lists_is_an_error() {
        let n = 1_000_000;
        let mut p = b"\x80\x04".to_vec();
        p.extend(std::iter::repeat_n(b']', n));
        p.extend(std::iter::repeat_n(b'a', n - 1));
        p.push(b'.');
        // A million lists on the stack pass the memory limit: the decoder
        // stops at about 32 bytes per input byte (plus 64 MiB), before the
        // depth check.
        let err = e(&p);
        assert!(matches!(err.kind, K::AllocLimit { .. }), "{err}");
        let roomy = DecodeOptions::default().with_max_alloc(1000, 0);
        let err = decode_with(&p, &roomy).unwrap_err();
        assert!(matches!(err.kind, K::DepthLimit { max: 1000 }), "{err}");
        assert_eq!(err.opcode, Some(b'a'));
        // Nested tuples via MARK too
        let mut p = vec![b'('; n];
        p.extend(std::iter::repeat_n(b't', n));
        p.push(b'.');
        assert!(matches!(e(&p).kind, K::DepthLimit { .. }));
        // Depth 1000 itself is fine
        let mut p = b"\x80\x04".to_vec();
        p.extend(std::iter::repeat_n(b']', 1000));
        p.extend(std::iter::repeat_n(b'a', 999));
        p.push(b'.');
        assert!(decode(&p).is_ok());
    }

    #[test]
    fn depth_follows_memo_references() {
        // a = [[[ ]]] memoized once filled; [a, a] must count a's full depth
        let opts = DecodeOptions::default().with_max_depth(4);
        // ]q0 ]]aa  -> a has depth 3; then build outer list of GETs (depth 4): ok
        assert!(decode_with(b"\x80\x02]q\x00]]aa]h\x00ah\x00a.", &opts).is_ok());
        // one more level outside -> depth 5: error
        assert!(matches!(
            decode_with(b"\x80\x02]]q\x00]]aa]h\x00ah\x00aa.", &opts)
                .unwrap_err()
                .kind,
            K::DepthLimit { max: 4 }
        ));
    }

    #[test]
    fn item_and_input_limits() {
        // pushes and container elements both count: 2 + 2 + 1
        let opts = DecodeOptions::default().with_max_items(5);
        assert!(decode_with(b"NN\x86.", &opts).is_ok());
        assert!(matches!(
            decode_with(b"NNN\x87.", &opts).unwrap_err().kind,
            K::ItemLimit { max: 5 }
        ));
        let opts = DecodeOptions::default().with_max_input(3);
        assert!(matches!(
            decode_with(b"K\x01.x", &opts).unwrap_err().kind,
            K::InputTooLarge { len: 4, max: 3 }
        ));
        let opts = DecodeOptions::default().with_max_memo(2);
        assert!(decode_with(b"\x80\x04N\x94\x94.", &opts).is_ok());
        assert!(matches!(
            decode_with(b"\x80\x04N\x94\x94\x94.", &opts)
                .unwrap_err()
                .kind,
            K::MemoLimit { max: 2 }
        ));
        // Re-putting an existing key is no new entry
        assert!(decode_with(b"Nq\x01q\x01q\x01q\x02.", &opts).is_ok());
    }

    #[test]
    fn framing_and_protocol() {
        assert_eq!(
            d(b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00K\x01.").as_i64(),
            Some(1)
        );
        let err = e(b"\x80\x04\x95\x04\x00\x00\x00\x00\x00\x00\x00K\x01.");
        assert!(matches!(
            err.kind,
            K::FrameTooLong {
                len: 4,
                remaining: 3
            }
        ));
        assert!(matches!(e(b"\x80\x06N.").kind, K::UnsupportedProtocol(6)));
        assert!(matches!(e(b"\x80").kind, K::Truncated));
    }

    #[test]
    fn error_kinds_and_messages() {
        let err = e(b"");
        assert!(matches!(err.kind, K::EmptyInput));
        assert_eq!(err.to_string(), "empty input at byte 0");
        let err = e(b"\x80\x04K\x01");
        assert!(matches!(err.kind, K::MissingStop));
        assert_eq!(err.offset, 4);
        let err = e(b"\x80\x04\xff");
        assert!(matches!(err.kind, K::UnknownOpcode));
        assert_eq!(err.to_string(), "unknown opcode 0xff at byte 2");
        let err = e(b"\x80\x04\x8c\x05ab");
        assert_eq!(
            err.to_string(),
            "truncated argument of opcode SHORT_BINUNICODE (0x8c) at byte 2"
        );
        let err = e(b"]NNa.");
        assert_eq!(
            err.to_string(),
            "cannot append to a 'NoneType' in opcode APPEND (0x61) at byte 3"
        );
        for (p, what) in [
            (&b"P123\n."[..], "persistent"),
            (b"NQ.", "persistent"),
            (b"\x82\x01.", "extension"),
            (b"\x83\x01\x00.", "extension"),
            (b"\x84\x01\x00\x00\x00.", "extension"),
            (b"\x80\x05\x97.", "out-of-band"),
            (b"\x80\x05N\x98.", "out-of-band"),
        ] {
            let err = e(p);
            assert!(matches!(err.kind, K::Unsupported(_)), "{err}");
            assert!(err.to_string().contains(what), "{err}");
        }
        // Data after STOP is ignored
        assert_eq!(d(b"K\x01.garbage").as_i64(), Some(1));
    }

    #[test]
    fn truncation_anywhere_never_panics() {
        let full: &[u8] = b"\x80\x04\x95J\x00\x00\x00\x00\x00\x00\x00\x8c\x18multiprocessing.managers\x94\x8c\x05Token\x94\x93\x94)\x81\x94\x8c\x04list\x94\x8c\t127.0.0.1\x94M\x88\x13\x86\x94\x8c\x03abc\x94\x87\x94b.";
        assert!(decode(full).is_ok());
        for i in 0..full.len() {
            assert!(decode(&full[..i]).is_err(), "prefix {i} decoded");
        }
        // Every single-byte corruption either decodes or errors, never panics
        for i in 0..full.len() {
            for b in [0u8, 0x28, 0x2e, 0x61, 0x80, 0x94, 0xff] {
                let mut p = full.to_vec();
                p[i] = b;
                let _ = decode(&p);
            }
        }
    }
}
