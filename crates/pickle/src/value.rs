//! The Python value model: what a pickle decodes to and what the server stores.
//!
//! Immutable values (`int`, `str`, `bytes`, `tuple`, …) are shared with [`Arc`];
//! mutable containers (`list`, `dict`, `set`, `bytearray`, opaque objects) are
//! [`Shared`]: an `Arc<RwLock<…>>`, so that one container can appear in several
//! places of a value graph, and even inside itself, exactly as in Python.
//!
//! Cloning a [`Value`] is cheap and clones the *reference*, as assigning a
//! Python variable does. Dropping a deeply nested value never recurses deeply
//! (see [`List`] and friends): a million nested lists are freed iteratively.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use indexmap::{IndexMap, IndexSet};
use num_bigint::BigInt;
use num_traits::ToPrimitive;
use parking_lot::RwLock;

use crate::exc::PyErr;

/// A mutable, shareable container: `Arc<RwLock<T>>`.
pub type Shared<T> = Arc<RwLock<T>>;

/// Wraps `value` in a new [`Shared`] cell.
pub fn shared<T>(value: T) -> Shared<T> {
    Arc::new(RwLock::new(value))
}

/// One Python object.
///
/// ```
/// use mpmanager_pickle::Value;
/// let v = Value::list(vec![Value::Int(1), Value::str("a")]);
/// assert_eq!(v.type_name(), "list");
/// ```
#[derive(Clone, Default)]
pub enum Value {
    /// `None`.
    #[default]
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` that fits in an `i64`.
    Int(i64),
    /// An `int` outside the `i64` range. Invariant: never fits in an `i64`
    /// (use [`Value::from_bigint`] to build one).
    BigInt(Arc<BigInt>),
    /// A `float`.
    Float(f64),
    /// A `complex` (real, imaginary).
    Complex(f64, f64),
    /// A `str`, which may hold lone surrogates.
    Str(PyStr),
    /// A `bytes`.
    Bytes(Arc<[u8]>),
    /// A `bytearray`.
    ByteArray(Shared<Vec<u8>>),
    /// A `tuple`.
    Tuple(Arc<Tuple>),
    /// A `list`.
    List(Shared<List>),
    /// A `dict` (insertion-ordered).
    Dict(Shared<Dict>),
    /// A `set` (kept in insertion order).
    Set(Shared<Set>),
    /// A `frozenset` (kept in insertion order).
    FrozenSet(Arc<Set>),
    /// A `slice(start, stop, step)`.
    Slice(Arc<Slice>),
    /// A reference to a module attribute, as `GLOBAL`/`STACK_GLOBAL` name it
    /// (a class or function; never imported).
    Global(Arc<Global>),
    /// Any other object, recorded as the pickle said how to rebuild it.
    Object(Shared<Object>),
}

/// A Python `str`.
///
/// Stored as "generalized UTF-8": UTF-8 in which lone surrogate code points
/// (U+D800–U+DFFF) are encoded as three bytes, which is exactly what pickle
/// writes with its `surrogatepass` error handler. Byte order equals Python's
/// code point order, so comparisons work on the bytes.
///
/// Short texts (up to [`PyStr::INLINE_MAX`] bytes: most method names, idents
/// and keys) are stored inline, without an allocation; longer ones share one
/// reference-counted allocation between clones. An inline `str` has no
/// address, so it has no identity either: [`PyStr::ptr_eq`] (and so
/// [`Value::is`]) compares inline strs by content, as if every short str
/// were interned, and [`Value::identity`] is `None` for them.
pub struct PyStr {
    repr: StrRepr,
}

/// The two forms of a [`PyStr`], told apart by the tag byte
/// ([`TAG`]), which is the most significant byte of `heap.len`: a heap
/// length never has its top bit set, an inline tag always does.
#[repr(C)]
union StrRepr {
    /// Inline: the text at [`INLINE_AT`]`..`, zero padded; the tag byte is
    /// `INLINE | surrogates flag | length`.
    inline: [u8; 16],
    heap: HeapStr,
}

/// A heap `str`: the raw parts of an `Arc<[u8]>` whose first byte is 1 if
/// the text contains surrogates and 0 otherwise, followed by the text.
#[derive(Clone, Copy)]
#[repr(C)]
struct HeapStr {
    ptr: *const u8,
    len: usize,
}

/// Byte offset of the tag: the most significant byte of `HeapStr::len`.
const TAG: usize = std::mem::offset_of!(HeapStr, len)
    + if cfg!(target_endian = "little") {
        std::mem::size_of::<usize>() - 1
    } else {
        0
    };
/// Where inline text starts, and how much fits: the longer run of bytes on
/// either side of the tag (bytes 0..15 on 64-bit little-endian targets).
const INLINE_AT: usize = inline_region().0;
const INLINE_CAP: usize = inline_region().1;
/// (start, length) of the inline text region.
const fn inline_region() -> (usize, usize) {
    let (before, after) = (TAG, 16 - TAG - 1);
    if before >= after {
        (0, before)
    } else {
        (TAG + 1, after)
    }
}
const TAG_INLINE: u8 = 0x80;
const TAG_SURROGATES: u8 = 0x40;
const TAG_LEN: u8 = 0x1F;
const _: () = assert!(INLINE_CAP <= TAG_LEN as usize && std::mem::size_of::<StrRepr>() == 16);

// SAFETY: a PyStr is either plain bytes or an `Arc<[u8]>`, which is Send
// and Sync.
unsafe impl Send for PyStr {}
// SAFETY: as above.
unsafe impl Sync for PyStr {}

impl PyStr {
    /// The longest text (in generalized UTF-8 bytes) stored without an
    /// allocation.
    pub const INLINE_MAX: usize = INLINE_CAP;

    /// A `str` holding `s`.
    pub fn new(s: &str) -> PyStr {
        PyStr::with_flag(0, s.as_bytes())
    }

    #[inline]
    fn tag(&self) -> u8 {
        // SAFETY: every byte of the union is initialized in both forms: the
        // inline form writes all 16 bytes, and the tag is a byte of
        // `heap.len` in the heap form.
        unsafe { self.repr.inline[TAG] }
    }

    #[inline]
    fn is_inline(&self) -> bool {
        self.tag() & TAG_INLINE != 0
    }

    /// The `Arc<[u8]>` slice pointer of a heap str.
    #[inline]
    fn heap_slice(&self) -> *const [u8] {
        // SAFETY: only called on the heap form.
        let h = unsafe { self.repr.heap };
        std::ptr::slice_from_raw_parts(h.ptr, h.len)
    }

    /// Inline if short enough, else one allocation: the flag byte, then
    /// `bytes`.
    #[inline]
    fn with_flag(flag: u8, bytes: &[u8]) -> PyStr {
        if bytes.len() <= INLINE_CAP {
            let mut inline = [0u8; 16];
            inline[INLINE_AT..INLINE_AT + bytes.len()].copy_from_slice(bytes);
            inline[TAG] =
                TAG_INLINE | if flag != 0 { TAG_SURROGATES } else { 0 } | bytes.len() as u8;
            return PyStr {
                repr: StrRepr { inline },
            };
        }
        let mut data = Arc::<[u8]>::new_uninit_slice(bytes.len() + 1);
        let slots = Arc::get_mut(&mut data).expect("new Arc is unique");
        slots[0].write(flag);
        // SAFETY: `slots` has room for `bytes.len()` bytes after the flag;
        // MaybeUninit<u8> has the layout of u8; the regions do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                slots[1..].as_mut_ptr().cast::<u8>(),
                bytes.len(),
            );
        }
        // SAFETY: every byte was written above.
        PyStr::from_arc(unsafe { data.assume_init() })
    }

    /// A heap str from its `Arc` (flag byte first), which must be longer
    /// than `INLINE_CAP + 1` bytes.
    fn from_arc(data: Arc<[u8]>) -> PyStr {
        debug_assert!(data.len() > INLINE_CAP + 1);
        let len = data.len();
        let ptr = Arc::into_raw(data).cast::<u8>();
        PyStr {
            repr: StrRepr {
                heap: HeapStr { ptr, len },
            },
        }
    }

    /// Builds a `str` from generalized UTF-8 (`surrogatepass`) bytes, as
    /// found in pickles. Returns `None` if the bytes are not valid
    /// generalized UTF-8.
    #[inline]
    pub fn from_wtf8(bytes: &[u8]) -> Option<PyStr> {
        // Most manager traffic (method names, idents, keys) is short ASCII.
        if bytes.is_ascii() {
            return Some(PyStr::with_flag(0, bytes));
        }
        let surrogates = match std::str::from_utf8(bytes) {
            Ok(_) => false,
            Err(_) => {
                validate_wtf8(bytes)?;
                true
            }
        };
        Some(PyStr::with_flag(surrogates as u8, bytes))
    }

    /// Like [`PyStr::from_wtf8`] for the first `n` bytes of `chunk`, where
    /// `n <= INLINE_MAX` (the rest of `chunk` is ignored): short ASCII text
    /// is checked and stored a whole word at a time.
    #[inline]
    pub(crate) fn from_wtf8_chunk(chunk: &[u8; 16], n: usize) -> Option<PyStr> {
        debug_assert!(n <= INLINE_CAP);
        if INLINE_AT == 0 && TAG == 15 {
            // `n <= 15`: the shift is in range, and byte 15 ends up zero.
            let w = u128::from_le_bytes(*chunk) & ((1u128 << (8 * n)) - 1);
            if w & u128::from_ne_bytes([0x80; 16]) == 0 {
                let mut inline = w.to_le_bytes();
                inline[TAG] = TAG_INLINE | n as u8;
                return Some(PyStr {
                    repr: StrRepr { inline },
                });
            }
        }
        PyStr::from_wtf8(&chunk[..n])
    }

    /// Builds a `str` from Unicode code points (surrogates allowed). Returns
    /// `None` for a value above U+10FFFF.
    pub fn from_code_points(cps: impl IntoIterator<Item = u32>) -> Option<PyStr> {
        let mut v = Vec::new();
        let mut surrogates = false;
        for cp in cps {
            if (0xD800..=0xDFFF).contains(&cp) {
                surrogates = true;
                v.push(0xE0 | (cp >> 12) as u8);
                v.push(0x80 | ((cp >> 6) & 0x3F) as u8);
                v.push(0x80 | (cp & 0x3F) as u8);
            } else {
                let c = char::from_u32(cp)?;
                let mut buf = [0u8; 4];
                v.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        Some(PyStr::with_flag(surrogates as u8, &v))
    }

    /// The text as a Rust `&str`, unless it holds lone surrogates.
    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        if self.has_surrogates() {
            None
        } else {
            // SAFETY: the surrogates flag is clear only when the text was
            // checked (or built) as valid UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(self.as_wtf8()) })
        }
    }

    /// The text with lone surrogates replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        match self.as_str() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(
                self.code_points()
                    .map(|c| char::from_u32(c).unwrap_or('\u{FFFD}'))
                    .collect(),
            ),
        }
    }

    /// The generalized UTF-8 bytes (what pickle stores).
    #[inline]
    pub fn as_wtf8(&self) -> &[u8] {
        let tag = self.tag();
        if tag & TAG_INLINE != 0 {
            let n = (tag & TAG_LEN) as usize;
            // SAFETY: the inline form; `n <= INLINE_CAP`.
            unsafe { self.repr.inline.get_unchecked(INLINE_AT..INLINE_AT + n) }
        } else {
            // SAFETY: the heap form: a live `Arc<[u8]>` of at least one byte
            // (the flag), which this PyStr keeps alive.
            unsafe {
                let h = self.repr.heap;
                std::slice::from_raw_parts(h.ptr.add(1), h.len - 1)
            }
        }
    }

    /// True if the text contains lone surrogates.
    #[inline]
    pub fn has_surrogates(&self) -> bool {
        let tag = self.tag();
        if tag & TAG_INLINE != 0 {
            tag & TAG_SURROGATES != 0
        } else {
            // SAFETY: the heap form (see `as_wtf8`); byte 0 is the flag.
            unsafe { *self.repr.heap.ptr != 0 }
        }
    }

    /// The code points, in order.
    pub fn code_points(&self) -> CodePoints<'_> {
        CodePoints {
            bytes: self.as_wtf8(),
            pos: 0,
        }
    }

    /// `len(s)`: the number of code points.
    pub fn char_len(&self) -> usize {
        let b = self.as_wtf8();
        if !self.has_surrogates() && b.is_ascii() {
            return b.len();
        }
        // Every code point has exactly one byte that is not a continuation byte.
        b.iter().filter(|&&b| (b & 0xC0) != 0x80).count()
    }

    /// True if both are the same Python object: for a heap str the same
    /// allocation; an inline str (at most [`PyStr::INLINE_MAX`] bytes) has
    /// no address, so two of them are the same object if their texts are
    /// equal (as if short strs were interned).
    #[inline]
    pub fn ptr_eq(&self, other: &PyStr) -> bool {
        match (self.is_inline(), other.is_inline()) {
            // SAFETY: both inline: all 16 bytes are initialized.
            (true, true) => unsafe { self.repr.inline == other.repr.inline },
            // SAFETY: both heap.
            (false, false) => unsafe { self.repr.heap.ptr == other.repr.heap.ptr },
            _ => false,
        }
    }

    /// The address of a heap str's allocation; `None` for an inline str,
    /// which has no address.
    #[inline]
    pub(crate) fn heap_addr(&self) -> Option<usize> {
        if self.is_inline() {
            None
        } else {
            // SAFETY: the heap form.
            Some(unsafe { self.repr.heap.ptr } as usize)
        }
    }

    /// An inline str's whole representation (text, padding and tag), which
    /// identifies its text; `None` for a heap str.
    #[inline]
    pub(crate) fn inline_key(&self) -> Option<u128> {
        if self.is_inline() {
            // SAFETY: the inline form: all 16 bytes are initialized.
            Some(u128::from_ne_bytes(unsafe { self.repr.inline }))
        } else {
            None
        }
    }
}

impl Clone for PyStr {
    #[inline]
    fn clone(&self) -> PyStr {
        if !self.is_inline() {
            // SAFETY: the heap form holds one strong count of this Arc.
            unsafe { Arc::increment_strong_count(self.heap_slice()) };
        }
        // SAFETY: a bitwise copy of the inline form, or of the heap form
        // whose count was just incremented for it.
        PyStr {
            repr: unsafe { std::ptr::read(&self.repr) },
        }
    }
}

impl Drop for PyStr {
    #[inline]
    fn drop(&mut self) {
        if !self.is_inline() {
            // SAFETY: the heap form holds one strong count of this Arc.
            unsafe { Arc::decrement_strong_count(self.heap_slice()) };
        }
    }
}

impl PartialEq for PyStr {
    #[inline]
    fn eq(&self, other: &PyStr) -> bool {
        // Equal texts have the same form (inline exactly when short), and
        // equal inline texts have equal representations.
        if self.is_inline() {
            self.ptr_eq(other)
        } else {
            self.ptr_eq(other) || (!other.is_inline() && self.as_wtf8() == other.as_wtf8())
        }
    }
}
impl Eq for PyStr {}
impl PartialOrd for PyStr {
    fn partial_cmp(&self, other: &PyStr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PyStr {
    fn cmp(&self, other: &PyStr) -> std::cmp::Ordering {
        self.as_wtf8().cmp(other.as_wtf8())
    }
}
impl Hash for PyStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_wtf8().hash(state)
    }
}
impl fmt::Debug for PyStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string_lossy(), f)
    }
}
impl From<&str> for PyStr {
    fn from(s: &str) -> PyStr {
        PyStr::new(s)
    }
}
impl From<String> for PyStr {
    fn from(s: String) -> PyStr {
        PyStr::new(&s)
    }
}

/// Iterator over the code points of a [`PyStr`].
pub struct CodePoints<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Iterator for CodePoints<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let b = self.bytes;
        let i = self.pos;
        let b0 = *b.get(i)? as u32;
        let (cp, n) = if b0 < 0x80 {
            (b0, 1)
        } else if b0 < 0xE0 {
            (((b0 & 0x1F) << 6) | (b[i + 1] as u32 & 0x3F), 2)
        } else if b0 < 0xF0 {
            (
                ((b0 & 0x0F) << 12) | ((b[i + 1] as u32 & 0x3F) << 6) | (b[i + 2] as u32 & 0x3F),
                3,
            )
        } else {
            (
                ((b0 & 0x07) << 18)
                    | ((b[i + 1] as u32 & 0x3F) << 12)
                    | ((b[i + 2] as u32 & 0x3F) << 6)
                    | (b[i + 3] as u32 & 0x3F),
                4,
            )
        };
        self.pos += n;
        Some(cp)
    }
}

/// Checks generalized UTF-8: UTF-8 where encoded surrogates are allowed.
fn validate_wtf8(b: &[u8]) -> Option<()> {
    let mut i = 0;
    while i < b.len() {
        let b0 = b[i];
        let cont = |j: usize| b.get(j).is_some_and(|&x| (x & 0xC0) == 0x80);
        if b0 < 0x80 {
            i += 1;
        } else if (0xC2..0xE0).contains(&b0) {
            if !cont(i + 1) {
                return None;
            }
            i += 2;
        } else if (0xE0..0xF0).contains(&b0) {
            if !cont(i + 1) || !cont(i + 2) {
                return None;
            }
            // Reject overlong forms (E0 80..9F xx).
            if b0 == 0xE0 && b[i + 1] < 0xA0 {
                return None;
            }
            i += 3;
        } else if (0xF0..0xF5).contains(&b0) {
            if !cont(i + 1) || !cont(i + 2) || !cont(i + 3) {
                return None;
            }
            if (b0 == 0xF0 && b[i + 1] < 0x90) || (b0 == 0xF4 && b[i + 1] >= 0x90) {
                return None;
            }
            i += 4;
        } else {
            return None;
        }
    }
    Some(())
}

macro_rules! container {
    ($(#[$m:meta])* $name:ident, $target:ty) => {
        $(#[$m])*
        #[derive(Clone, Default)]
        pub struct $name {
            /// The contents.
            pub items: $target,
        }
        impl Deref for $name {
            type Target = $target;
            fn deref(&self) -> &$target {
                &self.items
            }
        }
        impl DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $target {
                &mut self.items
            }
        }
        impl From<$target> for $name {
            fn from(items: $target) -> $name {
                $name { items }
            }
        }
        impl Drop for $name {
            fn drop(&mut self) {
                let items = std::mem::take(&mut self.items);
                drop_iteratively(items);
            }
        }
    };
}

/// Hasher for [`Key`]s: they carry their Python hash already; Fx mixes it.
pub type KeyHasher = BuildHasherDefault<rustc_hash::FxHasher>;

/// The contents of a `tuple`: its items, in the same allocation as the
/// `Arc<Tuple>` that holds them (a tuple is one allocation).
///
/// `Tuple` is unsized (like `[Value]`); build one with [`Value::tuple`],
/// or [`Tuple::new`]. It dereferences to
/// [`TupleItems`] and on to `[Value]`, so `t.len()`, `t[0]`, `t.iter()`,
/// `t.as_slice()` and `&t[..]` work as on a `Vec<Value>`.
#[repr(transparent)]
pub struct Tuple {
    /// The contents.
    pub items: TupleItems,
}

/// The items of a [`Tuple`]: a `[Value]` that also answers the `Vec`
/// methods code used when they were one (`items.clone()` gives a
/// `Vec<Value>`, `items.as_slice()`).
#[repr(transparent)]
pub struct TupleItems([Value]);

impl Tuple {
    /// A tuple of `items` (one allocation).
    pub fn new(items: Vec<Value>) -> Arc<Tuple> {
        Tuple::from_arc_slice(items.into())
    }

    /// A tuple of the items of an exactly sized iterator (one allocation,
    /// no intermediate vector).
    pub fn from_exact_iter<I>(items: I) -> Arc<Tuple>
    where
        I: IntoIterator<Item = Value>,
        I::IntoIter: ExactSizeIterator,
    {
        Tuple::from_arc_slice(items.into_iter().collect())
    }

    fn from_arc_slice(items: Arc<[Value]>) -> Arc<Tuple> {
        // SAFETY: `Tuple` and `TupleItems` are `repr(transparent)` over
        // `[Value]`, so `ArcInner<[Value]>` and `ArcInner<Tuple>` have the
        // same layout and the pointer the same metadata (the length).
        unsafe { Arc::from_raw(Arc::into_raw(items) as *const Tuple) }
    }

    /// The empty tuple.
    pub fn empty() -> Arc<Tuple> {
        Tuple::new(Vec::new())
    }
}

impl Deref for Tuple {
    type Target = TupleItems;
    #[inline]
    fn deref(&self) -> &TupleItems {
        &self.items
    }
}
impl DerefMut for Tuple {
    #[inline]
    fn deref_mut(&mut self) -> &mut TupleItems {
        &mut self.items
    }
}
impl Deref for TupleItems {
    type Target = [Value];
    #[inline]
    fn deref(&self) -> &[Value] {
        &self.0
    }
}
impl DerefMut for TupleItems {
    #[inline]
    fn deref_mut(&mut self) -> &mut [Value] {
        &mut self.0
    }
}
impl<'a> IntoIterator for &'a TupleItems {
    type Item = &'a Value;
    type IntoIter = std::slice::Iter<'a, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
impl<'a> IntoIterator for &'a Tuple {
    type Item = &'a Value;
    type IntoIter = std::slice::Iter<'a, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.0.iter()
    }
}

impl TupleItems {
    /// The items as a new vector (what `items.clone()` gave when `items`
    /// was a `Vec<Value>`).
    #[allow(clippy::should_implement_trait)]
    pub fn clone(&self) -> Vec<Value> {
        self.0.to_vec()
    }

    /// The items as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[Value] {
        &self.0
    }
}

impl Drop for Tuple {
    fn drop(&mut self) {
        drop_iteratively(&mut self.items.0);
    }
}
container!(
    /// The contents of a `list`.
    List, Vec<Value>
);
container!(
    /// The contents of a `dict`: insertion-ordered, keyed by Python equality.
    Dict, IndexMap<Key, Value, KeyHasher>
);
container!(
    /// The contents of a `set` or `frozenset`, in insertion order.
    Set, IndexSet<Key, KeyHasher>
);

/// Things whose drop may hold further values.
trait IntoDropItems: Sized {
    /// True if some item is a container that this drop would free (the only
    /// case where a plain drop could recurse).
    fn has_nested(&self) -> bool;
    /// Moves the items that are containers about to be freed into `out`,
    /// dropping the rest (a shallow drop each).
    fn take_nested(self, out: &mut Vec<Value>);
}

impl IntoDropItems for Vec<Value> {
    fn has_nested(&self) -> bool {
        self.iter().any(Value::frees_container_on_drop)
    }
    fn take_nested(self, out: &mut Vec<Value>) {
        out.extend(self.into_iter().filter(Value::frees_container_on_drop));
    }
}
impl IntoDropItems for &mut [Value] {
    fn has_nested(&self) -> bool {
        self.iter().any(Value::frees_container_on_drop)
    }
    fn take_nested(self, out: &mut Vec<Value>) {
        // The rest drop in place, after the container's `Drop::drop`.
        for v in self {
            if v.frees_container_on_drop() {
                out.push(std::mem::take(v));
            }
        }
    }
}
impl IntoDropItems for IndexMap<Key, Value, KeyHasher> {
    fn has_nested(&self) -> bool {
        self.iter()
            .any(|(k, v)| k.value.frees_container_on_drop() || v.frees_container_on_drop())
    }
    fn take_nested(self, out: &mut Vec<Value>) {
        for (k, v) in self {
            for x in [k.into_value(), v] {
                if x.frees_container_on_drop() {
                    out.push(x);
                }
            }
        }
    }
}
impl IntoDropItems for IndexSet<Key, KeyHasher> {
    fn has_nested(&self) -> bool {
        self.iter().any(|k| k.value.frees_container_on_drop())
    }
    fn take_nested(self, out: &mut Vec<Value>) {
        out.extend(
            self.into_iter()
                .map(Key::into_value)
                .filter(Value::frees_container_on_drop),
        );
    }
}

thread_local! {
    static DROPPING: Cell<bool> = const { Cell::new(false) };
    static DROP_QUEUE: RefCell<Vec<Value>> = const { RefCell::new(Vec::new()) };
}

/// Drops the contents of a container without recursing: nested containers
/// that this drop frees are pushed onto a thread-local queue that the
/// outermost drop drains. Containers holding only scalars, strings or
/// still-shared containers drop directly, without touching the queue.
fn drop_iteratively<T: IntoDropItems>(items: T) {
    if !items.has_nested() {
        return; // `items` drops here, one level deep.
    }
    let nested = DROPPING.with(|d| d.get());
    if nested {
        DROP_QUEUE.with(|q| items.take_nested(&mut q.borrow_mut()));
        return;
    }
    DROPPING.with(|d| d.set(true));
    DROP_QUEUE.with(|q| items.take_nested(&mut q.borrow_mut()));
    loop {
        let next = DROP_QUEUE.with(|q| q.borrow_mut().pop());
        match next {
            Some(v) => drop(v),
            None => break,
        }
    }
    DROPPING.with(|d| d.set(false));
}

/// A `slice(start, stop, step)`; each part is usually `None` or an int.
#[derive(Clone)]
pub struct Slice {
    /// `start`.
    pub start: Value,
    /// `stop`.
    pub stop: Value,
    /// `step`.
    pub step: Value,
}

/// A module attribute named by a pickle (`GLOBAL`/`STACK_GLOBAL`), e.g.
/// `datetime.datetime` or `multiprocessing.managers.Token`.
///
/// Names from Python 2 pickles (`__builtin__`, `copy_reg`, …) are mapped to
/// their Python 3 names when decoding, as CPython's `fix_imports` does.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Global {
    /// The module, e.g. `datetime`.
    pub module: Arc<str>,
    /// The qualified name inside the module, e.g. `datetime` or `Outer.Inner`.
    pub name: Arc<str>,
}

impl Global {
    /// A global `module.name`.
    pub fn new(module: &str, name: &str) -> Global {
        Global {
            module: module.into(),
            name: name.into(),
        }
    }

    /// True if this is `module.name`.
    pub fn is(&self, module: &str, name: &str) -> bool {
        &*self.module == module && &*self.name == name
    }
}

impl fmt::Debug for Global {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// How an opaque [`Object`] is constructed when unpickled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Construct {
    /// `callable(*args)` (`REDUCE`, and protocol 0/1 `INST`/`OBJ`).
    Reduce,
    /// `cls.__new__(cls, *args)` (`NEWOBJ`).
    NewObj,
    /// `cls.__new__(cls, *args, **kwargs)` (`NEWOBJ_EX`).
    NewObjEx,
}

/// An object the value model does not know, kept exactly as the pickle
/// described it so that it can be written back unchanged. Nothing is ever
/// imported or called.
///
/// When unpickled, Python does: `obj = construct(callable, args, kwargs)`,
/// then `obj.extend(list_items)` (or `append` each), then
/// `obj[k] = v` for each of `dict_items`, then `obj.__setstate__(state)`
/// (or a `__dict__` update) if `state` is set.
#[derive(Clone)]
pub struct Object {
    /// What is called: usually a [`Value::Global`] (a class or function).
    pub callable: Value,
    /// The positional arguments, a [`Value::Tuple`].
    pub args: Value,
    /// Keyword arguments (`NEWOBJ_EX` only): a [`Value::Dict`].
    pub kwargs: Option<Value>,
    /// The kind of construction.
    pub construct: Construct,
    /// The `BUILD` state, if any.
    pub state: Option<Value>,
    /// Items added with `APPEND`/`APPENDS`.
    pub list_items: Vec<Value>,
    /// Items set with `SETITEM`/`SETITEMS`.
    pub dict_items: Vec<(Value, Value)>,
}

impl Object {
    /// An object built by calling `callable(*args)`.
    pub fn reduce(callable: Value, args: Vec<Value>) -> Object {
        Object {
            callable,
            args: Value::tuple(args),
            kwargs: None,
            construct: Construct::Reduce,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        }
    }

    /// An object built by `cls.__new__(cls, *args)`, then given `state`.
    pub fn new_obj(cls: Global, args: Vec<Value>, state: Option<Value>) -> Object {
        Object {
            callable: Value::Global(Arc::new(cls)),
            args: Value::tuple(args),
            kwargs: None,
            construct: Construct::NewObj,
            state,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        }
    }

    /// The class or function this object is built by, if it is a global.
    pub fn global(&self) -> Option<&Global> {
        match &self.callable {
            Value::Global(g) => Some(g),
            _ => None,
        }
    }

    /// If this object is built as `cls.__new__(cls, *args)` — by `NEWOBJ`,
    /// or by the protocol 0/1 form `copyreg._reconstructor(cls, object,
    /// None)` — its class and `args`.
    ///
    /// ```
    /// use mpmanager_pickle::{Global, Object, Value};
    /// let modern = Object::new_obj(Global::new("m", "C"), vec![], None);
    /// assert!(modern.new_of().unwrap().0.is("m", "C"));
    /// let old = Object::reduce(
    ///     Value::global("copyreg", "_reconstructor"),
    ///     vec![Value::global("m", "C"), Value::global("builtins", "object"), Value::None],
    /// );
    /// assert!(old.new_of().unwrap().0.is("m", "C"));
    /// ```
    pub fn new_of(&self) -> Option<(&Global, &[Value])> {
        match self.construct {
            Construct::NewObj => Some((self.global()?, self.args_slice())),
            Construct::Reduce if self.global()?.is("copyreg", "_reconstructor") => {
                match self.args_slice() {
                    [Value::Global(cls), Value::Global(base), Value::None]
                        if base.is("builtins", "object") =>
                    {
                        Some((cls, &[]))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The positional arguments as a slice (empty if `args` is not a tuple).
    pub fn args_slice(&self) -> &[Value] {
        match &self.args {
            Value::Tuple(t) => t,
            _ => &[],
        }
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        let mut items = std::mem::take(&mut self.list_items);
        for (k, v) in std::mem::take(&mut self.dict_items) {
            items.push(k);
            items.push(v);
        }
        items.push(std::mem::replace(&mut self.callable, Value::None));
        items.push(std::mem::replace(&mut self.args, Value::None));
        if let Some(k) = self.kwargs.take() {
            items.push(k);
        }
        if let Some(s) = self.state.take() {
            items.push(s);
        }
        drop_iteratively(items);
    }
}

/// A hashable value used as a `dict` key or `set` member.
///
/// Built with [`Key::new`], which fails with `TypeError: unhashable type`
/// for lists, dicts, sets and bytearrays (also inside tuples), as Python does.
/// Equality and hashing follow Python: `Key(1) == Key(1.0) == Key(True)`.
#[derive(Clone)]
pub struct Key {
    hash: i64,
    value: Value,
}

impl Key {
    /// Makes `value` a key, computing its Python-consistent hash.
    ///
    /// ```
    /// use mpmanager_pickle::{Key, Value};
    /// assert!(Key::new(Value::Int(1)).unwrap() == Key::new(Value::Float(1.0)).unwrap());
    /// assert!(Key::new(Value::list(vec![])).is_err());
    /// ```
    pub fn new(value: Value) -> Result<Key, PyErr> {
        let hash = crate::hash::py_hash(&value)?;
        Ok(Key { hash, value })
    }

    /// A key for a `str` (always hashable).
    pub fn str(s: &str) -> Key {
        Key::new(Value::str(s)).expect("str is hashable")
    }

    /// The value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The value, consuming the key.
    pub fn into_value(self) -> Value {
        // Key has no Drop impl, so the field can be moved out.
        self.value
    }

    /// The hash this key was filed under.
    pub fn hash_value(&self) -> i64 {
        self.hash
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash && crate::hash::key_eq(&self.value, &other.value)
    }
}
impl Eq for Key {}
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_i64(self.hash)
    }
}
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.value, f)
    }
}

impl Value {
    /// A `str`.
    pub fn str(s: &str) -> Value {
        Value::Str(PyStr::new(s))
    }

    /// A `bytes`.
    pub fn bytes(b: &[u8]) -> Value {
        Value::Bytes(b.into())
    }

    /// A `tuple`.
    pub fn tuple(items: Vec<Value>) -> Value {
        Value::Tuple(Tuple::new(items))
    }

    /// A new `list`.
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(shared(List { items }))
    }

    /// A new `bytearray`.
    pub fn bytearray(b: Vec<u8>) -> Value {
        Value::ByteArray(shared(b))
    }

    /// A new `dict` from key/value pairs; a later duplicate key overwrites
    /// an earlier one's value, as in Python.
    pub fn dict(pairs: Vec<(Value, Value)>) -> Result<Value, PyErr> {
        let mut d = Dict::default();
        for (k, v) in pairs {
            d.insert(Key::new(k)?, v);
        }
        Ok(Value::Dict(shared(d)))
    }

    /// A new `set`.
    pub fn set(items: Vec<Value>) -> Result<Value, PyErr> {
        let mut s = Set::default();
        for v in items {
            s.insert(Key::new(v)?);
        }
        Ok(Value::Set(shared(s)))
    }

    /// A `frozenset`.
    pub fn frozenset(items: Vec<Value>) -> Result<Value, PyErr> {
        let mut s = Set::default();
        for v in items {
            s.insert(Key::new(v)?);
        }
        Ok(Value::FrozenSet(Arc::new(s)))
    }

    /// A global reference `module.name`.
    pub fn global(module: &str, name: &str) -> Value {
        Value::Global(Arc::new(Global::new(module, name)))
    }

    /// A new opaque object.
    pub fn object(o: Object) -> Value {
        Value::Object(shared(o))
    }

    /// An `int` from a big integer, normalized to [`Value::Int`] when it fits.
    pub fn from_bigint(b: BigInt) -> Value {
        match b.to_i64() {
            Some(i) => Value::Int(i),
            None => Value::BigInt(Arc::new(b)),
        }
    }

    /// The integer value as a `BigInt` (for `bool`, `Int` and `BigInt`).
    pub fn to_bigint(&self) -> Option<BigInt> {
        match self {
            Value::Bool(b) => Some(BigInt::from(*b as i64)),
            Value::Int(i) => Some(BigInt::from(*i)),
            Value::BigInt(b) => Some((**b).clone()),
            _ => None,
        }
    }

    /// The Python type name, as `type(x).__name__` gives it (`'int'`,
    /// `'NoneType'`, …); for opaque objects the name of their class.
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "NoneType".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Complex(..) => "complex".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::ByteArray(_) => "bytearray".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::List(_) => "list".into(),
            Value::Dict(_) => "dict".into(),
            Value::Set(_) => "set".into(),
            Value::FrozenSet(_) => "frozenset".into(),
            Value::Slice(_) => "slice".into(),
            Value::Global(_) => "type".into(),
            Value::Object(o) => match o.read_recursive().global() {
                Some(g) => g.name.rsplit('.').next().unwrap_or(&g.name).to_string(),
                None => "object".into(),
            },
        }
    }

    /// The `str` contents, if this is a `str` without lone surrogates.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => s.as_str(),
            _ => None,
        }
    }

    /// The integer, if this is an `int` (or `bool`) that fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// True if both are the same Python object: the same allocation for
    /// containers and strings, the same value for small scalars.
    ///
    /// A NaN float (or a complex with a NaN part) is never the same object
    /// as another NaN, whatever their bits: floats have no identity in the
    /// model, and every NaN a client sends is a fresh object, so a NaN
    /// never finds itself in a container (see [`crate::hash`]).
    ///
    /// ```
    /// use mpmanager_pickle::Value;
    /// assert!(Value::Float(1.5).is(&Value::Float(1.5)));
    /// assert!(!Value::Float(f64::NAN).is(&Value::Float(f64::NAN)));
    /// ```
    pub fn is(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::None, Value::None) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::BigInt(a), Value::BigInt(b)) => Arc::ptr_eq(a, b),
            (Value::Float(a), Value::Float(b)) => !a.is_nan() && a.to_bits() == b.to_bits(),
            (Value::Complex(a, b), Value::Complex(c, d)) => {
                !a.is_nan()
                    && !b.is_nan()
                    && a.to_bits() == c.to_bits()
                    && b.to_bits() == d.to_bits()
            }
            (Value::Str(a), Value::Str(b)) => a.ptr_eq(b),
            (Value::Bytes(a), Value::Bytes(b)) => Arc::ptr_eq(a, b),
            (Value::ByteArray(a), Value::ByteArray(b)) => Arc::ptr_eq(a, b),
            (Value::Tuple(a), Value::Tuple(b)) => Arc::ptr_eq(a, b),
            (Value::List(a), Value::List(b)) => Arc::ptr_eq(a, b),
            (Value::Dict(a), Value::Dict(b)) => Arc::ptr_eq(a, b),
            (Value::Set(a), Value::Set(b)) => Arc::ptr_eq(a, b),
            (Value::FrozenSet(a), Value::FrozenSet(b)) => Arc::ptr_eq(a, b),
            (Value::Slice(a), Value::Slice(b)) => Arc::ptr_eq(a, b),
            (Value::Global(a), Value::Global(b)) => Arc::ptr_eq(a, b) || a == b,
            (Value::Object(a), Value::Object(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// An address that identifies a shared (heap) value, used to find shared
    /// and recursive references; `None` for scalars.
    pub fn identity(&self) -> Option<usize> {
        Some(match self {
            Value::BigInt(a) => Arc::as_ptr(a) as *const u8 as usize,
            Value::Str(s) => return s.heap_addr(),
            Value::Bytes(a) => a.as_ptr() as usize,
            Value::ByteArray(a) => Arc::as_ptr(a) as *const u8 as usize,
            Value::Tuple(a) => Arc::as_ptr(a) as *const u8 as usize,
            Value::List(a) => Arc::as_ptr(a) as *const u8 as usize,
            Value::Dict(a) => Arc::as_ptr(a) as *const u8 as usize,
            Value::Set(a) => Arc::as_ptr(a) as *const u8 as usize,
            Value::FrozenSet(a) => Arc::as_ptr(a) as *const u8 as usize,
            Value::Slice(a) => Arc::as_ptr(a) as *const u8 as usize,
            Value::Global(a) => Arc::as_ptr(a) as *const u8 as usize,
            Value::Object(a) => Arc::as_ptr(a) as *const u8 as usize,
            _ => return None,
        })
    }

    /// True for values that hold other values: tuple, list, dict, set,
    /// frozenset, slice and opaque objects (what a graph walk follows).
    pub fn holds_values(&self) -> bool {
        matches!(
            self,
            Value::Tuple(_)
                | Value::List(_)
                | Value::Dict(_)
                | Value::Set(_)
                | Value::FrozenSet(_)
                | Value::Slice(_)
                | Value::Object(_)
        )
    }

    /// The values this one holds, in order (dict: key, value, key, …;
    /// object: callable, args, kwargs, state, list items, dict items),
    /// copied out so that no lock is held while the caller uses them.
    /// Empty for values that hold nothing.
    ///
    /// ```
    /// use mpmanager_pickle::Value;
    /// let v = Value::dict(vec![(Value::str("k"), Value::Int(1))]).unwrap();
    /// assert_eq!(v.children().len(), 2);
    /// assert!(Value::Int(1).children().is_empty());
    /// ```
    pub fn children(&self) -> Vec<Value> {
        match self {
            Value::Tuple(t) => t.iter().cloned().collect(),
            Value::List(l) => l.read_recursive().iter().cloned().collect(),
            Value::Dict(d) => d
                .read_recursive()
                .iter()
                .flat_map(|(k, v)| [k.value().clone(), v.clone()])
                .collect(),
            Value::Set(s) => s
                .read_recursive()
                .iter()
                .map(|k| k.value().clone())
                .collect(),
            Value::FrozenSet(s) => s.iter().map(|k| k.value().clone()).collect(),
            Value::Slice(s) => vec![s.start.clone(), s.stop.clone(), s.step.clone()],
            Value::Object(o) => {
                let o = o.read_recursive();
                let mut all = vec![o.callable.clone(), o.args.clone()];
                all.extend(o.kwargs.iter().cloned());
                all.extend(o.state.iter().cloned());
                all.extend(o.list_items.iter().cloned());
                for (k, x) in &o.dict_items {
                    all.push(k.clone());
                    all.push(x.clone());
                }
                all
            }
            _ => Vec::new(),
        }
    }

    /// How many references share this value's heap allocation (its
    /// `Arc` strong count); `None` for values that have none of their own
    /// (scalars, and `str`s, whose short form is stored inline).
    pub fn strong_count(&self) -> Option<usize> {
        Some(match self {
            Value::BigInt(a) => Arc::strong_count(a),
            Value::Bytes(a) => Arc::strong_count(a),
            Value::ByteArray(a) => Arc::strong_count(a),
            Value::Tuple(a) => Arc::strong_count(a),
            Value::List(a) => Arc::strong_count(a),
            Value::Dict(a) => Arc::strong_count(a),
            Value::Set(a) => Arc::strong_count(a),
            Value::FrozenSet(a) => Arc::strong_count(a),
            Value::Slice(a) => Arc::strong_count(a),
            Value::Global(a) => Arc::strong_count(a),
            Value::Object(a) => Arc::strong_count(a),
            _ => return None,
        })
    }

    /// True if dropping this value frees a container (the last reference
    /// to something that holds other values), so the drop may recurse.
    fn frees_container_on_drop(&self) -> bool {
        self.holds_values() && self.strong_count() == Some(1)
    }
}

impl fmt::Debug for Value {
    /// Formats as Python's `repr` (see [`crate::repr`](mod@crate::repr)).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::repr::repr(self))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Value {
        Value::Int(i as i64)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::str(s)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::str(&s)
    }
}
impl From<BigInt> for Value {
    fn from(b: BigInt) -> Value {
        Value::from_bigint(b)
    }
}
impl From<Vec<Value>> for Value {
    /// A `list`.
    fn from(v: Vec<Value>) -> Value {
        Value::list(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeply_nested_lists_drop_without_stack_overflow() {
        let mut v = Value::list(vec![]);
        for _ in 0..1_000_000 {
            v = Value::list(vec![v]);
        }
        drop(v);
        let mut t = Value::tuple(vec![]);
        for _ in 0..1_000_000 {
            t = Value::tuple(vec![t, Value::Int(1)]);
        }
        drop(t);
    }

    #[test]
    fn pystr_surrogates_round_trip() {
        let s = PyStr::from_code_points([0x61, 0xDC80, 0x1F600]).unwrap();
        assert!(s.has_surrogates());
        assert_eq!(s.as_str(), None);
        assert_eq!(
            s.code_points().collect::<Vec<_>>(),
            vec![0x61, 0xDC80, 0x1F600]
        );
        assert_eq!(s.char_len(), 3);
        let again = PyStr::from_wtf8(s.as_wtf8()).unwrap();
        assert!(again == s);
        assert!(PyStr::from_wtf8(b"\xff").is_none());
        assert!(PyStr::from_wtf8(b"\xe0\x80\x80").is_none());
        assert_eq!(PyStr::new("h\u{e9}llo").char_len(), 5);
    }

    #[test]
    fn pystr_inline_and_heap_forms() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PyStr>();
        assert_eq!(std::mem::size_of::<PyStr>(), 16);
        for n in [
            0,
            1,
            PyStr::INLINE_MAX - 1,
            PyStr::INLINE_MAX,
            PyStr::INLINE_MAX + 1,
            100,
        ] {
            let text = "x".repeat(n);
            let s = PyStr::new(&text);
            assert_eq!(s.as_str(), Some(text.as_str()));
            assert_eq!(s.as_wtf8(), text.as_bytes());
            assert_eq!(s.char_len(), n);
            assert!(!s.has_surrogates());
            let c = s.clone();
            assert!(c == s && c.ptr_eq(&s));
            let v = Value::Str(s.clone());
            assert!(v.is(&Value::Str(c)));
            // Equal texts: the same object only if inline (no address).
            let other = PyStr::new(&text);
            assert!(other == s);
            assert_eq!(other.ptr_eq(&s), n <= PyStr::INLINE_MAX);
            assert_eq!(v.identity().is_some(), n > PyStr::INLINE_MAX);
            assert!(PyStr::new(&format!("{text}y")) != s);
        }
        // Surrogates, inline and on the heap.
        for n in [1, 20] {
            let cps: Vec<u32> = std::iter::repeat_n(0xDC80, n).collect();
            let s = PyStr::from_code_points(cps.iter().copied()).unwrap();
            assert!(s.has_surrogates() && s.as_str().is_none());
            assert_eq!(s.char_len(), n);
            assert_eq!(s.code_points().collect::<Vec<_>>(), cps);
            assert!(PyStr::from_wtf8(s.as_wtf8()).unwrap() == s);
        }
        // Unicode around the inline limit (multi-byte characters).
        let s = PyStr::new("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}");
        assert_eq!((s.as_wtf8().len(), s.char_len()), (16, 8));
        assert!(s.as_str().is_some());
        assert!(PyStr::new("b") > PyStr::new("a") && PyStr::new("ab") > PyStr::new("a"));
    }

    #[test]
    fn tuple_is_one_slice() {
        let t = Tuple::new(vec![Value::Int(1), Value::str("a")]);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].as_i64(), Some(1));
        let v: Vec<Value> = t.items.clone();
        assert_eq!(v.len(), 2);
        assert_eq!(t.as_slice().len(), 2);
        assert_eq!((&*t).into_iter().count(), 2);
        let s: &[Value] = &t;
        assert_eq!(s[1].as_str(), Some("a"));
        let e = Tuple::from_exact_iter(Vec::new());
        assert!(e.is_empty());
    }

    #[test]
    fn value_is_small() {
        assert!(std::mem::size_of::<Value>() <= 24);
    }
}
