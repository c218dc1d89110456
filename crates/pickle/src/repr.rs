//! Python's `repr()` and `str()` on the value model, byte-identical to
//! CPython 3.8–3.13 for every built-in type, in two styles:
//!
//! * [`repr`] / [`try_repr`]: what CPython's `repr()` prints, for a server
//!   that must answer `str(proxy)` as CPython's does. An object of a class
//!   the model does not know prints as `object.__repr__` does:
//!   `<__main__.Point object at 0x7f…>`, where the address is the object's
//!   identity in the model ([`Value::identity`]), stable while it lives.
//! * [`inspect`] / [`try_inspect`]: for a person looking inside a pickle
//!   (`mpmanager pickle show`): the same text, except that an object of an
//!   unknown class is shown as the Python expression the pickle evaluates
//!   (see the table below), so that one sees what unpickling would do.
//!
//! Both styles:
//!
//! * Scalars and containers: exactly CPython's text (`1e+16`, `(-0-1j)`,
//!   `'\udc80'`, `b'\x00'`, `(1,)`, `set()`, `frozenset({1})`,
//!   `slice(1, None, None)`, …). Self-containing containers print as
//!   CPython does: `[1, [...]]`, `{'a': {...}}`.
//! * Sets are printed in the model's (insertion) order; CPython prints them
//!   in hash-table order, which only matches for simple cases.
//! * Globals: a class prints as `<class 'datetime.datetime'>` (`<class
//!   'int'>` for `builtins`); `builtins.Ellipsis` and
//!   `builtins.NotImplemented` as `Ellipsis` and `NotImplemented`; the
//!   built-in functions (`len`, `print`, `sorted`, … every callable of
//!   `builtins` that is not a class) as `<built-in function len>`, and
//!   `site`'s `exit`, `quit`, `help`, `license` and `credits` as their text
//!   (`copyright`, whose text names the current year, prints as a class);
//!   the aliases `IOError` and `EnvironmentError` as `<class 'OSError'>`.
//!   A pickle names a class and a module-level function the same way
//!   (`GLOBAL module name`), and nothing is imported, so any other global —
//!   `math.sqrt` or a user's function included — prints as a class:
//!   `<class 'math.sqrt'>` (CPython: `<built-in function sqrt>`,
//!   `<function f at 0x…>`).
//! * Opaque objects ([`Value::Object`]) that CPython's standard library
//!   defines get CPython's exact repr: built-in exceptions (`KeyError('zz')`,
//!   `FileNotFoundError(2, 'x')` for `OSError(2, 'x')`), `queue.Empty`/`Full`,
//!   `threading.BrokenBarrierError`, `decimal.Decimal`, `fractions.Fraction`,
//!   `datetime.date`/`datetime`/`time`/`timedelta`/`timezone`,
//!   `array.array` (both pickled forms), the `collections` containers
//!   `OrderedDict` (in the 3.12+ form `OrderedDict({'b': 1})`; 3.8–3.11
//!   print `OrderedDict([('b', 1)])`), `defaultdict(<class 'list'>, {…})`,
//!   `deque([1, 2], maxlen=3)` and `Counter({'a': 2})` (most common first),
//!   and the manager types `Token`, pickled proxies (`<ListProxy object,
//!   typeid 'list' at 0x…>`, where the address shown is the token id),
//!   `Namespace` and `Value`.
//! * Known differences: an unknown object's class is taken to be the class
//!   its pickle names (`NEWOBJ`'s class, or `REDUCE`'s callable, which for
//!   a factory function is the function, not the class it returns;
//!   `object` if the callable is not a global); a user
//!   class with its own `__repr__`, or a subclass of a built-in type,
//!   prints as `<module.Name object at 0x…>` all the same, since its code
//!   is never run.
//!
//! The inspector's form of an unknown object:
//!
//! | pickle                       | shown as                                   |
//! |------------------------------|--------------------------------------------|
//! | `REDUCE(f, (a, b))`          | `mod.f(a, b)`                              |
//! | `NEWOBJ(C, (a,))`            | `mod.C.__new__(mod.C, a)`                  |
//! | `NEWOBJ_EX(C, (a,), {'k':v})`| `mod.C.__new__(mod.C, a, k=v)`             |
//! | then `APPENDS`               | `….extend([x, y])`                         |
//! | then `SETITEMS`              | `….update({k: v})` (one `obj[k] = v` each) |
//! | then `BUILD state`           | `….__setstate__(state)`                    |
//!
//! A callable that is a global is written `module.qualname` (not
//! `<class '…'>`); a non-global callable is written `(repr)`. An object met
//! again inside itself is written `<recursive module.Name object>`.
//!
//! [`try_repr`] and [`try_inspect`] fail as CPython does: `RecursionError`
//! for values nested deeper than 1000 levels, `ValueError` for an `int` of
//! more than 4300 decimal digits (CPython's default `int_max_str_digits`;
//! the 3.12+ message is used). [`repr`] and [`inspect`] never fail: they
//! write those parts as `<RecursionError: …>` and `<int with N digits:
//! ValueError: …>` and go on.

use std::fmt::Write as _;

use num_bigint::{BigInt, Sign};
use num_integer::Integer;
use num_traits::{Signed, ToPrimitive, Zero};
use rustc_hash::FxHashSet;
use unicode_general_category::{get_general_category, GeneralCategory as GC};

use crate::exc::{ExcType, PyErr};
use crate::hash::{RED_ZONE, STACK_GROWTH};
use crate::value::{Construct, Global, Object, PyStr, Value};

/// Deepest nesting `repr` follows before raising `RecursionError`
/// ([`limits::MAX_DEPTH`](crate::limits::MAX_DEPTH)).
pub const MAX_REPR_DEPTH: usize = crate::limits::MAX_DEPTH;

/// The most values one repr visits before failing with `MemoryError`. A
/// pickle can share one tuple under two parents at every level (`DUP`), so
/// a value of a few hundred bytes can have a tree expansion of 2**40 parts;
/// this bounds the time and memory such a value can cost (a list of 16
/// million ints still shows in full).
pub const MAX_REPR_PARTS: usize = 1 << 24;

/// The most text one repr produces (counting the copies of nested parts
/// into their containers) before failing with `MemoryError`: shared large
/// strings under a DAG could otherwise multiply a small pickle into
/// gigabytes within [`MAX_REPR_PARTS`]. 256 MiB (the server's frame limit
/// when this was set; it is 1 GiB now, so the repr of a value near that
/// size fails with `MemoryError` where CPython would build it).
pub const MAX_REPR_BYTES: usize = 256 << 20;

/// CPython's default `sys.get_int_max_str_digits()`.
pub use crate::limits::INT_MAX_STR_DIGITS;

/// How an object of an unknown class is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// As CPython's `object.__repr__`: `<mod.Name object at 0x…>`.
    Python,
    /// As the expression the pickle evaluates (see the module docs).
    Inspect,
}

fn lenient(v: &Value, style: Style) -> String {
    let mut r = Repr::new(false, style);
    let mut out = String::new();
    match r.value(v, &mut out) {
        Ok(()) => out,
        // Not reached in lenient mode, but never panic.
        Err(e) => format!("<repr failed: {e}>"),
    }
}

fn strict(v: &Value, style: Style) -> Result<String, PyErr> {
    let mut r = Repr::new(true, style);
    let mut out = String::new();
    r.value(v, &mut out)?;
    Ok(out)
}

/// `repr(v)` as CPython prints it; never fails (see the [module
/// docs](self) for the markers written where CPython would raise).
///
/// ```
/// use mpmanager_pickle::{repr, Global, Object, Value};
/// assert_eq!(repr(&Value::tuple(vec![Value::Int(1)])), "(1,)");
/// assert_eq!(repr(&Value::Float(1e16)), "1e+16");
/// assert_eq!(repr(&Value::global("builtins", "len")), "<built-in function len>");
/// let p = Value::object(Object::new_obj(Global::new("__main__", "Point"), vec![], None));
/// assert!(repr(&p).starts_with("<__main__.Point object at 0x"));
/// ```
pub fn repr(v: &Value) -> String {
    lenient(v, Style::Python)
}

/// `repr(v)` as CPython prints it, failing with CPython's exceptions:
/// `RecursionError` past nesting depth 1000, `ValueError` for an int of
/// more than 4300 digits.
pub fn try_repr(v: &Value) -> Result<String, PyErr> {
    strict(v, Style::Python)
}

/// The inspector's view of `v`: [`repr`], except that an object of an
/// unknown class is shown as the expression its pickle evaluates
/// (`__main__.Point.__new__(__main__.Point).__setstate__({'x': 1})`); never
/// fails.
///
/// ```
/// use mpmanager_pickle::{repr::inspect, Global, Object, Value};
/// let state = Value::dict(vec![(Value::str("x"), Value::Int(1))]).unwrap();
/// let p = Object::new_obj(Global::new("__main__", "Point"), vec![], Some(state));
/// assert_eq!(
///     inspect(&Value::object(p)),
///     "__main__.Point.__new__(__main__.Point).__setstate__({'x': 1})"
/// );
/// ```
pub fn inspect(v: &Value) -> String {
    lenient(v, Style::Inspect)
}

/// [`inspect`], failing as [`try_repr`] does.
pub fn try_inspect(v: &Value) -> Result<String, PyErr> {
    strict(v, Style::Inspect)
}

/// `str(v)`: the text itself for a `str`, `str()` of exceptions as Python
/// computes it (`str(KeyError('k'))` is `"'k'"`, `str(OSError(2, 'x'))` is
/// `"[Errno 2] x"`), `str()` of `Decimal`, `Fraction` and the `datetime`
/// types, and `repr` for everything else. Lone surrogates in a `str` are
/// replaced by U+FFFD (a Rust `String` cannot hold them).
pub fn py_str(v: &Value) -> Result<String, PyErr> {
    match v {
        Value::Str(s) => Ok(s.to_string_lossy().into_owned()),
        Value::Object(o) => {
            let o = o.read_recursive();
            let mut r = Repr::new(true, Style::Python);
            if let Some(s) = r.object_str(&o)? {
                return Ok(s);
            }
            drop(o);
            try_repr(v)
        }
        _ => try_repr(v),
    }
}

/// `repr(float)`: shortest round-trip digits, Python's `'r'` format.
pub fn float_repr(f: f64) -> String {
    format_float(f, true, false)
}

/// `repr(str)`.
pub fn str_repr(s: &PyStr) -> String {
    let mut out = String::with_capacity(s.as_wtf8().len() + 2);
    write_str_repr(s, &mut out);
    out
}

/// `repr(bytes)`: `b'…'`.
pub fn bytes_repr(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 3);
    write_bytes_repr(b, &mut out);
    out
}

// ---------------------------------------------------------------------------
// Scalars

/// Formats like CPython's `PyOS_double_to_string(f, 'r', 0, flags)`.
/// `add_dot_0`: `1.0` rather than `1` (float repr; complex parts omit it).
/// `sign`: always write a sign (the imaginary part of a complex).
fn format_float(f: f64, add_dot_0: bool, sign: bool) -> String {
    if f.is_nan() {
        return if sign { "+nan" } else { "nan" }.to_string();
    }
    let neg = f.is_sign_negative();
    let mut out = String::new();
    if neg {
        out.push('-');
    } else if sign {
        out.push('+');
    }
    if f.is_infinite() {
        out.push_str("inf");
        return out;
    }
    // Shortest round-trip digits and exponent, from Rust's formatter.
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = if digits.is_empty() {
        "0".to_string()
    } else {
        digits
    };
    let decpt = exp + 1; // value = 0.DIGITS * 10**decpt
    if f == 0.0 {
        out.push('0');
        if add_dot_0 {
            out.push_str(".0");
        }
        return out;
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(
            out,
            "e{}{:02}",
            if e < 0 { '-' } else { '+' },
            e.unsigned_abs()
        );
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..(-decpt) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let d = decpt as usize;
        if d >= digits.len() {
            out.push_str(&digits);
            for _ in digits.len()..d {
                out.push('0');
            }
            if add_dot_0 {
                out.push_str(".0");
            }
        } else {
            out.push_str(&digits[..d]);
            out.push('.');
            out.push_str(&digits[d..]);
        }
    }
    out
}

fn complex_repr(re: f64, im: f64) -> String {
    if re == 0.0 && re.is_sign_positive() {
        format!("{}j", format_float(im, false, false))
    } else {
        format!(
            "({}{}j)",
            format_float(re, false, false),
            format_float(im, false, true)
        )
    }
}

/// True if `str.isprintable()` holds for the code point.
fn is_printable(cp: u32) -> bool {
    if cp == 0x20 {
        return true;
    }
    let Some(c) = char::from_u32(cp) else {
        return false; // surrogates (Cs)
    };
    !matches!(
        get_general_category(c),
        GC::Control
            | GC::Format
            | GC::Surrogate
            | GC::PrivateUse
            | GC::Unassigned
            | GC::LineSeparator
            | GC::ParagraphSeparator
            | GC::SpaceSeparator
    )
}

fn write_str_repr(s: &PyStr, out: &mut String) {
    let bytes = s.as_wtf8();
    let has_sq = bytes.contains(&b'\'');
    let quote = if has_sq && !bytes.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for cp in s.code_points() {
        match cp {
            _ if cp == quote as u32 || cp == '\\' as u32 => {
                out.push('\\');
                out.push(cp as u8 as char);
            }
            0x09 => out.push_str("\\t"),
            0x0A => out.push_str("\\n"),
            0x0D => out.push_str("\\r"),
            _ if cp < 0x20 || cp == 0x7F => {
                let _ = write!(out, "\\x{cp:02x}");
            }
            _ if cp < 0x7F => out.push(cp as u8 as char),
            _ if is_printable(cp) => out.push(char::from_u32(cp).unwrap_or('\u{FFFD}')),
            _ if cp <= 0xFF => {
                let _ = write!(out, "\\x{cp:02x}");
            }
            _ if cp <= 0xFFFF => {
                let _ = write!(out, "\\u{cp:04x}");
            }
            _ => {
                let _ = write!(out, "\\U{cp:08x}");
            }
        }
    }
    out.push(quote);
}

fn write_bytes_repr(b: &[u8], out: &mut String) {
    write_bytes_literal(b, out, false)
}

/// `bytearray.__repr__` escapes `'` even inside `"…"`.
fn write_bytearray_repr(b: &[u8], out: &mut String) {
    write_bytes_literal(b, out, true)
}

fn write_bytes_literal(b: &[u8], out: &mut String, always_escape_sq: bool) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push('b');
    out.push(quote as char);
    for &c in b {
        match c {
            _ if c == quote || c == b'\\' || (always_escape_sq && c == b'\'') => {
                out.push('\\');
                out.push(c as char);
            }
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if !(0x20..0x7F).contains(&c) => {
                let _ = write!(out, "\\x{c:02x}");
            }
            _ => out.push(c as char),
        }
    }
    out.push(quote as char);
}

fn int_digits_error() -> PyErr {
    PyErr::value_error(format!(
        "Exceeds the limit ({INT_MAX_STR_DIGITS} digits) for integer string conversion; \
         use sys.set_int_max_str_digits() to increase the limit"
    ))
}

/// `repr(int)` of a big integer, or the `int_max_str_digits` error.
fn bigint_repr(b: &BigInt) -> Result<String, (PyErr, u64)> {
    // 4300 digits need fewer than 14285 bits; skip the (slow) conversion of
    // numbers that are certainly too long, estimating their digit count.
    let bits = b.bits();
    if bits > 14_400 {
        return Err((
            int_digits_error(),
            (bits as f64 * std::f64::consts::LOG10_2) as u64 + 1,
        ));
    }
    let s = b.to_string();
    let n = s.trim_start_matches('-').len();
    if n > INT_MAX_STR_DIGITS {
        return Err((int_digits_error(), n as u64));
    }
    Ok(s)
}

fn global_path(g: &Global) -> String {
    format!("{}.{}", g.module, g.name)
}

/// `module.qualname`, or just `qualname` for `builtins`, as `repr` of a
/// class and `object.__repr__` write a type.
fn type_path(g: &Global) -> String {
    if &*g.module == "builtins" {
        g.name.to_string()
    } else {
        global_path(g)
    }
}

/// The callables of `builtins` that are not classes (the same in CPython
/// 3.8–3.13, plus 3.10's `aiter`/`anext`), without `site`'s helpers.
const BUILTIN_FUNCTIONS: &[&str] = &[
    "__build_class__",
    "__import__",
    "abs",
    "aiter",
    "all",
    "anext",
    "any",
    "ascii",
    "bin",
    "breakpoint",
    "callable",
    "chr",
    "compile",
    "delattr",
    "dir",
    "divmod",
    "eval",
    "exec",
    "format",
    "getattr",
    "globals",
    "hasattr",
    "hash",
    "hex",
    "id",
    "input",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "locals",
    "max",
    "min",
    "next",
    "oct",
    "open",
    "ord",
    "pow",
    "print",
    "repr",
    "round",
    "setattr",
    "sorted",
    "sum",
    "vars",
];

/// `repr` of a global: see the module docs.
fn global_repr(g: &Global) -> String {
    if &*g.module == "builtins" {
        let name: &str = &g.name;
        match name {
            "Ellipsis" | "NotImplemented" => return name.to_string(),
            // Aliases of classes.
            "IOError" | "EnvironmentError" => return "<class 'OSError'>".to_string(),
            "__loader__" => return "<class '_frozen_importlib.BuiltinImporter'>".to_string(),
            "exit" | "quit" => return format!("Use {name}() or Ctrl-D (i.e. EOF) to exit"),
            "help" => {
                return "Type help() for interactive help, or help(object) for help about object."
                    .to_string()
            }
            "license" => return "Type license() to see the full license text".to_string(),
            "credits" => {
                return "    Thanks to CWI, CNRI, BeOpen.com, Zope Corporation and a cast of \
                        thousands\n    for supporting Python development.  See www.python.org \
                        for more information."
                    .to_string()
            }
            _ if BUILTIN_FUNCTIONS.contains(&name) => {
                return format!("<built-in function {name}>");
            }
            _ => {}
        }
    }
    format!("<class '{}'>", type_path(g))
}

// ---------------------------------------------------------------------------
// The recursive walk

struct Repr {
    strict: bool,
    style: Style,
    depth: usize,
    /// Values visited so far (bounded by [`MAX_REPR_PARTS`]).
    parts: usize,
    /// Bytes of text produced so far, copies into enclosing reprs included
    /// (bounded by [`MAX_REPR_BYTES`]).
    produced: usize,
    /// Identities of the containers on the current path.
    active: FxHashSet<usize>,
}

/// Closes the bracket of a container, removing it from the active path.
macro_rules! leave {
    ($self:ident, $id:expr) => {
        $self.active.remove(&$id);
    };
}

impl Repr {
    fn new(strict: bool, style: Style) -> Repr {
        Repr {
            strict,
            style,
            depth: 0,
            parts: 0,
            produced: 0,
            active: FxHashSet::default(),
        }
    }

    fn value(&mut self, v: &Value, out: &mut String) -> Result<(), PyErr> {
        self.parts += 1;
        if self.parts > MAX_REPR_PARTS {
            return Err(PyErr::new(
                ExcType::MemoryError,
                format!("repr of a value with more than {MAX_REPR_PARTS} parts"),
            ));
        }
        let before = out.len();
        stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || self.value_inner(v, out))?;
        self.produced += out.len().saturating_sub(before);
        if self.produced > MAX_REPR_BYTES {
            return Err(PyErr::new(
                ExcType::MemoryError,
                format!("repr longer than {MAX_REPR_BYTES} bytes"),
            ));
        }
        Ok(())
    }

    /// Repr of `v` as a separate string.
    fn of(&mut self, v: &Value) -> Result<String, PyErr> {
        let mut s = String::new();
        self.value(v, &mut s)?;
        Ok(s)
    }

    /// Writes `items` separated by `, `.
    fn seq<'a>(
        &mut self,
        items: impl IntoIterator<Item = &'a Value>,
        out: &mut String,
    ) -> Result<(), PyErr> {
        for (i, it) in items.into_iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.value(it, out)?;
        }
        Ok(())
    }

    fn value_inner(&mut self, v: &Value, out: &mut String) -> Result<(), PyErr> {
        match v {
            Value::None => out.push_str("None"),
            Value::Bool(true) => out.push_str("True"),
            Value::Bool(false) => out.push_str("False"),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::BigInt(b) => match bigint_repr(b) {
                Ok(s) => out.push_str(&s),
                Err((e, _)) if self.strict => return Err(e),
                Err((e, n)) => {
                    let _ = write!(
                        out,
                        "<int with {n} digits: ValueError: {}>",
                        e.message().unwrap_or("")
                    );
                }
            },
            Value::Float(f) => out.push_str(&float_repr(*f)),
            Value::Complex(re, im) => out.push_str(&complex_repr(*re, *im)),
            Value::Str(s) => write_str_repr(s, out),
            Value::Bytes(b) => write_bytes_repr(b, out),
            Value::ByteArray(b) => {
                out.push_str("bytearray(");
                write_bytearray_repr(&b.read_recursive(), out);
                out.push(')');
            }
            Value::Global(g) => out.push_str(&global_repr(g)),
            Value::Slice(s) => {
                out.push_str("slice(");
                self.enter()?;
                let r = self.seq([&s.start, &s.stop, &s.step], out);
                self.depth -= 1;
                r?;
                out.push(')');
            }
            Value::Tuple(_)
            | Value::List(_)
            | Value::Dict(_)
            | Value::Set(_)
            | Value::FrozenSet(_)
            | Value::Object(_) => {
                let id = v.identity().unwrap_or(0);
                if self.active.contains(&id) {
                    out.push_str(&match v {
                        Value::Tuple(_) => "(...)".to_string(),
                        Value::List(_) => "[...]".to_string(),
                        Value::Dict(_) => "{...}".to_string(),
                        Value::Set(_) => "set(...)".to_string(),
                        Value::FrozenSet(_) => "frozenset(...)".to_string(),
                        Value::Object(o) => self.recursive_object(&o.read_recursive())?,
                        _ => "...".to_string(),
                    });
                    return Ok(());
                }
                if let Err(e) = self.enter() {
                    if self.strict {
                        return Err(e);
                    }
                    let _ = write!(out, "<{e}>");
                    return Ok(());
                }
                self.active.insert(id);
                let r = self.container(v, out);
                leave!(self, id);
                self.depth -= 1;
                r?;
            }
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), PyErr> {
        if self.depth >= MAX_REPR_DEPTH {
            return Err(PyErr::recursion("while getting the repr of an object"));
        }
        self.depth += 1;
        Ok(())
    }

    fn container(&mut self, v: &Value, out: &mut String) -> Result<(), PyErr> {
        match v {
            Value::Tuple(t) => {
                out.push('(');
                self.seq(t.iter(), out)?;
                if t.len() == 1 {
                    out.push(',');
                }
                out.push(')');
            }
            Value::List(l) => {
                let l = l.read_recursive();
                out.push('[');
                self.seq(l.iter(), out)?;
                out.push(']');
            }
            Value::Dict(d) => {
                let d = d.read_recursive();
                out.push('{');
                for (i, (k, val)) in d.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.value(k.value(), out)?;
                    out.push_str(": ");
                    self.value(val, out)?;
                }
                out.push('}');
            }
            Value::Set(s) => {
                let s = s.read_recursive();
                if s.is_empty() {
                    out.push_str("set()");
                } else {
                    out.push('{');
                    self.seq(s.iter().map(|k| k.value()), out)?;
                    out.push('}');
                }
            }
            Value::FrozenSet(s) => {
                if s.is_empty() {
                    out.push_str("frozenset()");
                } else {
                    out.push_str("frozenset({");
                    self.seq(s.iter().map(|k| k.value()), out)?;
                    out.push_str("})");
                }
            }
            Value::Object(o) => {
                let o = o.read_recursive();
                match self.known_object(&o)? {
                    Some(s) => out.push_str(&s),
                    None if self.style == Style::Inspect => self.generic_object(&o, out)?,
                    None => {
                        let name = match o.new_of().map(|(g, _)| g).or_else(|| o.global()) {
                            Some(g) => type_path(g),
                            None => "object".to_string(),
                        };
                        let id = v.identity().unwrap_or(0);
                        let _ = write!(out, "<{name} object at 0x{id:x}>");
                    }
                }
            }
            _ => self.value_inner(v, out)?,
        }
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Opaque objects

    /// What is written for an object met again inside its own repr.
    fn recursive_object(&mut self, o: &Object) -> Result<String, PyErr> {
        let Some(g) = o.global() else {
            return Ok("<recursive object>".to_string());
        };
        if &*g.module == "collections" && o.construct == Construct::Reduce {
            match &*g.name {
                // `OrderedDict.__repr__` and `Counter.__repr__` (via
                // `reprlib`-style guards; `Counter` would recurse forever).
                "OrderedDict" | "Counter" => return Ok("...".to_string()),
                "deque" => return Ok("[...]".to_string()),
                // `defaultdict.__repr__` is `dict.__repr__` in a wrapper,
                // and only the latter guards against recursion.
                "defaultdict" => {
                    let factory = match o.args_slice() {
                        [f] => self.of(f)?,
                        _ => "None".to_string(),
                    };
                    return Ok(format!("defaultdict({factory}, {{...}})"));
                }
                _ => {}
            }
        }
        Ok(format!("<recursive {} object>", global_path(g)))
    }

    /// `{k: v, …}` of `pairs`.
    fn dict_body(&mut self, pairs: &[(Value, Value)], out: &mut String) -> Result<(), PyErr> {
        out.push('{');
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.value(k, out)?;
            out.push_str(": ");
            self.value(v, out)?;
        }
        out.push('}');
        Ok(())
    }

    /// `collections.OrderedDict`, `defaultdict`, `deque` and `Counter`, as
    /// their pickles (`REDUCE` then `SETITEMS`/`APPENDS`) rebuild them.
    fn collection_repr(&mut self, o: &Object, name: &str) -> Result<Option<String>, PyErr> {
        if o.kwargs.is_some() || !matches!(o.args, Value::Tuple(_)) {
            return Ok(None);
        }
        // An instance `__dict__` (the `BUILD` state) does not show.
        let args = o.args_slice();
        let mut s = String::new();
        match name {
            "OrderedDict" | "defaultdict" => {
                let factory = match (name, args) {
                    ("OrderedDict", []) => None,
                    ("defaultdict", []) => Some(Value::None),
                    ("defaultdict", [f]) => Some(f.clone()),
                    _ => return Ok(None),
                };
                if !o.list_items.is_empty() {
                    return Ok(None);
                }
                let Some(items) = dict_pairs(&o.dict_items) else {
                    return Ok(None);
                };
                match factory {
                    None if items.is_empty() => s.push_str("OrderedDict()"),
                    None => {
                        s.push_str("OrderedDict(");
                        self.dict_body(&items, &mut s)?;
                        s.push(')');
                    }
                    Some(f) => {
                        s.push_str("defaultdict(");
                        self.value(&f, &mut s)?;
                        s.push_str(", ");
                        self.dict_body(&items, &mut s)?;
                        s.push(')');
                    }
                }
            }
            "deque" => {
                if !o.dict_items.is_empty() {
                    return Ok(None);
                }
                let iterable = |v: &Value| match v {
                    Value::List(_) | Value::Tuple(_) => Some(seq_items(v)),
                    _ => None,
                };
                let (mut items, maxlen) = match args {
                    [] => (Vec::new(), None),
                    [it] => match iterable(it) {
                        Some(items) => (items, None),
                        None => return Ok(None),
                    },
                    [it, m] => {
                        let maxlen = match m {
                            Value::None => None,
                            m => match m.as_i64().and_then(|m| usize::try_from(m).ok()) {
                                Some(m) => Some(m),
                                None => return Ok(None),
                            },
                        };
                        match iterable(it) {
                            Some(items) => (items, maxlen),
                            None => return Ok(None),
                        }
                    }
                    _ => return Ok(None),
                };
                items.extend(o.list_items.iter().cloned());
                if let Some(m) = maxlen {
                    // Appending to a full deque drops items on the left.
                    items.drain(..items.len().saturating_sub(m));
                }
                s.push_str("deque([");
                self.seq(items.iter(), &mut s)?;
                s.push(']');
                if let Some(m) = maxlen {
                    let _ = write!(s, ", maxlen={m}");
                }
                s.push(')');
            }
            "Counter" => {
                if !o.list_items.is_empty() || !o.dict_items.is_empty() {
                    return Ok(None);
                }
                let items: Vec<(Value, Value)> = match args {
                    [] => Vec::new(),
                    [Value::Dict(d)] => d
                        .read_recursive()
                        .iter()
                        .map(|(k, v)| (k.value().clone(), v.clone()))
                        .collect(),
                    _ => return Ok(None),
                };
                if items.is_empty() {
                    s.push_str("Counter()");
                } else {
                    s.push_str("Counter(");
                    self.dict_body(&most_common(items), &mut s)?;
                    s.push(')');
                }
            }
            _ => return Ok(None),
        }
        Ok(Some(s))
    }

    /// The generic, documented form (see the module docs).
    fn generic_object(&mut self, o: &Object, out: &mut String) -> Result<(), PyErr> {
        let callable = match &o.callable {
            Value::Global(g) => global_path(g),
            other => format!("({})", self.of(other)?),
        };
        out.push_str(&callable);
        if o.construct != Construct::Reduce {
            let _ = write!(out, ".__new__({callable}");
        } else {
            out.push('(');
        }
        let mut first = o.construct == Construct::Reduce;
        match &o.args {
            Value::Tuple(t) => {
                for a in t.iter() {
                    if !first {
                        out.push_str(", ");
                    }
                    first = false;
                    self.value(a, out)?;
                }
            }
            other => {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                out.push('*');
                self.value(other, out)?;
            }
        }
        if let Some(kw) = &o.kwargs {
            let pairs: Option<Vec<(String, Value)>> = match kw {
                Value::Dict(d) => d
                    .read_recursive()
                    .iter()
                    .map(|(k, v)| {
                        k.value()
                            .as_str()
                            .filter(|s| is_identifier(s))
                            .map(|s| (s.to_string(), v.clone()))
                    })
                    .collect(),
                _ => None,
            };
            match pairs {
                Some(pairs) => {
                    for (k, v) in pairs {
                        if !first {
                            out.push_str(", ");
                        }
                        first = false;
                        out.push_str(&k);
                        out.push('=');
                        self.value(&v, out)?;
                    }
                }
                None => {
                    if !first {
                        out.push_str(", ");
                    }
                    out.push_str("**");
                    self.value(kw, out)?;
                }
            }
        }
        out.push(')');
        if !o.list_items.is_empty() {
            out.push_str(".extend([");
            self.seq(o.list_items.iter(), out)?;
            out.push_str("])");
        }
        if !o.dict_items.is_empty() {
            out.push_str(".update({");
            for (i, (k, v)) in o.dict_items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                self.value(k, out)?;
                out.push_str(": ");
                self.value(v, out)?;
            }
            out.push_str("})");
        }
        if let Some(state) = &o.state {
            out.push_str(".__setstate__(");
            self.value(state, out)?;
            out.push(')');
        }
        Ok(())
    }

    /// CPython's repr for objects the standard library defines, or `None`.
    fn known_object(&mut self, o: &Object) -> Result<Option<String>, PyErr> {
        let Some(g) = o.global() else { return Ok(None) };
        if &*g.module == "collections" && o.construct == Construct::Reduce {
            return self.collection_repr(o, &g.name);
        }
        let args = o.args_slice();
        let plain = o.list_items.is_empty() && o.dict_items.is_empty() && o.kwargs.is_none();
        if !plain {
            return Ok(None);
        }
        // Protocol 0/1 spell `cls.__new__(cls)` as copyreg._reconstructor.
        let (g, args, reduce) = match o.new_of() {
            Some((cls, new_args)) => (cls, new_args, false),
            None => (g, args, o.construct == Construct::Reduce),
        };
        let m: &str = &g.module;
        let n: &str = &g.name;
        if reduce {
            if let Some(name) = exception_name(g, args) {
                // Exceptions ignore a BUILD state (their __dict__).
                let args = exception_args(g, args);
                return Ok(Some(if args.len() == 1 {
                    format!("{name}({})", self.of(&args[0])?)
                } else {
                    format!("{name}{}", self.of(&Value::tuple(args.to_vec()))?)
                }));
            }
        }
        if o.state.is_some() && reduce {
            return Ok(None);
        }
        Ok(match (m, n, reduce) {
            ("decimal" | "_decimal" | "_pydecimal", "Decimal", true) => match args {
                [Value::Str(s)] => Some(format!("Decimal({})", str_repr(s))),
                _ => None,
            },
            ("fractions", "Fraction", true) => {
                fraction(args).map(|(n, d)| format!("Fraction({n}, {d})"))
            }
            ("datetime", _, true) => self.datetime_repr(n, args)?,
            ("array", "array", true) => self.array_repr(args, None)?,
            ("array", "_array_reconstructor", true) => match args {
                [Value::Global(c), tc, mf, data] if c.is("array", "array") => {
                    self.array_repr(&[tc.clone(), data.clone()], mf.as_i64())?
                }
                _ => None,
            },
            ("builtins", _, true) => self.builtin_call(n, args)?,
            ("multiprocessing.managers", "RebuildProxy", true) => self.proxy_repr(args)?,
            ("multiprocessing.managers", "Token", false) if args.is_empty() => match &o.state {
                Some(Value::Tuple(t)) if t.len() == 3 => Some(format!(
                    "Token(typeid={}, address={}, id={})",
                    self.of(&t[0])?,
                    self.of(&t[1])?,
                    self.of(&t[2])?
                )),
                _ => None,
            },
            ("multiprocessing.managers", "Namespace", false) if args.is_empty() => {
                match state_dict(&o.state) {
                    Some(pairs) => {
                        let mut items = Vec::new();
                        for (k, v) in pairs {
                            if let Value::Str(s) = &k {
                                if s.as_wtf8().first() == Some(&b'_') {
                                    continue;
                                }
                                items.push(format!("{}={}", s.to_string_lossy(), self.of(&v)?));
                            } else {
                                return Ok(None);
                            }
                        }
                        items.sort();
                        Some(format!("Namespace({})", items.join(", ")))
                    }
                    None => None,
                }
            }
            ("multiprocessing.managers", "Value", false) if args.is_empty() => {
                let pairs = state_dict(&o.state).unwrap_or_default();
                let get = |name: &str| {
                    pairs
                        .iter()
                        .find(|(k, _)| k.as_str() == Some(name))
                        .map(|(_, v)| v.clone())
                };
                match (get("_typecode"), get("_value")) {
                    (Some(t), Some(v)) => {
                        Some(format!("Value({}, {})", self.of(&t)?, self.of(&v)?))
                    }
                    _ => None,
                }
            }
            _ => None,
        })
    }

    /// `builtins.X(args)` reductions whose result is a built-in value.
    fn builtin_call(&mut self, name: &str, args: &[Value]) -> Result<Option<String>, PyErr> {
        Ok(match (name, args) {
            ("list", []) => Some("[]".into()),
            ("list", [v @ (Value::List(_) | Value::Tuple(_))]) => {
                let items = seq_items(v);
                let mut s = String::from("[");
                self.seq(items.iter(), &mut s)?;
                s.push(']');
                Some(s)
            }
            ("bytearray", []) => Some("bytearray(b'')".into()),
            ("bytearray", [Value::Bytes(b)]) => {
                let mut s = String::from("bytearray(");
                write_bytearray_repr(b, &mut s);
                s.push(')');
                Some(s)
            }
            ("complex", [re, im]) => match (as_f64(re), as_f64(im)) {
                (Some(r), Some(i)) => Some(complex_repr(r, i)),
                _ => None,
            },
            ("slice", [a, b, c]) => Some(format!(
                "slice({}, {}, {})",
                self.of(a)?,
                self.of(b)?,
                self.of(c)?
            )),
            ("range", [a, b, c]) if [a, b, c].iter().all(|x| x.to_bigint().is_some()) => {
                if c.as_i64() == Some(1) {
                    Some(format!("range({}, {})", self.of(a)?, self.of(b)?))
                } else {
                    Some(format!(
                        "range({}, {}, {})",
                        self.of(a)?,
                        self.of(b)?,
                        self.of(c)?
                    ))
                }
            }
            _ => None,
        })
    }

    /// `RebuildProxy(func, token, serializer, kwds)`.
    fn proxy_repr(&mut self, args: &[Value]) -> Result<Option<String>, PyErr> {
        let [Value::Global(func), Value::Object(tok), ..] = args else {
            return Ok(None);
        };
        let tok = tok.read_recursive();
        let Some(tg) = tok.global() else {
            return Ok(None);
        };
        if !tg.is("multiprocessing.managers", "Token") {
            return Ok(None);
        }
        let Some(Value::Tuple(t)) = &tok.state else {
            return Ok(None);
        };
        if t.len() != 3 {
            return Ok(None);
        }
        let typeid = &t[0];
        let cls = if func.is("multiprocessing.managers", "AutoProxy") {
            match typeid {
                Value::Str(s) => format!("AutoProxy[{}]", s.to_string_lossy()),
                other => format!("AutoProxy[{}]", py_str_lenient(other)),
            }
        } else {
            func.name
                .rsplit('.')
                .next()
                .unwrap_or(&func.name)
                .to_string()
        };
        let id = match &t[2] {
            Value::Str(s) => s.to_string_lossy().into_owned(),
            other => self.of(other)?,
        };
        Ok(Some(format!(
            "<{cls} object, typeid {} at 0x{id}>",
            self.of(typeid)?
        )))
    }

    fn array_repr(
        &mut self,
        args: &[Value],
        mformat: Option<i64>,
    ) -> Result<Option<String>, PyErr> {
        let [Value::Str(tc), data] = args else {
            return Ok(None);
        };
        let Some(tc) = tc.as_str().filter(|s| s.len() == 1) else {
            return Ok(None);
        };
        let tc = tc.as_bytes()[0];
        let items: Vec<ArrItem> = match data {
            Value::Bytes(b) => {
                let fmt = match mformat {
                    Some(m) => m,
                    None => match native_mformat(tc) {
                        Some(m) => m,
                        None => return Ok(None),
                    },
                };
                match decode_mformat(fmt, b) {
                    Some(v) => v,
                    None => return Ok(None),
                }
            }
            Value::List(_) | Value::Tuple(_) => {
                let mut v = Vec::new();
                for it in seq_items(data) {
                    v.push(match it {
                        Value::Float(f) => ArrItem::F(f),
                        Value::Str(s) => match s.code_points().next() {
                            Some(c) if s.char_len() == 1 => ArrItem::C(c),
                            _ => return Ok(None),
                        },
                        other => match other.to_bigint() {
                            Some(i) => ArrItem::I(i),
                            None => return Ok(None),
                        },
                    });
                }
                v
            }
            Value::Str(s) if matches!(tc, b'u' | b'w') => s.code_points().map(ArrItem::C).collect(),
            _ => return Ok(None),
        };
        let tcs = tc as char;
        if items.is_empty() {
            return Ok(Some(format!("array('{tcs}')")));
        }
        Ok(Some(match tc {
            b'u' | b'w' => {
                let mut cps = Vec::new();
                for it in items {
                    match it {
                        ArrItem::C(c) => cps.push(c),
                        ArrItem::I(i) => cps.push(i.to_u32().unwrap_or(0xFFFD)),
                        ArrItem::F(_) => return Ok(None),
                    }
                }
                match PyStr::from_code_points(cps) {
                    Some(s) => format!("array('{tcs}', {})", str_repr(&s)),
                    None => return Ok(None),
                }
            }
            b'f' | b'd' => {
                let mut parts = Vec::new();
                for it in items {
                    let f = match it {
                        ArrItem::F(f) => f,
                        ArrItem::I(i) => i.to_f64().unwrap_or(f64::NAN),
                        ArrItem::C(_) => return Ok(None),
                    };
                    let f = if tc == b'f' { f as f32 as f64 } else { f };
                    parts.push(float_repr(f));
                }
                format!("array('{tcs}', [{}])", parts.join(", "))
            }
            b'b' | b'B' | b'h' | b'H' | b'i' | b'I' | b'l' | b'L' | b'q' | b'Q' => {
                let mut parts = Vec::new();
                for it in items {
                    match it {
                        ArrItem::I(i) => parts.push(i.to_string()),
                        _ => return Ok(None),
                    }
                }
                format!("array('{tcs}', [{}])", parts.join(", "))
            }
            _ => return Ok(None),
        }))
    }

    fn datetime_repr(&mut self, name: &str, args: &[Value]) -> Result<Option<String>, PyErr> {
        Ok(match name {
            "date" => match args {
                [s] => state_bytes(s).filter(|b| b.len() == 4).map(|b| {
                    format!(
                        "datetime.date({}, {}, {})",
                        (b[0] as u32) << 8 | b[1] as u32,
                        b[2],
                        b[3]
                    )
                }),
                _ => None,
            },
            "datetime" => {
                let (s, tz) = match args {
                    [s] => (s, None),
                    [s, tz] => (s, Some(tz)),
                    _ => return Ok(None),
                };
                let Some(b) = state_bytes(s).filter(|b| b.len() == 10) else {
                    return Ok(None);
                };
                let year = (b[0] as u32) << 8 | b[1] as u32;
                let (month, fold) = (b[2] & 0x7F, b[2] >> 7);
                let us = (b[7] as u32) << 16 | (b[8] as u32) << 8 | b[9] as u32;
                let mut r = format!(
                    "datetime.datetime({year}, {month}, {}, {}, {}",
                    b[3], b[4], b[5]
                );
                if us != 0 {
                    let _ = write!(r, ", {}, {us}", b[6]);
                } else if b[6] != 0 {
                    let _ = write!(r, ", {}", b[6]);
                }
                self.finish_time(r, fold, tz)?
            }
            "time" => {
                let (s, tz) = match args {
                    [s] => (s, None),
                    [s, tz] => (s, Some(tz)),
                    _ => return Ok(None),
                };
                let Some(b) = state_bytes(s).filter(|b| b.len() == 6) else {
                    return Ok(None);
                };
                let (hour, fold) = (b[0] & 0x7F, b[0] >> 7);
                let us = (b[3] as u32) << 16 | (b[4] as u32) << 8 | b[5] as u32;
                let mut r = format!("datetime.time({hour}, {}", b[1]);
                if us != 0 {
                    let _ = write!(r, ", {}, {us}", b[2]);
                } else if b[2] != 0 {
                    let _ = write!(r, ", {}", b[2]);
                }
                self.finish_time(r, fold, tz)?
            }
            "timedelta" => timedelta(args).map(|(d, s, us)| {
                let mut parts = Vec::new();
                if d != 0 {
                    parts.push(format!("days={d}"));
                }
                if s != 0 {
                    parts.push(format!("seconds={s}"));
                }
                if us != 0 {
                    parts.push(format!("microseconds={us}"));
                }
                if parts.is_empty() {
                    "datetime.timedelta(0)".to_string()
                } else {
                    format!("datetime.timedelta({})", parts.join(", "))
                }
            }),
            "timezone" => match args {
                [Value::Object(td)] => match timedelta_of(&td.read_recursive()) {
                    Some((0, 0, 0)) => Some("datetime.timezone.utc".into()),
                    Some(_) => Some(format!("datetime.timezone({})", self.of(&args[0])?)),
                    None => None,
                },
                [Value::Object(_), name] => Some(format!(
                    "datetime.timezone({}, {})",
                    self.of(&args[0])?,
                    self.of(name)?
                )),
                _ => None,
            },
            _ => None,
        })
    }

    fn finish_time(
        &mut self,
        mut r: String,
        fold: u8,
        tz: Option<&Value>,
    ) -> Result<Option<String>, PyErr> {
        if fold != 0 {
            r.push_str(", fold=1");
        }
        if let Some(tz) = tz {
            if !matches!(tz, Value::None) {
                let _ = write!(r, ", tzinfo={}", self.of(tz)?);
            }
        }
        r.push(')');
        Ok(Some(r))
    }

    /// `str()` of objects whose `__str__` differs from their `__repr__`.
    fn object_str(&mut self, o: &Object) -> Result<Option<String>, PyErr> {
        let Some(g) = o.global() else { return Ok(None) };
        if o.construct != Construct::Reduce {
            return Ok(None);
        }
        let args = o.args_slice();
        if exception_name(g, args).is_some() {
            let name = exception_name(g, args).unwrap_or_default();
            let args = exception_args(g, args);
            let lenient = |v: &Value| py_str_lenient(v);
            if is_oserror_family(&name) && (2..=5).contains(&o.args_slice().len()) {
                let full = o.args_slice();
                let head = format!("[Errno {}] {}", lenient(&full[0]), lenient(&full[1]));
                let filename = full.get(2).filter(|f| !matches!(f, Value::None));
                return Ok(Some(match filename {
                    Some(f) => match full.get(4).filter(|f| !matches!(f, Value::None)) {
                        Some(f2) if full.len() == 5 => {
                            format!("{head}: {} -> {}", self.of(f)?, self.of(f2)?)
                        }
                        _ => format!("{head}: {}", self.of(f)?),
                    },
                    None => head,
                }));
            }
            return Ok(Some(match args {
                [] => String::new(),
                [one] if name == "KeyError" => self.of(one)?,
                [one] => py_str(one)?,
                many => self.of(&Value::tuple(many.to_vec()))?,
            }));
        }
        let (m, n): (&str, &str) = (&g.module, &g.name);
        Ok(match (m, n) {
            ("decimal" | "_decimal" | "_pydecimal", "Decimal") => match args {
                [Value::Str(s)] => Some(s.to_string_lossy().into_owned()),
                _ => None,
            },
            ("fractions", "Fraction") => fraction(args).map(|(n, d)| {
                if d == BigInt::from(1) {
                    n.to_string()
                } else {
                    format!("{n}/{d}")
                }
            }),
            ("datetime", "timedelta") => timedelta(args).map(|(d, s, us)| {
                let mut r = format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
                if d != 0 {
                    r = format!("{d} day{}, {r}", if d.abs() != 1 { "s" } else { "" });
                }
                if us != 0 {
                    let _ = write!(r, ".{us:06}");
                }
                r
            }),
            ("datetime", "date") => match args {
                [s] => state_bytes(s).filter(|b| b.len() == 4).map(|b| {
                    format!(
                        "{:04}-{:02}-{:02}",
                        (b[0] as u32) << 8 | b[1] as u32,
                        b[2],
                        b[3]
                    )
                }),
                _ => None,
            },
            ("datetime", "datetime") => match args {
                [s] => state_bytes(s).filter(|b| b.len() == 10).map(|b| {
                    let us = (b[7] as u32) << 16 | (b[8] as u32) << 8 | b[9] as u32;
                    let mut r = format!(
                        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                        (b[0] as u32) << 8 | b[1] as u32,
                        b[2] & 0x7F,
                        b[3],
                        b[4],
                        b[5],
                        b[6]
                    );
                    if us != 0 {
                        let _ = write!(r, ".{us:06}");
                    }
                    r
                }),
                _ => None,
            },
            ("datetime", "time") => match args {
                [s] => state_bytes(s).filter(|b| b.len() == 6).map(|b| {
                    let us = (b[3] as u32) << 16 | (b[4] as u32) << 8 | b[5] as u32;
                    let mut r = format!("{:02}:{:02}:{:02}", b[0] & 0x7F, b[1], b[2]);
                    if us != 0 {
                        let _ = write!(r, ".{us:06}");
                    }
                    r
                }),
                _ => None,
            },
            _ => None,
        })
    }
}

fn py_str_lenient(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string_lossy().into_owned(),
        other => repr(other),
    }
}

/// The pairs of `SETITEM`s applied to a new dict: a later duplicate key
/// replaces the value and keeps the first key and its place. `None` if a
/// key is unhashable (unpickling would fail).
fn dict_pairs(items: &[(Value, Value)]) -> Option<Vec<(Value, Value)>> {
    let mut d = crate::value::Dict::default();
    for (k, v) in items {
        d.insert(crate::value::Key::new(k.clone()).ok()?, v.clone());
    }
    Some(
        d.iter()
            .map(|(k, v)| (k.value().clone(), v.clone()))
            .collect(),
    )
}

/// `Counter.most_common()`: by count, largest first, ties in insertion
/// order (a stable `sorted(…, reverse=True)`); insertion order if the
/// counts are not orderable, as `Counter.__repr__` falls back to.
fn most_common(items: Vec<(Value, Value)>) -> Vec<(Value, Value)> {
    // Sort (count, -index) in reverse: equal counts then come in index
    // order, exactly as the stable sort by count alone leaves them.
    let mut keys: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, (_, c))| Value::tuple(vec![c.clone(), Value::Int(-(i as i64))]))
        .collect();
    if crate::ord::sort(&mut keys, true).is_err() {
        return items;
    }
    let mut slots: Vec<Option<(Value, Value)>> = items.into_iter().map(Some).collect();
    keys.iter()
        .filter_map(|k| match k {
            Value::Tuple(t) => t[1].as_i64(),
            _ => None,
        })
        .filter_map(|i| slots[(-i) as usize].take())
        .collect()
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f == '_' || f.is_alphabetic())
        && c.all(|x| x == '_' || x.is_alphanumeric())
}

fn seq_items(v: &Value) -> Vec<Value> {
    match v {
        Value::List(l) => l.read_recursive().items.clone(),
        Value::Tuple(t) => t.items.clone(),
        _ => Vec::new(),
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        other => other.as_i64().map(|i| i as f64),
    }
}

/// The `(name, value)` pairs of a `BUILD` state that is a dict, or a
/// `(dict, slotstate)` pair.
fn state_dict(state: &Option<Value>) -> Option<Vec<(Value, Value)>> {
    let pairs = |d: &Value| -> Option<Vec<(Value, Value)>> {
        match d {
            Value::Dict(d) => Some(
                d.read_recursive()
                    .iter()
                    .map(|(k, v)| (k.value().clone(), v.clone()))
                    .collect(),
            ),
            Value::None => Some(Vec::new()),
            _ => None,
        }
    };
    match state.as_ref()? {
        d @ Value::Dict(_) => pairs(d),
        Value::Tuple(t) if t.len() == 2 => {
            let mut a = pairs(&t[0])?;
            a.extend(pairs(&t[1])?);
            Some(a)
        }
        _ => None,
    }
}

/// The byte state of a `datetime` object: `bytes`, a latin-1 `str`
/// (Python 2 pickles), or `_codecs.encode(str, 'latin1')` (protocol 2).
fn state_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Bytes(b) => Some(b.to_vec()),
        Value::Str(s) => s.code_points().map(|c| u8::try_from(c).ok()).collect(),
        Value::Object(o) => {
            let o = o.read_recursive();
            match (o.global(), o.args_slice()) {
                (Some(g), [s @ Value::Str(_), Value::Str(enc)])
                    if g.is("_codecs", "encode") && enc.as_str() == Some("latin1") =>
                {
                    state_bytes(s)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

const TD_MAX_DAYS: i128 = 999_999_999;

fn timedelta_of(o: &Object) -> Option<(i128, i128, i128)> {
    match o.global() {
        Some(g) if g.is("datetime", "timedelta") && o.construct == Construct::Reduce => {
            timedelta(o.args_slice())
        }
        _ => None,
    }
}

/// `timedelta(days, seconds, microseconds)` normalized, or `None` if not
/// integers or out of range.
fn timedelta(args: &[Value]) -> Option<(i128, i128, i128)> {
    if args.len() > 3 {
        return None;
    }
    let mut v = [0i128; 3];
    for (slot, a) in v.iter_mut().zip(args) {
        *slot = match a {
            Value::Int(i) => *i as i128,
            Value::Bool(b) => *b as i128,
            _ => return None,
        };
    }
    let us_total = (v[0] * 86_400 + v[1])
        .checked_mul(1_000_000)?
        .checked_add(v[2])?;
    let (secs, us) = us_total.div_mod_floor(&1_000_000);
    let (days, s) = secs.div_mod_floor(&86_400);
    if days.abs() > TD_MAX_DAYS {
        return None;
    }
    Some((days, s, us))
}

/// `Fraction` reduce args: `('n/d',)` (3.8–3.11) or `(n, d)` (3.12+),
/// normalized as `Fraction` does.
pub(crate) fn fraction(args: &[Value]) -> Option<(BigInt, BigInt)> {
    let (n, d) = match args {
        [Value::Str(s)] => {
            let s = s.as_str()?.trim();
            let (a, b) = s.split_once('/').unwrap_or((s, "1"));
            let ok = |x: &str, signed: bool| {
                let x = if signed {
                    x.strip_prefix(['+', '-']).unwrap_or(x)
                } else {
                    x
                };
                !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit())
            };
            if !ok(a.trim(), true) || !ok(b.trim(), false) {
                return None;
            }
            (
                a.trim().parse::<BigInt>().ok()?,
                b.trim().parse::<BigInt>().ok()?,
            )
        }
        [n, d] => (n.to_bigint()?, d.to_bigint()?),
        _ => return None,
    };
    if d.is_zero() {
        return None;
    }
    let g = n.gcd(&d);
    let (mut n, mut d) = (n / &g, d / &g);
    if d.sign() == Sign::Minus {
        n = -n;
        d = -d;
    }
    let _ = d.is_positive();
    Some((n, d))
}

enum ArrItem {
    I(BigInt),
    F(f64),
    C(u32),
}

/// The machine format code of an `array` typecode on Linux x86-64.
fn native_mformat(tc: u8) -> Option<i64> {
    Some(match tc {
        b'b' => 1,
        b'B' => 0,
        b'h' => 4,
        b'H' => 2,
        b'i' => 8,
        b'I' => 6,
        b'l' | b'q' => 12,
        b'L' | b'Q' => 10,
        b'f' => 14,
        b'd' => 16,
        b'u' | b'w' => 20,
        _ => return None,
    })
}

/// Decodes `array` items per `array._array_reconstructor`'s machine format.
fn decode_mformat(m: i64, b: &[u8]) -> Option<Vec<ArrItem>> {
    let (size, signed, big, kind) = match m {
        0 => (1, false, false, 'i'),
        1 => (1, true, false, 'i'),
        2..=13 => {
            let k = m - 2;
            (2usize << (k / 4), (k / 2) % 2 == 1, k % 2 == 1, 'i')
        }
        14 => (4, false, false, 'f'),
        15 => (4, false, true, 'f'),
        16 => (8, false, false, 'f'),
        17 => (8, false, true, 'f'),
        18 => (2, false, false, 'u'),
        19 => (2, false, true, 'u'),
        20 => (4, false, false, 'c'),
        21 => (4, false, true, 'c'),
        _ => return None,
    };
    if b.len() % size != 0 {
        return None;
    }
    if kind == 'u' {
        // UTF-16: decode surrogate pairs.
        let units: Vec<u16> = b
            .chunks(2)
            .map(|c| {
                if big {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            })
            .collect();
        return Some(
            char::decode_utf16(units)
                .map(|r| {
                    ArrItem::C(
                        r.map(|c| c as u32)
                            .unwrap_or_else(|e| e.unpaired_surrogate() as u32),
                    )
                })
                .collect(),
        );
    }
    let mut items = Vec::with_capacity(b.len() / size);
    for chunk in b.chunks(size) {
        let mut buf = [0u8; 8];
        if big {
            for (i, &x) in chunk.iter().rev().enumerate() {
                buf[i] = x;
            }
        } else {
            buf[..size].copy_from_slice(chunk);
        }
        let raw = u64::from_le_bytes(buf);
        items.push(match kind {
            'f' if size == 4 => ArrItem::F(f32::from_bits(raw as u32) as f64),
            'f' => ArrItem::F(f64::from_bits(raw)),
            'c' => ArrItem::C(raw as u32),
            _ => {
                let bits = size * 8;
                if signed && bits < 64 && raw >> (bits - 1) & 1 == 1 {
                    ArrItem::I(BigInt::from(raw as i64 - (1i64 << bits)))
                } else if signed {
                    ArrItem::I(BigInt::from(raw as i64))
                } else {
                    ArrItem::I(BigInt::from(raw))
                }
            }
        });
    }
    Some(items)
}

/// Built-in exception classes (plus the standard-library ones the manager
/// protocol carries), by `module.name`.
const BUILTIN_EXCEPTIONS: &[&str] = &[
    "BaseException",
    "Exception",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BlockingIOError",
    "BrokenPipeError",
    "BufferError",
    "ChildProcessError",
    "ConnectionAbortedError",
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "EOFError",
    "FileExistsError",
    "FileNotFoundError",
    "FloatingPointError",
    "GeneratorExit",
    "ImportError",
    "IndentationError",
    "IndexError",
    "InterruptedError",
    "IsADirectoryError",
    "KeyError",
    "KeyboardInterrupt",
    "LookupError",
    "MemoryError",
    "ModuleNotFoundError",
    "NameError",
    "NotADirectoryError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PermissionError",
    "ProcessLookupError",
    "RecursionError",
    "ReferenceError",
    "RuntimeError",
    "StopAsyncIteration",
    "StopIteration",
    "SystemError",
    "SystemExit",
    "TabError",
    "TimeoutError",
    "TypeError",
    "UnboundLocalError",
    "ValueError",
    "ZeroDivisionError",
    "Warning",
    "UserWarning",
    "DeprecationWarning",
    "PendingDeprecationWarning",
    "SyntaxWarning",
    "RuntimeWarning",
    "FutureWarning",
    "ImportWarning",
    "UnicodeWarning",
    "BytesWarning",
    "ResourceWarning",
    "EncodingWarning",
    "IOError",
    "EnvironmentError",
];

const OTHER_EXCEPTIONS: &[(&str, &str)] = &[
    ("_queue", "Empty"),
    ("queue", "Empty"),
    ("queue", "Full"),
    ("threading", "BrokenBarrierError"),
    ("multiprocessing.managers", "RemoteError"),
    ("multiprocessing.context", "TimeoutError"),
    ("multiprocessing.context", "AuthenticationError"),
    ("multiprocessing.context", "BufferTooShort"),
    ("multiprocessing.context", "ProcessError"),
    ("multiprocessing", "AuthenticationError"),
    ("multiprocessing", "TimeoutError"),
    ("asyncio.exceptions", "CancelledError"),
    ("concurrent.futures._base", "CancelledError"),
];

fn is_oserror_family(name: &str) -> bool {
    matches!(
        name,
        "OSError"
            | "BlockingIOError"
            | "BrokenPipeError"
            | "ChildProcessError"
            | "ConnectionAbortedError"
            | "ConnectionError"
            | "ConnectionRefusedError"
            | "ConnectionResetError"
            | "FileExistsError"
            | "FileNotFoundError"
            | "InterruptedError"
            | "IsADirectoryError"
            | "NotADirectoryError"
            | "PermissionError"
            | "ProcessLookupError"
            | "TimeoutError"
    )
}

/// The class name CPython's `BaseException.__repr__` writes for an exception
/// built by `REDUCE(g, args)`, or `None` if `g` is not a known exception.
/// `OSError(errno, …)` becomes the errno's subclass (Linux numbering), as
/// `OSError.__new__` does.
fn exception_name(g: &Global, args: &[Value]) -> Option<String> {
    let name: &str = &g.name;
    let known = (&*g.module == "builtins" && BUILTIN_EXCEPTIONS.contains(&name))
        || OTHER_EXCEPTIONS.iter().any(|(m, n)| g.is(m, n));
    if !known {
        return None;
    }
    let name = match name {
        "IOError" | "EnvironmentError" => "OSError",
        n => n,
    };
    if name == "OSError" && (2..=5).contains(&args.len()) {
        if let Some(errno) = args[0]
            .as_i64()
            .filter(|_| !matches!(args[0], Value::Bool(_)))
        {
            let sub = match errno {
                11 | 114 | 115 => Some("BlockingIOError"),
                10 => Some("ChildProcessError"),
                32 | 108 => Some("BrokenPipeError"),
                103 => Some("ConnectionAbortedError"),
                111 => Some("ConnectionRefusedError"),
                104 => Some("ConnectionResetError"),
                17 => Some("FileExistsError"),
                2 => Some("FileNotFoundError"),
                21 => Some("IsADirectoryError"),
                20 => Some("NotADirectoryError"),
                4 => Some("InterruptedError"),
                1 | 13 => Some("PermissionError"),
                3 => Some("ProcessLookupError"),
                110 => Some("TimeoutError"),
                _ => None,
            };
            if let Some(s) = sub {
                return Some(s.to_string());
            }
        }
    }
    Some(name.to_string())
}

/// The exception's `args` after construction: `OSError` keeps only
/// `(errno, strerror)` when a filename is given.
fn exception_args<'a>(g: &Global, args: &'a [Value]) -> &'a [Value] {
    let name = exception_name(g, args).unwrap_or_default();
    if is_oserror_family(&name) && (3..=5).contains(&args.len()) && !matches!(args[2], Value::None)
    {
        &args[..2]
    } else {
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats() {
        for (f, s) in [
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456789012345.6, "123456789012345.6"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (-0.0, "-0.0"),
            (5e-324, "5e-324"),
            (1.0, "1.0"),
            (1e15, "1000000000000000.0"),
            (1.5e300, "1.5e+300"),
            (-2.5e-7, "-2.5e-07"),
        ] {
            assert_eq!(float_repr(f), s, "{f:e}");
        }
    }

    #[test]
    fn complexes() {
        assert_eq!(complex_repr(0.0, 1.0), "1j");
        assert_eq!(complex_repr(1.0, 2.0), "(1+2j)");
        assert_eq!(complex_repr(-0.0, -1.0), "(-0-1j)");
        assert_eq!(complex_repr(1.5, 0.0), "(1.5+0j)");
        assert_eq!(complex_repr(f64::INFINITY, f64::NAN), "(inf+nanj)");
    }

    #[test]
    fn strs_and_bytes() {
        assert_eq!(str_repr(&PyStr::new("it's")), "\"it's\"");
        assert_eq!(str_repr(&PyStr::new("'\"")), "'\\'\"'");
        assert_eq!(
            str_repr(&PyStr::new("a\tb\u{7f}\u{a0}\u{e9}")),
            "'a\\tb\\x7f\\xa0\u{e9}'"
        );
        assert_eq!(
            str_repr(&PyStr::from_code_points([0xDC80]).unwrap()),
            "'\\udc80'"
        );
        assert_eq!(bytes_repr(b"\x00'a\\\xff"), "b\"\\x00'a\\\\\\xff\"");
    }
}
