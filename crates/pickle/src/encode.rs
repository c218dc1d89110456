//! The pickle encoder: writes a [`Value`] as pickle protocol 2, 3, 4 or 5.
//!
//! The output loads with CPython's `pickle.loads` (both the C and the
//! pure-Python unpickler) on every CPython 3.8+ and is, for values without
//! shared `str`s, byte-for-byte what CPython's `pickle.dumps` writes at
//! protocols 3–5 (at protocol 2 CPython writes the Python 2 module name
//! `__builtin__` where this encoder writes `builtins`). Equal short strs
//! (stored inline, without an address: see [`PyStr`](crate::PyStr)) count
//! as shared: the second is written as a `BINGET`, as CPython does for
//! interned strs.
//!
//! * Opcodes are those CPython chooses: `BININT1`/`BININT2`/`BININT` for
//!   small ints, minimal two's-complement `LONG1`/`LONG4` for big ones,
//!   `SHORT_BINUNICODE` at protocol 4+, batched `APPENDS`/`SETITEMS`/
//!   `ADDITEMS` (1000 per batch), `STACK_GLOBAL` at protocol 4+, …
//! * Every object CPython memoizes gets a memo slot (`MEMOIZE` at protocol
//!   4+, `BINPUT`/`LONG_BINPUT` below), so shared and recursive references
//!   survive: a value met a second time is written as a `BINGET`. A value
//!   whose reference count is 1 cannot be met twice, so it gets its slot
//!   without being entered into the identity table.
//! * At protocol 4+ the output is cut into frames of about 64 KiB, as
//!   CPython's framer does (see [`EncodeOptions::framing`]).
//! * Nesting is bounded by [`EncodeOptions::max_depth`]; deep values never
//!   overflow the stack.
//!
//! ```
//! use mpmanager_pickle::encode::encode;
//! use mpmanager_pickle::Value;
//! // ('#RETURN', None), exactly as CPython 3.8–3.13 send it:
//! let reply = Value::tuple(vec![Value::str("#RETURN"), Value::None]);
//! assert_eq!(
//!     encode(&reply).unwrap(),
//!     b"\x80\x04\x95\x0e\x00\x00\x00\x00\x00\x00\x00\x8c\x07#RETURN\x94N\x86\x94.",
//! );
//! ```

use std::sync::Arc;

use num_bigint::BigInt;
use rustc_hash::FxHashMap;

use crate::hash::{RED_ZONE, STACK_GROWTH};
use crate::value::{Construct, Global, Object, Value};

// Opcodes (see CPython's `pickle.py`).
const MARK: u8 = b'(';
const STOP: u8 = b'.';
const POP: u8 = b'0';
const POP_MARK: u8 = b'1';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const NONE: u8 = b'N';
const REDUCE: u8 = b'R';
const BINUNICODE: u8 = b'X';
const APPEND: u8 = b'a';
const BUILD: u8 = b'b';
const GLOBAL: u8 = b'c';
const EMPTY_DICT: u8 = b'}';
const APPENDS: u8 = b'e';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const EMPTY_LIST: u8 = b']';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const SETITEM: u8 = b's';
const TUPLE: u8 = b't';
const EMPTY_TUPLE: u8 = b')';
const SETITEMS: u8 = b'u';
const BINFLOAT: u8 = b'G';
const PROTO: u8 = 0x80;
const NEWOBJ: u8 = 0x81;
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const LONG1: u8 = 0x8a;
const LONG4: u8 = 0x8b;
const BINBYTES: u8 = b'B';
const SHORT_BINBYTES: u8 = b'C';
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE8: u8 = 0x8d;
const BINBYTES8: u8 = 0x8e;
const EMPTY_SET: u8 = 0x8f;
const ADDITEMS: u8 = 0x90;
const FROZENSET: u8 = 0x91;
const NEWOBJ_EX: u8 = 0x92;
const STACK_GLOBAL: u8 = 0x93;
const MEMOIZE: u8 = 0x94;
const FRAME: u8 = 0x95;
const BYTEARRAY8: u8 = 0x96;

/// Items per `APPENDS`/`SETITEMS`/`ADDITEMS` batch, as CPython.
const BATCH_SIZE: usize = 1000;
/// `FRAME` opcode plus its 8-byte length.
const FRAME_HEADER: usize = 9;
/// A frame is closed at the first opcode boundary past this size; payloads
/// this large are written outside frames (CPython's `_FRAME_SIZE_TARGET`).
const FRAME_TARGET: usize = 64 * 1024;
/// Frames shorter than this get no `FRAME` header (CPython's `_FRAME_SIZE_MIN`).
const FRAME_MIN: usize = 4;

/// How to encode.
///
/// ```
/// use mpmanager_pickle::encode::{encode_with, EncodeOptions};
/// use mpmanager_pickle::Value;
/// let mut opts = EncodeOptions::protocol(2);
/// opts.max_depth = 50;
/// assert_eq!(encode_with(&Value::None, &opts).unwrap(), b"\x80\x02N.");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncodeOptions {
    /// The pickle protocol, 2 to 5. Default 4, what CPython 3.8–3.13 send
    /// (3.14 sends 5).
    pub protocol: u8,
    /// Cut the output into `FRAME`s of about 64 KiB at protocol 4+, as
    /// CPython does (ignored below protocol 4). Default `true`. Unframed
    /// output loads just as well; framing lets a streaming reader fetch
    /// each frame with one read.
    pub framing: bool,
    /// The deepest container nesting accepted: `max_depth` nested lists
    /// encode, one more fails with [`EncodeError::TooDeep`]. Default 1000.
    pub max_depth: usize,
}

impl Default for EncodeOptions {
    /// Protocol 4, framing on, `max_depth` 1000.
    ///
    /// ```
    /// use mpmanager_pickle::encode::EncodeOptions;
    /// let o = EncodeOptions::default();
    /// assert_eq!((o.protocol, o.framing, o.max_depth), (4, true, 1000));
    /// ```
    fn default() -> Self {
        EncodeOptions {
            protocol: 4,
            framing: true,
            max_depth: crate::limits::MAX_DEPTH,
        }
    }
}

impl EncodeOptions {
    /// The default options with protocol `p`.
    ///
    /// ```
    /// use mpmanager_pickle::encode::EncodeOptions;
    /// assert_eq!(EncodeOptions::protocol(5).protocol, 5);
    /// assert!(EncodeOptions::protocol(5).framing);
    /// ```
    pub fn protocol(p: u8) -> Self {
        EncodeOptions {
            protocol: p,
            ..EncodeOptions::default()
        }
    }
}

/// Why a value could not be encoded.
///
/// ```
/// use mpmanager_pickle::encode::{encode_with, EncodeError, EncodeOptions};
/// use mpmanager_pickle::Value;
/// let err = encode_with(&Value::None, &EncodeOptions::protocol(1)).unwrap_err();
/// assert!(matches!(err, EncodeError::UnsupportedProtocol(1)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The protocol is not 2, 3, 4 or 5.
    #[error("unsupported pickle protocol {0} (the encoder writes protocols 2 to 5)")]
    UnsupportedProtocol(u8),
    /// Containers are nested deeper than [`EncodeOptions::max_depth`].
    #[error("value nested more than {max_depth} containers deep")]
    TooDeep {
        /// The limit that was exceeded.
        max_depth: usize,
    },
    /// An object is reachable from its own constructor arguments (callable,
    /// `args` or `kwargs`) with no list, dict, set or already built object
    /// on the way: it would have to exist before it is created, which pickle
    /// cannot express (CPython fails with `RecursionError`).
    #[error("{type_name} object is reachable from its own constructor arguments")]
    RecursiveArgs {
        /// The type of the object, e.g. `mymodule.Node` or `tuple`.
        type_name: String,
    },
    /// A `str`, `bytes`, `bytearray` or `int` is larger than the protocol
    /// can express (4 GiB and more below protocol 4, or an `int` of 2 GiB).
    #[error("{what} of {len} bytes is too large for pickle protocol {protocol}")]
    TooLarge {
        /// `"str"`, `"bytes"`, `"bytearray"` or `"int"`.
        what: &'static str,
        /// Its encoded size in bytes.
        len: usize,
        /// The protocol in use.
        protocol: u8,
    },
    /// A global's module or name contains a newline or is empty, which the
    /// `GLOBAL` opcode of protocols 2 and 3 cannot carry.
    #[error("global {module}.{name} cannot be written at pickle protocol {protocol}")]
    InvalidGlobal {
        /// The module name.
        module: String,
        /// The qualified name.
        name: String,
        /// The protocol in use.
        protocol: u8,
    },
}

/// Encodes `v` with the default options: protocol 4, framed, as CPython
/// 3.8–3.13 `pickle.dumps(v)` does.
///
/// ```
/// use mpmanager_pickle::encode::encode;
/// use mpmanager_pickle::Value;
/// let v = Value::list(vec![Value::Int(1), Value::str("a")]);
/// // pickle.dumps([1, 'a']) on CPython 3.8–3.13:
/// assert_eq!(
///     encode(&v).unwrap(),
///     b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94e.",
/// );
/// ```
pub fn encode(v: &Value) -> Result<Vec<u8>, EncodeError> {
    encode_with(v, &EncodeOptions::default())
}

/// Encodes `v` with the given options.
///
/// ```
/// use mpmanager_pickle::encode::{encode_with, EncodeOptions};
/// use mpmanager_pickle::Value;
/// let v = Value::tuple(vec![Value::str("#RETURN"), Value::None]);
/// let data = encode_with(&v, &EncodeOptions::protocol(2)).unwrap();
/// assert_eq!(data, b"\x80\x02X\x07\x00\x00\x00#RETURNq\x00N\x86q\x01.");
/// ```
pub fn encode_with(v: &Value, opts: &EncodeOptions) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(v, &mut out, opts)?;
    Ok(out)
}

/// Appends the encoding of `v` to `out` (which keeps its earlier contents),
/// so that a server can reuse one buffer for every reply. On error `out` is
/// left as it was.
///
/// ```
/// use mpmanager_pickle::encode::{encode_into, EncodeOptions};
/// use mpmanager_pickle::Value;
/// let mut buf = b"header".to_vec();
/// let mut opts = EncodeOptions::default();
/// opts.framing = false;
/// encode_into(&Value::Int(7), &mut buf, &opts).unwrap();
/// assert_eq!(buf, b"header\x80\x04K\x07.");
/// ```
pub fn encode_into(v: &Value, out: &mut Vec<u8>, opts: &EncodeOptions) -> Result<(), EncodeError> {
    if !(2..=5).contains(&opts.protocol) {
        return Err(EncodeError::UnsupportedProtocol(opts.protocol));
    }
    let start = out.len();
    out.reserve(64);
    let mut enc = Encoder {
        out,
        proto: opts.protocol,
        max_depth: opts.max_depth,
        frame_start: None,
        framing: opts.framing && opts.protocol >= 4,
        memo_len: 0,
        memo: FxHashMap::default(),
        keep: Vec::new(),
        str_memo: FxHashMap::default(),
        inline_str_memo: FxHashMap::default(),
        globals: FxHashMap::default(),
        modules: FxHashMap::default(),
        latin1: None,
        in_progress: FxHashMap::default(),
    };
    enc.out.extend_from_slice(&[PROTO, opts.protocol]);
    enc.open_frame();
    let result = enc.save(v, 0);
    match result {
        Ok(()) => {
            enc.out.push(STOP);
            enc.commit_frame();
            Ok(())
        }
        Err(e) => {
            drop(enc);
            out.truncate(start);
            Err(e)
        }
    }
}

/// True if `v` is the only reference to its heap value, so that it cannot
/// be met again while encoding. (`str`s cannot tell, so they answer false.)
#[inline]
fn is_unique(v: &Value) -> bool {
    v.strong_count() == Some(1)
}

/// A 64-bit fingerprint of a str's text (length included).
#[inline]
fn fingerprint(b: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write_usize(b.len());
    h.write(b);
    h.finish()
}

/// The encoder's state for one value.
struct Encoder<'o> {
    out: &'o mut Vec<u8>,
    proto: u8,
    max_depth: usize,
    framing: bool,
    /// Where the open frame's reserved header starts.
    frame_start: Option<usize>,
    /// Memo slots handed out so far (the unpickler's `len(memo)`).
    memo_len: u64,
    /// `Value::identity()` → memo slot, for values that may be met again.
    memo: FxHashMap<usize, u32>,
    /// Keeps every value in `memo` alive, so that no address in it can be
    /// reused by another value while encoding (CPython's memo holds
    /// references for the same reason).
    keep: Vec<Value>,
    /// `str` identity → (memo slot, fingerprint of the text).
    str_memo: FxHashMap<usize, (u32, u64)>,
    /// Inline (short) `str` text → memo slot.
    inline_str_memo: FxHashMap<u128, u32>,
    /// Globals by value (`Value::is` compares them by name).
    globals: FxHashMap<Arc<Global>, u32>,
    /// Module-name strings of globals, by value (CPython's are interned, so
    /// it writes each once).
    modules: FxHashMap<Arc<str>, u32>,
    /// The memo slot of the string `'latin1'` (protocol 2 `bytes`).
    latin1: Option<u32>,
    /// Identities of shared tuples, frozensets and objects whose contents or
    /// constructor arguments are being written, and how many times over.
    in_progress: FxHashMap<usize, u32>,
}

type Res = Result<(), EncodeError>;

impl Encoder<'_> {
    // ---- framing ---------------------------------------------------------

    #[inline]
    fn open_frame(&mut self) {
        if self.framing {
            self.frame_start = Some(self.out.len());
            self.out.extend_from_slice(&[0; FRAME_HEADER]);
        }
    }

    /// Closes the open frame: fills in its header, or removes the header if
    /// the frame is too short to deserve one.
    fn commit_frame(&mut self) {
        if let Some(fs) = self.frame_start.take() {
            let len = self.out.len() - fs - FRAME_HEADER;
            if len >= FRAME_MIN {
                self.out[fs] = FRAME;
                self.out[fs + 1..fs + FRAME_HEADER].copy_from_slice(&(len as u64).to_le_bytes());
            } else {
                self.out.drain(fs..fs + FRAME_HEADER);
            }
        }
    }

    /// Called between opcodes: starts a new frame once the current one has
    /// reached the target size.
    #[inline]
    fn boundary(&mut self) {
        if let Some(fs) = self.frame_start {
            if self.out.len() - fs >= FRAME_HEADER + FRAME_TARGET {
                self.commit_frame();
                self.open_frame();
            }
        }
    }

    /// Writes `header` and `payload`; a payload of 64 KiB or more goes
    /// outside any frame, as CPython writes it.
    fn write_payload(&mut self, header: &[u8], payload: &[u8]) {
        if self.frame_start.is_some() && payload.len() >= FRAME_TARGET {
            self.commit_frame();
            self.out.extend_from_slice(header);
            self.out.extend_from_slice(payload);
            self.open_frame();
        } else {
            self.out.reserve(header.len() + payload.len());
            self.out.extend_from_slice(header);
            self.out.extend_from_slice(payload);
        }
    }

    // ---- memo --------------------------------------------------------------

    /// Gives the object just built the next memo slot; `key` enters it into
    /// the identity table (only needed if it may be met again).
    #[inline]
    fn memoize(&mut self, key: Option<(usize, &Value)>) -> u32 {
        let idx = self.memo_len;
        self.memo_len += 1;
        if self.proto >= 4 {
            self.out.push(MEMOIZE);
        } else if idx < 256 {
            self.out.extend_from_slice(&[BINPUT, idx as u8]);
        } else {
            let i = idx as u32;
            self.out.push(LONG_BINPUT);
            self.out.extend_from_slice(&i.to_le_bytes());
        }
        // Past 2**32 slots no GET could name it anyway.
        let idx = u32::try_from(idx).unwrap_or(u32::MAX);
        if let Some((id, v)) = key {
            if idx != u32::MAX {
                self.memo.insert(id, idx);
                self.keep.push(v.clone());
            }
        }
        idx
    }

    #[inline]
    fn get(&mut self, idx: u32) {
        if idx < 256 {
            self.out.extend_from_slice(&[BINGET, idx as u8]);
        } else {
            self.out.push(LONG_BINGET);
            self.out.extend_from_slice(&idx.to_le_bytes());
        }
    }

    /// Marks a shared value as being built; fails on the third nesting
    /// (the second is CPython's "build it again, keep the inner copy").
    fn enter(&mut self, id: usize, type_name: impl FnOnce() -> String) -> Res {
        let n = self.in_progress.entry(id).or_insert(0);
        *n += 1;
        if *n > 2 {
            return Err(EncodeError::RecursiveArgs {
                type_name: type_name(),
            });
        }
        Ok(())
    }

    fn leave(&mut self, id: usize) {
        if let Some(n) = self.in_progress.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.in_progress.remove(&id);
            }
        }
    }

    /// After a value built from its contents (tuple, frozenset, `REDUCE`)
    /// was written: if writing the contents already memoized it (a cycle
    /// through a list, dict or built object), drop what is on the stack and
    /// fetch the memoized copy, as CPython does. Returns true in that case.
    #[inline]
    fn already_memoized(&mut self, id: Option<usize>, pop: &[u8]) -> bool {
        if let Some(id) = id {
            if let Some(&idx) = self.memo.get(&id) {
                self.out.extend_from_slice(pop);
                self.get(idx);
                return true;
            }
        }
        false
    }

    // ---- values ------------------------------------------------------------

    fn save(&mut self, v: &Value, depth: usize) -> Res {
        self.boundary();
        match v {
            Value::None => self.out.push(NONE),
            Value::Bool(b) => self.out.push(if *b { NEWTRUE } else { NEWFALSE }),
            Value::Int(i) => self.write_int(*i),
            Value::Float(f) => {
                self.out.push(BINFLOAT);
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Value::BigInt(b) => self.write_bigint(b)?,
            Value::Str(s) => {
                // A str cannot tell whether it is shared, so every str goes
                // into its own table. Rather than holding a reference to each
                // (costly for the commonest value), an entry records a
                // fingerprint of the text: should the str be freed meanwhile
                // (another thread mutating a container already written) and
                // its address reused, a different text is not mistaken for
                // it, and an equal text may harmlessly share its memo slot.
                //
                // A short str is stored inline and has no address: equal
                // texts are the same object (see `PyStr::ptr_eq`), so they
                // share one memo slot, found by the text itself.
                if let Some(key) = s.inline_key() {
                    match self.inline_str_memo.get(&key) {
                        Some(&idx) => self.get(idx),
                        None => {
                            self.write_str(s.as_wtf8())?;
                            let idx = self.memoize(None);
                            if idx != u32::MAX {
                                self.inline_str_memo.insert(key, idx);
                            }
                        }
                    }
                    return Ok(());
                }
                let b = s.as_wtf8();
                let id = v.identity().unwrap_or(0);
                let fp = fingerprint(b);
                match self.str_memo.get(&id) {
                    Some(&(idx, f)) if f == fp => self.get(idx),
                    _ => {
                        self.write_str(b)?;
                        let idx = self.memoize(None);
                        if idx != u32::MAX {
                            self.str_memo.insert(id, (idx, fp));
                        }
                    }
                }
            }
            Value::Global(g) => self.save_global(g)?,
            Value::Bytes(b) => {
                let unique = is_unique(v) && self.in_progress.is_empty();
                let id = if unique { None } else { v.identity() };
                if let Some(&idx) = id.and_then(|id| self.memo.get(&id)) {
                    self.get(idx);
                } else {
                    self.save_bytes(b, id.map(|id| (id, v)))?;
                }
            }
            Value::Complex(re, im) => {
                self.save_global_parts("builtins", "complex")?;
                self.out.push(BINFLOAT);
                self.out.extend_from_slice(&re.to_be_bytes());
                self.out.push(BINFLOAT);
                self.out.extend_from_slice(&im.to_be_bytes());
                self.out.push(TUPLE2);
                self.memoize(None);
                self.out.push(REDUCE);
                self.memoize(None);
            }
            _ => {
                if depth >= self.max_depth {
                    return Err(EncodeError::TooDeep {
                        max_depth: self.max_depth,
                    });
                }
                return stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || self.save_heap(v, depth));
            }
        }
        Ok(())
    }

    /// Writes a value that may be shared (everything but scalars and strs).
    fn save_heap(&mut self, v: &Value, depth: usize) -> Res {
        // While a shared tuple or object is being built from its contents it
        // may be met again, and then its contents are written a second time
        // (as CPython does); the second pass must find everything the first
        // one built in the memo, so uniqueness is not trusted meanwhile.
        let unique = is_unique(v) && self.in_progress.is_empty();
        let shared_id = if unique { None } else { v.identity() };
        if let Some(id) = shared_id {
            if let Some(&idx) = self.memo.get(&id) {
                self.get(idx);
                return Ok(());
            }
        }
        let key = shared_id.map(|id| (id, v));
        let d = depth + 1;
        match v {
            Value::ByteArray(b) => {
                let b = b.read_recursive();
                if self.proto >= 5 {
                    let mut h = [0u8; 9];
                    h[0] = BYTEARRAY8;
                    h[1..].copy_from_slice(&(b.len() as u64).to_le_bytes());
                    self.write_payload(&h, &b);
                } else {
                    self.save_global_parts("builtins", "bytearray")?;
                    if b.is_empty() {
                        self.out.push(EMPTY_TUPLE);
                    } else {
                        self.save_bytes(&b, None)?;
                        self.out.push(TUPLE1);
                        self.memoize(None);
                    }
                    self.out.push(REDUCE);
                }
                self.memoize(key);
            }
            Value::Tuple(t) => {
                let n = t.len();
                if n == 0 {
                    self.out.push(EMPTY_TUPLE);
                    return Ok(());
                }
                if let Some(id) = shared_id {
                    self.enter(id, || "tuple".into())?;
                }
                if n <= 3 {
                    for x in t.iter() {
                        self.save(x, d)?;
                    }
                    if let Some(id) = shared_id {
                        self.leave(id);
                    }
                    const POPS: [u8; 3] = [POP; 3];
                    if !self.already_memoized(shared_id, &POPS[..n]) {
                        self.out.push([TUPLE1, TUPLE2, TUPLE3][n - 1]);
                        self.memoize(key);
                    }
                } else {
                    self.out.push(MARK);
                    for x in t.iter() {
                        self.save(x, d)?;
                    }
                    if let Some(id) = shared_id {
                        self.leave(id);
                    }
                    if !self.already_memoized(shared_id, &[POP_MARK]) {
                        self.out.push(TUPLE);
                        self.memoize(key);
                    }
                }
            }
            Value::List(l) => {
                let l = l.read_recursive();
                self.out.push(EMPTY_LIST);
                self.memoize(key);
                self.batch_appends(&l, d)?;
            }
            Value::Dict(m) => {
                let m = m.read_recursive();
                self.out.push(EMPTY_DICT);
                self.memoize(key);
                self.batch_setitems(m.iter().map(|(k, v)| (k.value(), v)), m.len(), d)?;
            }
            Value::Set(s) => {
                let s = s.read_recursive();
                if self.proto >= 4 {
                    self.out.push(EMPTY_SET);
                    self.memoize(key);
                    let mut it = s.iter();
                    let mut left = s.len();
                    while left > 0 {
                        let n = left.min(BATCH_SIZE);
                        self.out.push(MARK);
                        for k in it.by_ref().take(n) {
                            self.save(k.value(), d)?;
                        }
                        self.out.push(ADDITEMS);
                        left -= n;
                    }
                } else {
                    self.save_set_reduce("set", s.iter().map(|k| k.value()), s.len(), v, key, d)?;
                }
            }
            Value::FrozenSet(s) => {
                if self.proto >= 4 {
                    if let Some(id) = shared_id {
                        self.enter(id, || "frozenset".into())?;
                    }
                    self.out.push(MARK);
                    for k in s.iter() {
                        self.save(k.value(), d)?;
                    }
                    if let Some(id) = shared_id {
                        self.leave(id);
                    }
                    if !self.already_memoized(shared_id, &[POP_MARK]) {
                        self.out.push(FROZENSET);
                        self.memoize(key);
                    }
                } else {
                    self.save_set_reduce(
                        "frozenset",
                        s.iter().map(|k| k.value()),
                        s.len(),
                        v,
                        key,
                        d,
                    )?;
                }
            }
            Value::Slice(s) => {
                if let Some(id) = shared_id {
                    self.enter(id, || "slice".into())?;
                }
                self.save_global_parts("builtins", "slice")?;
                self.save(&s.start, d)?;
                self.save(&s.stop, d)?;
                self.save(&s.step, d)?;
                self.out.push(TUPLE3);
                self.memoize(None);
                self.out.push(REDUCE);
                if let Some(id) = shared_id {
                    self.leave(id);
                }
                if !self.already_memoized(shared_id, &[POP]) {
                    self.memoize(key);
                }
            }
            Value::Object(o) => {
                let o = o.read_recursive();
                self.save_object(&o, shared_id, key, d)?;
            }
            Value::None
            | Value::Bool(_)
            | Value::Int(_)
            | Value::Float(_)
            | Value::Complex(..)
            | Value::BigInt(_)
            | Value::Str(_)
            | Value::Bytes(_)
            | Value::Global(_) => unreachable!("handled by save"),
        }
        Ok(())
    }

    fn save_object(
        &mut self,
        o: &Object,
        shared_id: Option<usize>,
        key: Option<(usize, &Value)>,
        d: usize,
    ) -> Res {
        if let Some(id) = shared_id {
            self.enter(id, || match o.global() {
                Some(g) => format!("{}.{}", g.module, g.name),
                None => o.callable.type_name(),
            })?;
        }
        match o.construct {
            Construct::Reduce => {
                self.save(&o.callable, d)?;
                self.save(&o.args, d)?;
                self.out.push(REDUCE);
            }
            Construct::NewObj => {
                self.save(&o.callable, d)?;
                self.save(&o.args, d)?;
                self.out.push(NEWOBJ);
            }
            Construct::NewObjEx => {
                if self.proto >= 4 {
                    self.save(&o.callable, d)?;
                    self.save(&o.args, d)?;
                    self.save_kwargs(o.kwargs.as_ref(), d)?;
                    self.out.push(NEWOBJ_EX);
                } else {
                    // copyreg.__newobj_ex__(cls, args, kwargs)
                    self.save_global_parts("copyreg", "__newobj_ex__")?;
                    self.save(&o.callable, d)?;
                    self.save(&o.args, d)?;
                    self.save_kwargs(o.kwargs.as_ref(), d)?;
                    self.out.push(TUPLE3);
                    self.memoize(None);
                    self.out.push(REDUCE);
                }
            }
        }
        if let Some(id) = shared_id {
            self.leave(id);
            if self.already_memoized(shared_id, &[POP]) {
                // The copy built inside the arguments already got its items
                // and state.
                return Ok(());
            }
        }
        self.memoize(key);
        if !o.list_items.is_empty() {
            self.batch_appends(&o.list_items, d)?;
        }
        if !o.dict_items.is_empty() {
            self.batch_setitems(
                o.dict_items.iter().map(|(k, v)| (k, v)),
                o.dict_items.len(),
                d,
            )?;
        }
        if let Some(state) = &o.state {
            self.save(state, d)?;
            self.out.push(BUILD);
        }
        Ok(())
    }

    fn save_kwargs(&mut self, kwargs: Option<&Value>, d: usize) -> Res {
        match kwargs {
            Some(k) => self.save(k, d),
            None => {
                self.out.push(EMPTY_DICT);
                self.memoize(None);
                Ok(())
            }
        }
    }

    /// `set`/`frozenset` below protocol 4: `REDUCE(cls, ([items],))`.
    fn save_set_reduce<'a>(
        &mut self,
        cls: &str,
        items: impl Iterator<Item = &'a Value>,
        len: usize,
        v: &Value,
        key: Option<(usize, &Value)>,
        d: usize,
    ) -> Res {
        let shared_id = key.map(|k| k.0);
        if let Some(id) = shared_id {
            self.enter(id, || v.type_name())?;
        }
        self.save_global_parts("builtins", cls)?;
        self.out.push(EMPTY_LIST);
        self.memoize(None);
        self.batch_appends_iter(items, len, d)?;
        self.out.push(TUPLE1);
        self.memoize(None);
        self.out.push(REDUCE);
        if let Some(id) = shared_id {
            self.leave(id);
        }
        if !self.already_memoized(shared_id, &[POP]) {
            self.memoize(key);
        }
        Ok(())
    }

    fn batch_appends(&mut self, items: &[Value], d: usize) -> Res {
        for chunk in items.chunks(BATCH_SIZE) {
            if chunk.len() > 1 {
                self.out.push(MARK);
                for x in chunk {
                    self.save(x, d)?;
                }
                self.out.push(APPENDS);
            } else {
                self.save(&chunk[0], d)?;
                self.out.push(APPEND);
            }
        }
        Ok(())
    }

    fn batch_appends_iter<'a>(
        &mut self,
        mut items: impl Iterator<Item = &'a Value>,
        len: usize,
        d: usize,
    ) -> Res {
        let mut left = len;
        while left > 0 {
            let n = left.min(BATCH_SIZE);
            if n > 1 {
                self.out.push(MARK);
                for x in items.by_ref().take(n) {
                    self.save(x, d)?;
                }
                self.out.push(APPENDS);
            } else if let Some(x) = items.next() {
                self.save(x, d)?;
                self.out.push(APPEND);
            }
            left -= n;
        }
        Ok(())
    }

    fn batch_setitems<'a>(
        &mut self,
        mut items: impl Iterator<Item = (&'a Value, &'a Value)>,
        len: usize,
        d: usize,
    ) -> Res {
        let mut left = len;
        while left > 0 {
            let n = left.min(BATCH_SIZE);
            if n > 1 {
                self.out.push(MARK);
                for (k, v) in items.by_ref().take(n) {
                    self.save(k, d)?;
                    self.save(v, d)?;
                }
                self.out.push(SETITEMS);
            } else if let Some((k, v)) = items.next() {
                self.save(k, d)?;
                self.save(v, d)?;
                self.out.push(SETITEM);
            }
            left -= n;
        }
        Ok(())
    }

    // ---- scalars -----------------------------------------------------------

    #[inline]
    fn write_int(&mut self, i: i64) {
        if (0..=0xff).contains(&i) {
            self.out.extend_from_slice(&[BININT1, i as u8]);
        } else if (0..=0xffff).contains(&i) {
            let b = (i as u16).to_le_bytes();
            self.out.extend_from_slice(&[BININT2, b[0], b[1]]);
        } else if let Ok(j) = i32::try_from(i) {
            self.out.push(BININT);
            self.out.extend_from_slice(&j.to_le_bytes());
        } else {
            // Minimal two's complement, little-endian (CPython's encode_long).
            let b = i.to_le_bytes();
            let mut n = 8;
            while n > 1 {
                let (top, next) = (b[n - 1], b[n - 2]);
                if (top == 0 && next & 0x80 == 0) || (top == 0xff && next & 0x80 != 0) {
                    n -= 1;
                } else {
                    break;
                }
            }
            self.out.extend_from_slice(&[LONG1, n as u8]);
            self.out.extend_from_slice(&b[..n]);
        }
    }

    fn write_bigint(&mut self, b: &BigInt) -> Res {
        let bytes = b.to_signed_bytes_le();
        let n = bytes.len();
        if n < 256 {
            self.out.extend_from_slice(&[LONG1, n as u8]);
        } else {
            let len = i32::try_from(n).map_err(|_| EncodeError::TooLarge {
                what: "int",
                len: n,
                protocol: self.proto,
            })?;
            self.out.push(LONG4);
            self.out.extend_from_slice(&len.to_le_bytes());
        }
        self.out.extend_from_slice(&bytes);
        Ok(())
    }

    /// A `str` opcode with its generalized UTF-8 payload (no memo).
    #[inline]
    fn write_str(&mut self, b: &[u8]) -> Res {
        let n = b.len();
        if n < 256 && self.proto >= 4 {
            self.out.reserve(n + 2);
            self.out.extend_from_slice(&[SHORT_BINUNICODE, n as u8]);
            self.out.extend_from_slice(b);
        } else if let Ok(n32) = u32::try_from(n) {
            let mut h = [BINUNICODE, 0, 0, 0, 0];
            h[1..].copy_from_slice(&n32.to_le_bytes());
            self.write_payload(&h, b);
        } else if self.proto >= 4 {
            let mut h = [0u8; 9];
            h[0] = BINUNICODE8;
            h[1..].copy_from_slice(&(n as u64).to_le_bytes());
            self.write_payload(&h, b);
        } else {
            return Err(EncodeError::TooLarge {
                what: "str",
                len: n,
                protocol: self.proto,
            });
        }
        Ok(())
    }

    /// A `bytes` object, memoized under `key`.
    fn save_bytes(&mut self, b: &[u8], key: Option<(usize, &Value)>) -> Res {
        let n = b.len();
        if self.proto >= 3 {
            if n < 256 {
                self.out.reserve(n + 2);
                self.out.extend_from_slice(&[SHORT_BINBYTES, n as u8]);
                self.out.extend_from_slice(b);
            } else if let Ok(n32) = u32::try_from(n) {
                let mut h = [BINBYTES, 0, 0, 0, 0];
                h[1..].copy_from_slice(&n32.to_le_bytes());
                self.write_payload(&h, b);
            } else if self.proto >= 4 {
                let mut h = [0u8; 9];
                h[0] = BINBYTES8;
                h[1..].copy_from_slice(&(n as u64).to_le_bytes());
                self.write_payload(&h, b);
            } else {
                return Err(EncodeError::TooLarge {
                    what: "bytes",
                    len: n,
                    protocol: self.proto,
                });
            }
        } else if n == 0 {
            // bytes()
            self.save_global_parts("builtins", "bytes")?;
            self.out.push(EMPTY_TUPLE);
            self.out.push(REDUCE);
        } else {
            // _codecs.encode(b.decode('latin1'), 'latin1')
            self.save_global_parts("_codecs", "encode")?;
            let mut s = Vec::with_capacity(n + n / 2);
            for &c in b {
                if c < 0x80 {
                    s.push(c);
                } else {
                    s.extend_from_slice(&[0xC0 | (c >> 6), 0x80 | (c & 0x3F)]);
                }
            }
            self.write_str(&s)?;
            self.memoize(None);
            match self.latin1 {
                Some(idx) => self.get(idx),
                None => {
                    self.write_str(b"latin1")?;
                    let idx = self.memoize(None);
                    self.latin1 = Some(idx);
                }
            }
            self.out.push(TUPLE2);
            self.memoize(None);
            self.out.push(REDUCE);
        }
        self.memoize(key);
        Ok(())
    }

    // ---- globals -----------------------------------------------------------

    fn save_global(&mut self, g: &Arc<Global>) -> Res {
        if let Some(&idx) = self.globals.get(&**g) {
            self.get(idx);
            return Ok(());
        }
        self.write_global(&g.module, &g.name)?;
        let idx = self.memoize(None);
        self.globals.insert(g.clone(), idx);
        Ok(())
    }

    /// A global named by the encoder itself (`builtins.set`, …), memoized
    /// by name like any other.
    fn save_global_parts(&mut self, module: &str, name: &str) -> Res {
        let g = Global::new(module, name);
        if let Some(&idx) = self.globals.get(&g) {
            self.get(idx);
            return Ok(());
        }
        self.write_global(module, name)?;
        let idx = self.memoize(None);
        self.globals.insert(Arc::new(g), idx);
        Ok(())
    }

    /// Writes the opcodes that push global `module.name` (no memo for it).
    fn write_global(&mut self, module: &str, name: &str) -> Res {
        if self.proto >= 4 {
            match self.modules.get(module) {
                Some(&idx) => self.get(idx),
                None => {
                    self.write_str(module.as_bytes())?;
                    let idx = self.memoize(None);
                    self.modules.insert(module.into(), idx);
                }
            }
            self.write_str(name.as_bytes())?;
            self.memoize(None);
            self.out.push(STACK_GLOBAL);
            return Ok(());
        }
        let invalid = |s: &str| s.is_empty() || s.contains('\n');
        if invalid(module) || name.split('.').any(invalid) {
            return Err(EncodeError::InvalidGlobal {
                module: module.into(),
                name: name.into(),
                protocol: self.proto,
            });
        }
        match name.rsplit_once('.') {
            None => {
                self.out.reserve(module.len() + name.len() + 3);
                self.out.push(GLOBAL);
                self.out.extend_from_slice(module.as_bytes());
                self.out.push(b'\n');
                self.out.extend_from_slice(name.as_bytes());
                self.out.push(b'\n');
            }
            Some((parent, last)) => {
                // A nested class below protocol 4: getattr(parent, last), as
                // CPython writes it.
                self.save_global_parts("builtins", "getattr")?;
                self.save_global_parts(module, parent)?;
                self.write_str(last.as_bytes())?;
                self.memoize(None);
                self.out.push(TUPLE2);
                self.memoize(None);
                self.out.push(REDUCE);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exc::{ExcType, PyErr};
    use crate::value::{shared, Object, Slice};

    fn enc(v: &Value, proto: u8) -> Vec<u8> {
        encode_with(v, &EncodeOptions::protocol(proto)).unwrap()
    }

    fn unframed(v: &Value, proto: u8) -> Vec<u8> {
        let mut o = EncodeOptions::protocol(proto);
        o.framing = false;
        encode_with(v, &o).unwrap()
    }

    /// Parses the "hex and quoted text" notation of docs/PROTOCOL.md.
    fn hexq(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = s;
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                return out;
            }
            if let Some(r) = rest.strip_prefix('"') {
                let end = r.find('"').unwrap();
                out.extend_from_slice(&r.as_bytes()[..end]);
                rest = &r[end + 1..];
            } else {
                out.push(u8::from_str_radix(&rest[..2], 16).unwrap());
                rest = &rest[2..];
            }
        }
    }

    fn s(x: &str) -> Value {
        Value::str(x)
    }
    fn t(items: Vec<Value>) -> Value {
        Value::tuple(items)
    }
    fn token(typeid: &str, id: &str) -> Value {
        let addr = t(vec![s("127.0.0.1"), Value::Int(50011)]);
        Value::object(Object::new_obj(
            Global::new("multiprocessing.managers", "Token"),
            vec![],
            Some(t(vec![s(typeid), addr, s(id)])),
        ))
    }

    #[test]
    fn appendix_b_return_none() {
        let v = t(vec![s("#RETURN"), Value::None]);
        assert_eq!(
            enc(&v, 4),
            hexq("80 04 95 0e 00 00 00 00 00 00 00 8c 07 23 52 45 54 55 52 4e 94 4e 86 94 2e")
        );
        assert_eq!(encode(&v).unwrap(), enc(&v, 4));
        // Unframed, as docs/PROTOCOL.md §3.1 notes also loads (plus the memo bytes).
        assert_eq!(
            unframed(&v, 4),
            hexq("80 04 8c 07 \"#RETURN\" 94 4e 86 94 2e")
        );
    }

    #[test]
    fn appendix_b_requests() {
        let d = Value::dict(vec![]).unwrap();
        let v = t(vec![
            Value::None,
            s("accept_connection"),
            t(vec![s("MainProcess")]),
            d,
        ]);
        assert_eq!(
            enc(&v, 4),
            hexq(
                "80 04 95 2b 00 00 00 00 00 00 00 28 4e 8c 11 \"accept_connection\" 94
                 8c 0b \"MainProcess\" 94 85 94 7d 94 74 94 2e"
            )
        );
        let d = Value::dict(vec![]).unwrap();
        let v = t(vec![
            s("7f1c829a8a00"),
            s("__setitem__"),
            t(vec![s("a"), Value::Int(1)]),
            d,
        ]);
        assert_eq!(
            enc(&v, 4),
            hexq(
                "80 04 95 2b 00 00 00 00 00 00 00 28 8c 0c \"7f1c829a8a00\" 94 8c 0b \"__setitem__\" 94
                 8c 01 \"a\" 94 4b 01 86 94 7d 94 74 94 2e"
            )
        );
    }

    #[test]
    fn error_replies() {
        let e = PyErr::key_error(s("zz")).to_value();
        let v = t(vec![s("#ERROR"), e]);
        assert_eq!(
            enc(&v, 4),
            hexq(
                "80 04 95 2d 00 00 00 00 00 00 00 8c 06 \"#ERROR\" 94 8c 08 \"builtins\" 94
                 8c 08 \"KeyError\" 94 93 94 8c 02 \"zz\" 94 85 94 52 94 86 94 2e"
            )
        );
        // Protocol 2: the GLOBAL form of §3.6 plus BINPUTs.
        assert_eq!(
            enc(&v, 2),
            hexq(
                "80 02 58 06 00 00 00 \"#ERROR\" 71 00 63 \"builtins\" 0a \"KeyError\" 0a 71 01
                 58 02 00 00 00 \"zz\" 71 02 85 71 03 52 71 04 86 71 05 2e"
            )
        );
        let empty = PyErr::with_args(
            ExcType::Other(Arc::new(Global::new("_queue", "Empty"))),
            vec![],
        );
        let v = t(vec![s("#ERROR"), empty.to_value()]);
        assert_eq!(
            enc(&v, 4),
            hexq(
                "80 04 95 22 00 00 00 00 00 00 00 8c 06 \"#ERROR\" 94 8c 06 \"_queue\" 94 8c 05 \"Empty\" 94
                 93 94 29 52 94 86 94 2e"
            )
        );
    }

    #[test]
    fn proxy_reply_token_layout() {
        let exposed = t(vec![s("__next__"), s("send"), s("throw"), s("close")]);
        let v = t(vec![
            s("#PROXY"),
            t(vec![exposed, token("Iterator", "7f1c82a1c1d0")]),
        ]);
        assert_eq!(
            enc(&v, 4),
            hexq(
                "80 04 95 89 00 00 00 00 00 00 00
                 8c 06 \"#PROXY\" 94  28 8c 08 \"__next__\" 94 8c 04 \"send\" 94 8c 05 \"throw\" 94
                 8c 05 \"close\" 94 74 94
                 8c 18 \"multiprocessing.managers\" 94 8c 05 \"Token\" 94 93 94 29 81 94
                 8c 08 \"Iterator\" 94 8c 09 \"127.0.0.1\" 94 4d 5b c3 86 94 8c 0c \"7f1c82a1c1d0\" 94 87 94 62
                 86 94 86 94 2e"
            )
        );
    }

    #[test]
    fn rebuild_proxy_layout() {
        let v = Value::object(Object::reduce(
            Value::global("multiprocessing.managers", "RebuildProxy"),
            vec![
                Value::global("multiprocessing.managers", "ListProxy"),
                token("list", "7f1c82a25580"),
                s("pickle"),
                Value::dict(vec![]).unwrap(),
            ],
        ));
        assert_eq!(
            enc(&v, 4),
            hexq(
                "80 04 95 86 00 00 00 00 00 00 00
                 8c 18 \"multiprocessing.managers\" 94 8c 0c \"RebuildProxy\" 94 93 94
                 28 68 00 8c 09 \"ListProxy\" 94 93 94
                    68 00 8c 05 \"Token\" 94 93 94 29 81 94
                    8c 04 \"list\" 94 8c 09 \"127.0.0.1\" 94 4d 5b c3 86 94 8c 0c \"7f1c82a25580\" 94 87 94 62
                    8c 06 \"pickle\" 94 7d 94 74 94
                 52 94 2e"
            )
        );
    }

    #[test]
    fn ints_match_cpython() {
        let big = |e: &str| Value::from_bigint(e.parse::<BigInt>().unwrap());
        let v = Value::list(vec![
            Value::Int(1 << 31),
            Value::Int(-(1 << 31)),
            Value::Int(-(1 << 31) - 1),
            big("9223372036854775808"),
            Value::Int(i64::MIN),
            big("18446744073709551616"),
            Value::Int(255),
            Value::Int(256),
            Value::Int(65535),
            Value::Int(65536),
            Value::Int(-1),
            Value::Int(0),
            Value::Bool(true),
            Value::None,
            Value::Float(1.5),
        ]);
        // pickle.dumps([...], 2) on CPython 3.11.
        let want: &[u8] = b"\x80\x02]q\x00(\x8a\x05\x00\x00\x00\x80\x00J\x00\x00\x00\x80\x8a\x05\xff\xff\xff\x7f\xff\x8a\t\x00\x00\x00\x00\x00\x00\x00\x80\x00\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00\x01K\xffM\x00\x01M\xff\xffJ\x00\x00\x01\x00J\xff\xff\xff\xffK\x00\x88NG?\xf8\x00\x00\x00\x00\x00\x00e.";
        assert_eq!(enc(&v, 2), want);
        // -128 and -129, 127 and 128 as LONG1 edge cases of the i64 path are
        // covered by minimal encodings of i64 values beyond i32:
        let v = Value::Int(-(1i64 << 39));
        assert_eq!(unframed(&v, 4), b"\x80\x04\x8a\x05\x00\x00\x00\x00\x80.");
        let v = Value::Int((1i64 << 39) - 1);
        assert_eq!(unframed(&v, 4), b"\x80\x04\x8a\x05\xff\xff\xff\xff\x7f.");
        // -129 - 2**32: the top byte 0xfe stays; -2**32 - 1 → ff ff ff ff fe.
        let v = Value::Int(-(1i64 << 32) - 1);
        assert_eq!(unframed(&v, 4), b"\x80\x04\x8a\x05\xff\xff\xff\xff\xfe.");
        let v = Value::Int(1i64 << 32);
        assert_eq!(unframed(&v, 4), b"\x80\x04\x8a\x05\x00\x00\x00\x00\x01.");
        // 2**1000 needs 126 bytes: LONG1; 2**2048 needs 257: LONG4.
        let v = Value::from_bigint(BigInt::from(1) << 1000usize);
        assert_eq!(&unframed(&v, 2)[..4], b"\x80\x02\x8a\x7e");
        let v = Value::from_bigint(-(BigInt::from(1) << 2048usize));
        let out = unframed(&v, 2);
        assert_eq!(&out[..7], b"\x80\x02\x8b\x01\x01\x00\x00");
        assert_eq!(out[7 + 256], 0xff);
    }

    #[test]
    fn recursive_and_shared() {
        // l = []; l.append(l)
        let l = Value::list(vec![]);
        let Value::List(inner) = &l else {
            unreachable!()
        };
        inner.write().push(l.clone());
        assert_eq!(
            enc(&l, 4),
            b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94h\x00a."
        );
        inner.write().clear();

        // d = {}; d['me'] = d
        let d = Value::dict(vec![]).unwrap();
        let Value::Dict(m) = &d else { unreachable!() };
        m.write().insert(crate::value::Key::str("me"), d.clone());
        assert_eq!(
            enc(&d, 4),
            b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x02me\x94h\x00s."
        );
        m.write().clear();

        // l = []; t = (l,); l.append(t) -- CPython's save_tuple trick.
        let l = Value::list(vec![]);
        let tup = t(vec![l.clone()]);
        let Value::List(inner) = &l else {
            unreachable!()
        };
        inner.write().push(tup.clone());
        assert_eq!(
            enc(&tup, 4),
            b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94h\x00\x85\x94a0h\x01."
        );
        assert_eq!(enc(&tup, 2), b"\x80\x02]q\x00h\x00\x85q\x01a0h\x01.");
        inner.write().clear();
        // The same with the list referenced only from the tuple.
        let tup = t(vec![Value::list(vec![])]);
        let Value::Tuple(tt) = &tup else {
            unreachable!()
        };
        let Value::List(inner) = &tt[0] else {
            unreachable!()
        };
        inner.write().push(tup.clone());
        assert_eq!(enc(&tup, 2), b"\x80\x02]q\x00h\x00\x85q\x01a0h\x01.");
        inner.write().clear();

        // a = [1]; [a, a]
        let a = Value::list(vec![Value::Int(1)]);
        let v = Value::list(vec![a.clone(), a]);
        assert_eq!(enc(&v, 3), b"\x80\x03]q\x00(]q\x01K\x01ah\x01e.");
    }

    #[test]
    fn sets_match_cpython() {
        let v = Value::set(vec![Value::Int(1), Value::Int(2)]).unwrap();
        assert_eq!(
            enc(&v, 4),
            b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01K\x02\x90."
        );
        let v = Value::frozenset(vec![Value::Int(1), Value::Int(2)]).unwrap();
        assert_eq!(
            enc(&v, 4),
            b"\x80\x04\x95\x08\x00\x00\x00\x00\x00\x00\x00(K\x01K\x02\x91\x94."
        );
        let v = Value::frozenset(vec![Value::Int(1)]).unwrap();
        assert_eq!(
            enc(&v, 2),
            b"\x80\x02cbuiltins\nfrozenset\nq\x00]q\x01K\x01a\x85q\x02Rq\x03."
        );
    }

    #[test]
    fn other_builtins_match_cpython() {
        assert_eq!(
            enc(&Value::Complex(1.0, 2.0), 4),
            b"\x80\x04\x95.\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x07complex\x94\x93\x94G?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00\x86\x94R\x94."
        );
        let sl = Value::Slice(Arc::new(Slice {
            start: Value::Int(1),
            stop: Value::None,
            step: Value::Int(2),
        }));
        assert_eq!(
            enc(&sl, 4),
            b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x05slice\x94\x93\x94K\x01NK\x02\x87\x94R\x94."
        );
        assert_eq!(
            enc(&Value::bytes(b""), 2),
            b"\x80\x02cbuiltins\nbytes\nq\x00)Rq\x01."
        );
        assert_eq!(
            enc(&Value::bytes(b""), 4),
            b"\x80\x04\x95\x04\x00\x00\x00\x00\x00\x00\x00C\x00\x94."
        );
        let ba = Value::bytearray(b"ab".to_vec());
        assert_eq!(
            enc(&ba, 2),
            b"\x80\x02cbuiltins\nbytearray\nq\x00c_codecs\nencode\nq\x01X\x02\x00\x00\x00abq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07."
        );
        assert_eq!(
            enc(&ba, 4),
            b"\x80\x04\x95#\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\tbytearray\x94\x93\x94C\x02ab\x94\x85\x94R\x94."
        );
        assert_eq!(
            enc(&ba, 5),
            b"\x80\x05\x95\x0d\x00\x00\x00\x00\x00\x00\x00\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x94."
        );
        // Nested class below protocol 4: getattr(A, 'B').
        assert_eq!(
            enc(&Value::global("__main__", "A.B"), 2),
            b"\x80\x02cbuiltins\ngetattr\nq\x00c__main__\nA\nq\x01X\x01\x00\x00\x00Bq\x02\x86q\x03Rq\x04."
        );
        // The 'latin1' string is written once and fetched afterwards.
        let v = Value::list(vec![Value::bytes(b"\xff"), Value::bytes(b"x")]);
        let out = enc(&v, 2);
        assert_eq!(out.windows(6).filter(|w| w == b"latin1").count(), 1);
        assert!(out.windows(2).any(|w| w == b"\xc3\xbf")); // U+00FF in UTF-8
    }

    #[test]
    fn str_sharing_short_by_text_long_by_identity() {
        // Whether the two items of a 2-tuple come back as one object.
        let shared = |a: Value, b: Value| {
            let bytes = encode(&Value::tuple(vec![a, b])).unwrap();
            let back = crate::decode(&bytes).unwrap();
            let Value::Tuple(t) = &back else { panic!() };
            t[0].is(&t[1])
        };
        // A shared long str is written once and decodes shared.
        let long = Value::str("a str too long to be inline");
        assert!(shared(long.clone(), long));
        // Equal long strs that are distinct objects are written twice.
        let text = "another long string";
        assert!(!shared(Value::str(text), Value::str(text)));
        // Equal short strs have no identity: they share a slot.
        assert!(shared(Value::str("short"), Value::str("short")));
        assert!(!shared(Value::str("one"), Value::str("two")));
    }

    #[test]
    fn memo_indices_past_255_use_long_forms() {
        let strs: Vec<Value> = (0..300).map(|i| s(&format!("s{i}"))).collect();
        let mut items = strs.clone();
        items.push(strs[299].clone());
        items.push(strs[3].clone());
        let v = Value::list(items);
        let out = enc(&v, 2);
        // list is slot 0, s{i} slot i+1.
        assert!(out.windows(5).any(|w| w == [LONG_BINPUT, 0x00, 0x01, 0, 0])); // slot 256
        assert!(out.ends_with(&[LONG_BINGET, 0x2c, 0x01, 0, 0, BINGET, 4, APPENDS, STOP]));
        let out = enc(&v, 4);
        assert!(out.ends_with(&[LONG_BINGET, 0x2c, 0x01, 0, 0, BINGET, 4, APPENDS, STOP]));
    }

    #[test]
    fn batches_of_1000() {
        let v = Value::list((0..2001).map(|_| Value::None).collect());
        let out = unframed(&v, 4);
        let mut want = vec![PROTO, 4, EMPTY_LIST, MEMOIZE, MARK];
        want.extend([NONE; 1000]);
        want.extend([APPENDS, MARK]);
        want.extend([NONE; 1000]);
        want.extend([APPENDS, NONE, APPEND, STOP]);
        assert_eq!(out, want);
        let d = Value::dict(
            (0..1001)
                .map(|i| (Value::Int(i % 200 + 1000 * i), Value::None))
                .collect(),
        )
        .unwrap();
        let out = unframed(&d, 4);
        assert_eq!(&out[..5], &[PROTO, 4, EMPTY_DICT, MEMOIZE, MARK]);
        // 1000 pairs, SETITEMS, then the last pair with SETITEM.
        let pair = |i: usize| {
            let mut b = unframed(&Value::Int((i % 200 + 1000 * i) as i64), 4)[2..].to_vec();
            b.pop();
            b.push(NONE);
            b
        };
        let mut want = vec![PROTO, 4, EMPTY_DICT, MEMOIZE, MARK];
        (0..1000).for_each(|i| want.extend(pair(i)));
        want.push(SETITEMS);
        want.extend(pair(1000));
        want.extend([SETITEM, STOP]);
        assert_eq!(out, want);
        let d = Value::dict(vec![(s("k"), Value::None)]).unwrap();
        assert_eq!(unframed(&d, 4), b"\x80\x04}\x94\x8c\x01k\x94Ns.");
    }

    /// Splits framed output into (frame payloads, bytes outside frames) and
    /// checks the frame headers are consistent.
    fn frames(out: &[u8]) -> Vec<(bool, usize)> {
        let mut i = 2;
        let mut parts = Vec::new();
        while i < out.len() {
            if out[i] == FRAME {
                let n = u64::from_le_bytes(out[i + 1..i + 9].try_into().unwrap()) as usize;
                parts.push((true, n));
                i += 9 + n;
            } else {
                // An unframed large payload: BINBYTES / BINUNICODE + u32 len.
                let n = u32::from_le_bytes(out[i + 1..i + 5].try_into().unwrap()) as usize;
                parts.push((false, 5 + n));
                i += 5 + n;
            }
        }
        assert_eq!(i, out.len());
        parts
    }

    #[test]
    fn framing() {
        // 100_000 ints of 2 bytes: 200 KB in four frames.
        let v = Value::list((0..100_000).map(|i| Value::Int(i % 256)).collect());
        let out = enc(&v, 4);
        let parts = frames(&out);
        assert_eq!(parts.len(), 4, "{parts:?}");
        for (framed, n) in &parts[..3] {
            assert!(
                *framed && *n >= FRAME_TARGET && *n < FRAME_TARGET + 16,
                "{parts:?}"
            );
        }
        assert_eq!(out.len(), unframed(&v, 4).len() + 4 * 9);
        // A large bytes goes outside frames, between two frames.
        let big = Value::bytes(&vec![7u8; 100_000]);
        let v = Value::list(vec![Value::Int(1), big, Value::Int(2)]);
        let out = enc(&v, 4);
        let parts = frames(&out);
        assert_eq!(parts, vec![(true, 5), (false, 100_005), (true, 5)]);
        // Framing off, and never at protocols 2 and 3.
        assert!(!unframed(&v, 4).contains(&FRAME) || unframed(&v, 4)[2] != FRAME);
        assert_eq!(unframed(&v, 4).len(), out.len() - 18);
        assert_ne!(enc(&v, 3)[2], FRAME);
        // A frame shorter than 4 bytes gets no header.
        assert_eq!(enc(&Value::None, 4), b"\x80\x04N.");
        assert_eq!(enc(&Value::Int(1), 5), b"\x80\x05K\x01.");
    }

    #[test]
    fn large_strings() {
        let text = "é".repeat(40_000); // 80_000 bytes
        let v = Value::list(vec![s(&text)]);
        let out = enc(&v, 4);
        // EMPTY_LIST MEMOIZE is too short a frame for a header.
        assert_eq!(
            &out[2..9],
            &[EMPTY_LIST, MEMOIZE, BINUNICODE, 0x80, 0x38, 0x01, 0x00]
        );
        // The frame after the payload holds MEMOIZE, APPEND, STOP: too
        // short for a header.
        assert!(out.ends_with(&[MEMOIZE, APPEND, STOP]));
        assert_eq!(out.len(), 2 + 2 + 5 + 80_000 + 3);
    }

    #[test]
    fn errors() {
        for p in [0, 1, 6, 255] {
            assert_eq!(
                encode_with(&Value::None, &EncodeOptions::protocol(p)),
                Err(EncodeError::UnsupportedProtocol(p))
            );
        }
        // Depth: max_depth lists encode, one more does not.
        let mut v = Value::list(vec![]);
        for _ in 1..5 {
            v = Value::list(vec![v]);
        }
        let mut o = EncodeOptions {
            max_depth: 5,
            ..EncodeOptions::default()
        };
        assert!(encode_with(&v, &o).is_ok());
        o.max_depth = 4;
        assert_eq!(
            encode_with(&v, &o),
            Err(EncodeError::TooDeep { max_depth: 4 })
        );
        let v = Value::list(vec![t(vec![Value::Int(1)])]);
        o.max_depth = 1;
        assert_eq!(
            encode_with(&v, &o),
            Err(EncodeError::TooDeep { max_depth: 1 })
        );

        // An object among its own constructor arguments.
        let obj = Value::object(Object::reduce(Value::global("m", "C"), vec![]));
        let Value::Object(cell) = &obj else {
            unreachable!()
        };
        cell.write().args = t(vec![Value::Int(1), obj.clone()]);
        let err = encode(&obj).unwrap_err();
        assert_eq!(
            err,
            EncodeError::RecursiveArgs {
                type_name: "m.C".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "m.C object is reachable from its own constructor arguments"
        );
        // ... also through a tuple:
        cell.write().args = t(vec![t(vec![obj.clone()])]);
        assert!(matches!(
            encode(&obj),
            Err(EncodeError::RecursiveArgs { .. })
        ));
        // ... but through a list it is fine (the list is memoized first).
        cell.write().args = t(vec![Value::list(vec![obj.clone()])]);
        let out = unframed(&obj, 4);
        // m.C, L=[] (slot 3), inner object: m.C, T=(L,) (slot 4), REDUCE
        // (slot 5); APPEND it to L; the outer T is a POP and GET 4, the outer
        // object is discarded for the inner one: POP, GET 5.
        assert_eq!(
            out,
            b"\x80\x04\x8c\x01m\x94\x8c\x01C\x94\x93\x94]\x94h\x02h\x03\x85\x94R\x94a0h\x04R0h\x05."
        );
        cell.write().args = t(vec![]);

        // Invalid globals below protocol 4.
        let g = Value::global("a\nb", "c");
        assert!(matches!(enc_err(&g, 2), EncodeError::InvalidGlobal { .. }));
        assert!(encode(&g).is_ok());

        // encode_into leaves the buffer alone on error.
        let mut buf = b"keep".to_vec();
        assert!(encode_into(&g, &mut buf, &EncodeOptions::protocol(3)).is_err());
        assert_eq!(buf, b"keep");
    }

    fn enc_err(v: &Value, proto: u8) -> EncodeError {
        encode_with(v, &EncodeOptions::protocol(proto)).unwrap_err()
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let mut v = Value::list(vec![]);
        for _ in 0..200_000 {
            v = Value::list(vec![v]);
        }
        let o = EncodeOptions {
            max_depth: usize::MAX,
            ..EncodeOptions::default()
        };
        let out = encode_with(&v, &o).unwrap();
        // 200_001 × (EMPTY_LIST, MEMOIZE), 200_000 APPENDs, STOP, in frames.
        let parts = frames(&out);
        assert!(parts.iter().all(|p| p.0));
        assert_eq!(out.len(), 2 + 200_001 * 2 + 200_000 + 1 + parts.len() * 9);
        assert!(matches!(
            encode(&v),
            Err(EncodeError::TooDeep { max_depth: 1000 })
        ));
        let mut v = t(vec![]);
        for _ in 0..100_000 {
            v = Value::object(Object::reduce(Value::global("m", "f"), vec![v]));
        }
        assert!(encode_with(&v, &o).is_ok());
    }

    #[test]
    fn objects_emit_items_and_state_in_cpython_order() {
        let mut o = Object::reduce(Value::global("collections", "OrderedDict"), vec![]);
        o.dict_items = vec![(s("a"), Value::Int(1))];
        o.list_items = vec![Value::Int(2)];
        o.state = Some(Value::None);
        let v = Value::object(o);
        assert_eq!(
            unframed(&v, 4),
            b"\x80\x04\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94K\x02a\x8c\x01a\x94K\x01sNb."
        );
        // NEWOBJ_EX, and its protocol-2 spelling.
        let o = Object {
            callable: Value::global("m", "C"),
            args: t(vec![]),
            kwargs: Some(Value::dict(vec![(s("k"), Value::Int(1))]).unwrap()),
            construct: Construct::NewObjEx,
            state: None,
            list_items: vec![],
            dict_items: vec![],
        };
        let v = Value::Object(shared(o));
        assert_eq!(
            unframed(&v, 4),
            b"\x80\x04\x8c\x01m\x94\x8c\x01C\x94\x93\x94)}\x94\x8c\x01k\x94K\x01s\x92\x94."
        );
        assert_eq!(
            unframed(&v, 2),
            b"\x80\x02ccopyreg\n__newobj_ex__\nq\x00cm\nC\nq\x01)}q\x02X\x01\x00\x00\x00kq\x03K\x01s\x87q\x04Rq\x05."
        );
    }
}
