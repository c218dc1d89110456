//! A bridge between serde and the Python value model.
//!
//! [`to_value`] turns any [`Serialize`] type into a [`Value`] that can be
//! stored in a manager or pickled for CPython; [`from_value`] reads any
//! [`Deserialize`](serde::Deserialize) type back out of a [`Value`]. The
//! mapping follows `serde_json`'s conventions, with Python's types in place
//! of JSON's:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use mpmanager_pickle::{from_value, to_value, Value};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Point { x: i64, y: f64 }
//!
//! let v = to_value(&Point { x: 1, y: 2.5 }).unwrap();
//! // The value is the dict {'x': 1, 'y': 2.5}.
//! assert_eq!(v.type_name(), "dict");
//! let Value::Dict(d) = &v else { unreachable!() };
//! let keys: Vec<_> = d.read().keys().map(|k| k.value().as_str().unwrap().to_owned()).collect();
//! assert_eq!(keys, ["x", "y"]);
//!
//! let p: Point = from_value(&v).unwrap();
//! assert_eq!(p, Point { x: 1, y: 2.5 });
//! ```
//!
//! # Rust to Python ([`to_value`])
//!
//! | serde data model                          | Python value                                   |
//! |-------------------------------------------|------------------------------------------------|
//! | `bool`                                    | `bool`                                         |
//! | `i8`–`i64`, `u8`–`u32`                    | `int` ([`Value::Int`])                         |
//! | `u64`, `i128`, `u128`                     | `int` ([`Value::Int`], or [`Value::BigInt`] beyond `i64`) |
//! | `f32`, `f64`                              | `float` (bit-exact, NaN and infinities included) |
//! | `char`, `str`, `String`                   | `str`                                          |
//! | bytes (`serialize_bytes`, `serde_bytes`)  | `bytes`                                        |
//! | `None`, `()`, unit struct                 | `None`                                         |
//! | `Some(x)`                                 | `x`                                            |
//! | newtype struct `N(x)`                     | `x`                                            |
//! | sequence (`Vec`, `HashSet`, …)            | `list`                                         |
//! | tuple, tuple struct                       | `tuple`                                        |
//! | map (`HashMap`, `BTreeMap`, …)            | `dict` (keys must be hashable: not `list`/`dict`/`set`) |
//! | struct                                    | `dict` with `str` keys in field order          |
//! | unit variant `E::A`                       | `'A'`                                          |
//! | newtype variant `E::A(x)`                 | `{'A': x}`                                     |
//! | tuple variant `E::A(x, y)`                | `{'A': (x, y)}`                                |
//! | struct variant `E::A { f: x }`            | `{'A': {'f': x}}`                              |
//! | a [`Value`] (e.g. a field of type `Value`) | that value itself, unchanged (by reference, as Python assignment) |
//!
//! As in JSON, `Some(None)` and `Some(())` become `None` and read back as
//! `None`.
//!
//! # Python to Rust ([`from_value`])
//!
//! | Rust type asks for        | accepted Python values                                          |
//! |---------------------------|-----------------------------------------------------------------|
//! | `bool`                    | `bool` only (an `int` is refused)                               |
//! | any integer type          | `int` within the type's range; `bool` as 0/1 (`bool` is an `int` subclass in Python) |
//! | `f32`, `f64`              | `float`; `int` and `bool` converted as `float(x)` does (an `int` too large for a float is refused) |
//! | `char`                    | `str` of exactly one character                                  |
//! | `String`, `&str`          | `str` without lone surrogates                                   |
//! | bytes, byte buf           | `bytes`, `bytearray`, or a `list`/`tuple` of ints               |
//! | `Option<T>`               | `None` → `None`, anything else → `Some(T)`                      |
//! | `()`, unit struct         | `None`                                                          |
//! | sequence, tuple           | `list`, `tuple`, `set`, `frozenset`; also `bytes`/`bytearray` (as ints) |
//! | map                       | `dict`                                                          |
//! | struct                    | `dict` (by field name), or a `list`/`tuple` (by position)       |
//! | enum                      | `str` for a unit variant; a one-key `dict` `{variant: payload}` for any variant |
//! | [`Value`]                 | anything: the value itself, unchanged (shared, not copied)       |
//! | self-describing (`deserialize_any`, e.g. `serde_json::Value`, untagged enums) | see below |
//!
//! `deserialize_any` maps `None` → unit, `bool`, `int` → `i64` (or `i128`/`u128`
//! when larger; beyond that, an error), `float` → `f64`, `str` → string,
//! `bytes`/`bytearray` → bytes, `list`/`tuple`/`set`/`frozenset` → sequence,
//! `dict` → map. The types serde has no notion of are given as a
//! *descriptive map* (see below).
//!
//! # Descriptive maps
//!
//! `complex`, `slice`, globals (classes, functions) and opaque objects have no
//! serde counterpart. Where a self-describing form is wanted (the
//! [`Serialize`] impl of [`Value`], e.g. to print a value as JSON, and
//! `deserialize_any`), they are described as a map, read-only (reading such a
//! map back gives a `dict`, not the original object):
//!
//! | Python value                     | described as                                                     |
//! |----------------------------------|------------------------------------------------------------------|
//! | `complex(re, im)`                | `{"$complex": (re, im)}`                                         |
//! | `slice(a, b, c)`                 | `{"$slice": (a, b, c)}`                                          |
//! | global `module.name`             | `{"$global": (module, name)}`                                    |
//! | opaque object                    | `{"$object": (module, name), "construct": "reduce" \| "newobj" \| "newobj_ex", "args": (…), "kwargs": {…}, "state": …, "list_items": […], "dict_items": [(k, v), …]}` (the last four only when present); `$object` holds the callable itself when it is not a global |
//!
//! # Limits and errors
//!
//! * Python nesting deeper than [`MAX_DEPTH`] levels (an enum variant's
//!   `{name: payload}` dict counts as one) fails with
//!   [`SerdeError::TooDeep`]: CPython's own pickler stops at about the same
//!   depth. So does a Rust type that reads the same value through more than
//!   [`MAX_DEPTH`] `Option`s or newtypes in a row (e.g. the self-recursive
//!   `struct A(Option<Box<A>>)`, which would otherwise recurse forever).
//!   Deep structures never overflow the stack: the walk grows it as needed.
//! * A container that contains itself (`l = []; l.append(l)`) fails with
//!   [`SerdeError::Recursive`] instead of looping; a container shared by
//!   several places is simply read (or written) once per place.
//! * A `str` holding lone surrogates (which Python allows and pickle carries)
//!   cannot become a Rust string: [`SerdeError::Surrogates`].
//! * Ints beyond `i128`/`u128` cannot be handed to serde at all.
//!
//! Nothing here panics.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use num_bigint::BigInt;
use num_traits::ToPrimitive;
use rustc_hash::FxHashSet;
use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use serde::ser::{self, Serialize, SerializeMap as _, SerializeSeq as _, SerializeTuple as _};

use crate::hash::{RED_ZONE, STACK_GROWTH};
use crate::value::{shared, Construct, Dict, Global, Key, Value};

/// The deepest nesting [`to_value`], [`from_value`] and the serde impls of
/// [`Value`] accept ([`limits::MAX_DEPTH`](crate::limits::MAX_DEPTH)).
pub const MAX_DEPTH: usize = crate::limits::MAX_DEPTH;

/// The newtype-struct name through which a [`Value`] hands itself over to
/// this module's serializer and deserializer unchanged.
const MAGIC: &str = "$mpmanager_pickle::Value";

thread_local! {
    /// A `Value` on its way from `Value::serialize` into `to_value`.
    static SER_HANDOFF: RefCell<Option<Value>> = const { RefCell::new(None) };
    /// A `Value` on its way from `from_value` into `Value::deserialize`.
    static DE_HANDOFF: RefCell<Option<Value>> = const { RefCell::new(None) };
}

fn grow<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, STACK_GROWTH, f)
}

/// Why a conversion between a Rust type and a [`Value`] failed.
///
/// Messages name Python types, as Python would:
///
/// ```
/// use mpmanager_pickle::{from_value, Value};
/// let e = from_value::<i32>(&Value::str("7")).unwrap_err();
/// assert_eq!(e.to_string(), "expected an int, found 'str'");
/// let e = from_value::<u8>(&Value::Int(300)).unwrap_err();
/// assert_eq!(e.to_string(), "int 300 out of range for u8");
/// ```
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum SerdeError {
    /// A value of another Python type than the Rust type needs.
    #[error("expected {expected}, found '{found}'")]
    Type {
        /// What was expected, e.g. `an int`.
        expected: Cow<'static, str>,
        /// The Python type name of what was found, e.g. `str`.
        found: String,
    },
    /// An `int` (or a `float` conversion) that does not fit the Rust type.
    #[error("int {value} out of range for {target}")]
    OutOfRange {
        /// The value (abbreviated when very long).
        value: String,
        /// The Rust type, e.g. `u8`.
        target: &'static str,
    },
    /// A sequence of the wrong length for a tuple or tuple struct.
    #[error("expected {expected} elements, found a {found} of {len}")]
    Length {
        /// How many elements the Rust type takes.
        expected: usize,
        /// The Python type name of the sequence.
        found: String,
        /// Its length.
        len: usize,
    },
    /// A map key (or set member) that Python cannot hash, e.g. a `list`.
    #[error("unhashable dict key: {0}")]
    Unhashable(String),
    /// A `str` with lone surrogates, which no Rust string can hold.
    #[error("str contains lone surrogates and cannot be a Rust string: '{0}'")]
    Surrogates(String),
    /// A container that contains itself.
    #[error("recursive structure: a '{0}' contains itself")]
    Recursive(String),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    /// Any other error, e.g. from a `Deserialize` impl (`missing field `x``).
    #[error("{0}")]
    Custom(String),
}

impl ser::Error for SerdeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerdeError::Custom(msg.to_string())
    }
}

impl de::Error for SerdeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerdeError::Custom(msg.to_string())
    }
}

fn type_err(expected: impl Into<Cow<'static, str>>, found: &Value) -> SerdeError {
    SerdeError::Type {
        expected: expected.into(),
        found: found.type_name(),
    }
}

/// An int's decimal digits, abbreviated when very long.
fn int_text(b: &BigInt) -> String {
    let s = b.to_string();
    if s.len() <= 50 {
        s
    } else {
        format!(
            "{}...({} digits)",
            &s[..20],
            s.trim_start_matches('-').len()
        )
    }
}

fn surrogates(s: &crate::value::PyStr) -> SerdeError {
    let text = s.code_points().map(|c| match char::from_u32(c) {
        Some(ch) => ch.to_string(),
        None => format!("\\u{c:04x}"),
    });
    let mut out = String::new();
    for (i, t) in text.enumerate() {
        if i == 40 {
            out.push_str("...");
            break;
        }
        out.push_str(&t);
    }
    SerdeError::Surrogates(out)
}

// ---------------------------------------------------------------------------
// Snapshots of containers (no lock is held while user code runs).

fn seq_items(v: &Value) -> Option<Vec<Value>> {
    Some(match v {
        Value::List(l) => l.read_recursive().items.clone(),
        Value::Tuple(t) => t.items.clone(),
        Value::Set(s) => s
            .read_recursive()
            .iter()
            .map(|k| k.value().clone())
            .collect(),
        Value::FrozenSet(s) => s.iter().map(|k| k.value().clone()).collect(),
        _ => return None,
    })
}

fn byte_items(v: &Value) -> Option<Vec<Value>> {
    Some(match v {
        Value::Bytes(b) => b.iter().map(|&x| Value::Int(x as i64)).collect(),
        Value::ByteArray(b) => b
            .read_recursive()
            .iter()
            .map(|&x| Value::Int(x as i64))
            .collect(),
        _ => return None,
    })
}

fn dict_pairs(v: &Value) -> Option<Vec<(Value, Value)>> {
    match v {
        Value::Dict(d) => Some(
            d.read_recursive()
                .iter()
                .map(|(k, v)| (k.value().clone(), v.clone()))
                .collect(),
        ),
        _ => None,
    }
}

fn global_tuple(g: &Global) -> Value {
    Value::tuple(vec![Value::str(&g.module), Value::str(&g.name)])
}

/// The descriptive map of a `complex`, `slice`, global or opaque object
/// (see the module docs); `None` for any other value.
fn describe(v: &Value) -> Option<Value> {
    let mut d = Dict::default();
    let mut put = |k: &str, v: Value| {
        d.insert(Key::str(k), v);
    };
    match v {
        Value::Complex(re, im) => put(
            "$complex",
            Value::tuple(vec![Value::Float(*re), Value::Float(*im)]),
        ),
        Value::Slice(s) => put(
            "$slice",
            Value::tuple(vec![s.start.clone(), s.stop.clone(), s.step.clone()]),
        ),
        Value::Global(g) => put("$global", global_tuple(g)),
        Value::Object(o) => {
            let o = o.read_recursive();
            put(
                "$object",
                o.global().map_or_else(|| o.callable.clone(), global_tuple),
            );
            #[allow(unreachable_patterns)]
            let construct = match o.construct {
                Construct::Reduce => "reduce",
                Construct::NewObj => "newobj",
                Construct::NewObjEx => "newobj_ex",
                _ => "other",
            };
            put("construct", Value::str(construct));
            put("args", o.args.clone());
            if let Some(k) = &o.kwargs {
                put("kwargs", k.clone());
            }
            if let Some(s) = &o.state {
                put("state", s.clone());
            }
            if !o.list_items.is_empty() {
                put("list_items", Value::list(o.list_items.clone()));
            }
            if !o.dict_items.is_empty() {
                let items = o
                    .dict_items
                    .iter()
                    .map(|(k, v)| Value::tuple(vec![k.clone(), v.clone()]))
                    .collect();
                put("dict_items", Value::list(items));
            }
        }
        _ => return None,
    }
    Some(Value::Dict(shared(d)))
}

/// The containers currently being walked, by identity, to detect cycles.
#[derive(Default)]
struct Active(RefCell<FxHashSet<usize>>);

/// Removes a container from [`Active`] when its walk ends.
struct ActiveGuard<'c> {
    active: &'c Active,
    id: Option<usize>,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.active.0.borrow_mut().remove(&id);
        }
    }
}

impl Active {
    /// Marks `v` as being walked; fails if it already is (a cycle). Only
    /// mutable containers and objects can close a cycle.
    fn enter(&self, v: &Value) -> Result<ActiveGuard<'_>, SerdeError> {
        let id = match v {
            Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::Object(_) => v.identity(),
            _ => None,
        };
        if let Some(id) = id {
            if !self.0.borrow_mut().insert(id) {
                return Err(SerdeError::Recursive(v.type_name()));
            }
        }
        Ok(ActiveGuard { active: self, id })
    }
}

// ---------------------------------------------------------------------------
// Rust -> Value

/// Converts any serializable value to a Python [`Value`] (see the
/// [module docs](self) for the mapping).
///
/// ```
/// use std::collections::BTreeMap;
/// use mpmanager_pickle::{hash::py_eq, to_value, Value};
///
/// let m: BTreeMap<&str, (i32, Option<bool>)> = [("a", (1, None))].into();
/// let v = to_value(&m).unwrap();
/// let expected = Value::dict(vec![(
///     Value::str("a"),
///     Value::tuple(vec![Value::Int(1), Value::None]),
/// )]).unwrap();
/// assert!(py_eq(&v, &expected).unwrap());
///
/// // u128 beyond i64 becomes a big int.
/// assert_eq!(to_value(&u128::MAX).unwrap().to_bigint().unwrap().to_string(),
///            u128::MAX.to_string());
/// ```
///
/// Fails on a map key Python cannot hash ([`SerdeError::Unhashable`]),
/// nesting deeper than [`MAX_DEPTH`], or an error of the type's own
/// `Serialize` impl.
pub fn to_value<T: Serialize + ?Sized>(v: &T) -> Result<Value, SerdeError> {
    to_value_at(v, 0)
}

fn to_value_at<T: Serialize + ?Sized>(v: &T, depth: usize) -> Result<Value, SerdeError> {
    if depth > MAX_DEPTH {
        return Err(SerdeError::TooDeep(MAX_DEPTH));
    }
    grow(|| v.serialize(ValueSerializer { depth }))
}

fn variant_dict(variant: &'static str, payload: Value) -> Value {
    let mut d = Dict::default();
    d.insert(Key::str(variant), payload);
    Value::Dict(shared(d))
}

fn int_u64(v: u64) -> Value {
    match i64::try_from(v) {
        Ok(i) => Value::Int(i),
        Err(_) => Value::from_bigint(BigInt::from(v)),
    }
}

struct ValueSerializer {
    depth: usize,
}

/// Collects a `list` or `tuple` (optionally wrapped as an enum variant).
struct SeqSerializer {
    items: Vec<Value>,
    depth: usize,
    tuple: bool,
    variant: Option<&'static str>,
}

impl SeqSerializer {
    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerdeError> {
        self.items.push(to_value_at(v, self.depth + 1)?);
        Ok(())
    }
    fn finish(self) -> Value {
        let v = if self.tuple {
            Value::tuple(self.items)
        } else {
            Value::list(self.items)
        };
        match self.variant {
            Some(name) => variant_dict(name, v),
            None => v,
        }
    }
}

/// Collects a `dict` (optionally wrapped as an enum variant).
struct MapSerializer {
    dict: Dict,
    key: Option<Key>,
    depth: usize,
    variant: Option<&'static str>,
}

impl MapSerializer {
    fn finish(self) -> Value {
        let MapSerializer { dict, variant, .. } = self;
        let v = Value::Dict(shared(dict));
        match variant {
            Some(name) => variant_dict(name, v),
            None => v,
        }
    }
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = SerdeError;
    type SerializeSeq = SeqSerializer;
    type SerializeTuple = SeqSerializer;
    type SerializeTupleStruct = SeqSerializer;
    type SerializeTupleVariant = SeqSerializer;
    type SerializeMap = MapSerializer;
    type SerializeStruct = MapSerializer;
    type SerializeStructVariant = MapSerializer;

    fn serialize_bool(self, v: bool) -> Result<Value, SerdeError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, SerdeError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, SerdeError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, SerdeError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, SerdeError> {
        Ok(Value::Int(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value, SerdeError> {
        Ok(Value::from_bigint(BigInt::from(v)))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, SerdeError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, SerdeError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, SerdeError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, SerdeError> {
        Ok(int_u64(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Value, SerdeError> {
        Ok(Value::from_bigint(BigInt::from(v)))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, SerdeError> {
        Ok(Value::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, SerdeError> {
        Ok(Value::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, SerdeError> {
        Ok(Value::str(v.encode_utf8(&mut [0; 4])))
    }
    fn serialize_str(self, v: &str) -> Result<Value, SerdeError> {
        Ok(Value::str(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, SerdeError> {
        Ok(Value::bytes(v))
    }
    fn serialize_none(self) -> Result<Value, SerdeError> {
        Ok(Value::None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, SerdeError> {
        // Not a level of Python nesting (and Rust data cannot wrap forever).
        grow(|| value.serialize(self))
    }
    fn serialize_unit(self) -> Result<Value, SerdeError> {
        Ok(Value::None)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, SerdeError> {
        Ok(Value::None)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, SerdeError> {
        Ok(Value::str(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Value, SerdeError> {
        if name == MAGIC {
            if let Some(v) = SER_HANDOFF.with(|h| h.borrow_mut().take()) {
                return Ok(v);
            }
        }
        grow(|| value.serialize(self))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, SerdeError> {
        Ok(variant_dict(variant, to_value_at(value, self.depth + 1)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSerializer, SerdeError> {
        Ok(SeqSerializer {
            // Never trust a size hint for a large allocation.
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
            depth: self.depth,
            tuple: false,
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSerializer, SerdeError> {
        Ok(SeqSerializer {
            items: Vec::with_capacity(len.min(4096)),
            depth: self.depth,
            tuple: true,
            variant: None,
        })
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqSerializer, SerdeError> {
        self.serialize_tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqSerializer, SerdeError> {
        // The tuple sits one level down, inside {variant: (...)}.
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(SerdeError::TooDeep(MAX_DEPTH));
        }
        let mut s = ValueSerializer { depth }.serialize_tuple(len)?;
        s.variant = Some(variant);
        Ok(s)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapSerializer, SerdeError> {
        Ok(MapSerializer {
            dict: Dict::default(),
            key: None,
            depth: self.depth,
            variant: None,
        })
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<MapSerializer, SerdeError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<MapSerializer, SerdeError> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(SerdeError::TooDeep(MAX_DEPTH));
        }
        let mut m = ValueSerializer { depth }.serialize_map(None)?;
        m.variant = Some(variant);
        Ok(m)
    }
}

impl ser::SerializeSeq for SeqSerializer {
    type Ok = Value;
    type Error = SerdeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerdeError> {
        self.push(v)
    }
    fn end(self) -> Result<Value, SerdeError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for SeqSerializer {
    type Ok = Value;
    type Error = SerdeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerdeError> {
        self.push(v)
    }
    fn end(self) -> Result<Value, SerdeError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for SeqSerializer {
    type Ok = Value;
    type Error = SerdeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerdeError> {
        self.push(v)
    }
    fn end(self) -> Result<Value, SerdeError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleVariant for SeqSerializer {
    type Ok = Value;
    type Error = SerdeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerdeError> {
        self.push(v)
    }
    fn end(self) -> Result<Value, SerdeError> {
        Ok(self.finish())
    }
}

impl ser::SerializeMap for MapSerializer {
    type Ok = Value;
    type Error = SerdeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerdeError> {
        let k = to_value_at(key, self.depth + 1)?;
        self.key = Some(Key::new(k).map_err(|e| SerdeError::Unhashable(e.to_string()))?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerdeError> {
        let key = self.key.take().ok_or_else(|| {
            SerdeError::Custom("serialize_value called before serialize_key".into())
        })?;
        let v = to_value_at(value, self.depth + 1)?;
        self.dict.insert(key, v);
        Ok(())
    }
    fn end(self) -> Result<Value, SerdeError> {
        Ok(self.finish())
    }
}

impl ser::SerializeStruct for MapSerializer {
    type Ok = Value;
    type Error = SerdeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerdeError> {
        let v = to_value_at(value, self.depth + 1)?;
        self.dict.insert(Key::str(key), v);
        Ok(())
    }
    fn end(self) -> Result<Value, SerdeError> {
        Ok(self.finish())
    }
}

impl ser::SerializeStructVariant for MapSerializer {
    type Ok = Value;
    type Error = SerdeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerdeError> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<Value, SerdeError> {
        Ok(self.finish())
    }
}

// ---------------------------------------------------------------------------
// Value -> any serializer

/// Writes a value with any serde serializer, e.g. as JSON.
///
/// Through [`to_value`] (for instance as a field of a derived struct) the
/// value is passed on unchanged. With any other serializer it is written in
/// serde's data model: `None` → unit, `bool`, `int` → `i64` (`i128`/`u128`
/// when larger; beyond those, an error), `float` → `f64`, `str` → string
/// (an error if it holds lone surrogates), `bytes`/`bytearray` → bytes,
/// `tuple` → tuple, `list`/`set`/`frozenset` → sequence, `dict` → map, and
/// `complex`, `slice`, globals and opaque objects as the descriptive maps of
/// the [module docs](crate::serde_bridge). A container that contains
/// itself, or nesting deeper than [`MAX_DEPTH`], is an error.
///
/// ```
/// use mpmanager_pickle::{from_value, to_value, Value};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Msg { id: u32, payload: Value }
/// // A struct carrying an arbitrary Python value keeps it exactly, even a
/// // frozenset, which has no serde counterpart.
/// let payload = Value::frozenset(vec![Value::Int(1)]).unwrap();
/// let v = to_value(&Msg { id: 7, payload }).unwrap();
/// let back: Msg = from_value(&v).unwrap();
/// assert_eq!(back.payload.type_name(), "frozenset");
/// ```
impl Serialize for Value {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let active = Active::default();
        SER_HANDOFF.with(|h| *h.borrow_mut() = Some(self.clone()));
        let r = serializer.serialize_newtype_struct(
            MAGIC,
            &Walk {
                v: self,
                active: &active,
                depth: 0,
            },
        );
        SER_HANDOFF.with(|h| h.borrow_mut().take());
        r
    }
}

/// A value being written by a foreign serializer, with the cycle and depth
/// bookkeeping of the walk.
struct Walk<'a> {
    v: &'a Value,
    active: &'a Active,
    depth: usize,
}

impl<'a> Walk<'a> {
    fn child(&self, v: &'a Value) -> Walk<'a> {
        Walk {
            v,
            active: self.active,
            depth: self.depth + 1,
        }
    }
}

impl Serialize for Walk<'_> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use ser::Error;
        if self.depth > MAX_DEPTH {
            return Err(S::Error::custom(SerdeError::TooDeep(MAX_DEPTH)));
        }
        grow(|| self.serialize_inner(s))
    }
}

impl Walk<'_> {
    fn serialize_inner<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use ser::Error;
        let v = self.v;
        let _guard = self.active.enter(v).map_err(S::Error::custom)?;
        if let Some(d) = describe(v) {
            return self.child(&d).serialize(s);
        }
        match v {
            Value::None => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::BigInt(b) => {
                if let Some(u) = b.to_u64() {
                    s.serialize_u64(u)
                } else if let Some(i) = b.to_i128() {
                    s.serialize_i128(i)
                } else if let Some(u) = b.to_u128() {
                    s.serialize_u128(u)
                } else {
                    Err(S::Error::custom(SerdeError::OutOfRange {
                        value: int_text(b),
                        target: "serde (i128/u128)",
                    }))
                }
            }
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(p) => match p.as_str() {
                Some(t) => s.serialize_str(t),
                None => Err(S::Error::custom(surrogates(p))),
            },
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::ByteArray(b) => {
                let b = b.read_recursive().clone();
                s.serialize_bytes(&b)
            }
            Value::Tuple(t) => {
                let mut st = s.serialize_tuple(t.len())?;
                for it in t.iter() {
                    st.serialize_element(&self.child(it))?;
                }
                st.end()
            }
            Value::List(_) | Value::Set(_) | Value::FrozenSet(_) => {
                let items = seq_items(v).unwrap_or_default();
                let mut st = s.serialize_seq(Some(items.len()))?;
                for it in &items {
                    st.serialize_element(&self.child(it))?;
                }
                st.end()
            }
            Value::Dict(_) => {
                let pairs = dict_pairs(v).unwrap_or_default();
                let mut m = s.serialize_map(Some(pairs.len()))?;
                for (k, it) in &pairs {
                    m.serialize_entry(&self.child(k), &self.child(it))?;
                }
                m.end()
            }
            // Handled by `describe` above.
            Value::Complex(..) | Value::Slice(_) | Value::Global(_) | Value::Object(_) => {
                Err(S::Error::custom("internal error: undescribed value"))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Value -> Rust

/// Reads any deserializable type out of a Python [`Value`] (see the
/// [module docs](self) for what is accepted).
///
/// ```
/// use std::collections::HashMap;
/// use serde::Deserialize;
/// use mpmanager_pickle::{from_value, Value};
///
/// #[derive(Deserialize, Debug, PartialEq)]
/// enum Shape { Dot, Circle(f64), Rect { w: u32, h: u32 } }
///
/// let v = Value::list(vec![
///     Value::str("Dot"),
///     Value::dict(vec![(Value::str("Circle"), Value::Int(2))]).unwrap(),
/// ]);
/// let shapes: Vec<Shape> = from_value(&v).unwrap();
/// assert_eq!(shapes, [Shape::Dot, Shape::Circle(2.0)]);
///
/// let d = Value::dict(vec![(Value::str("k"), Value::tuple(vec![Value::Int(1)]))]).unwrap();
/// let m: HashMap<String, Vec<i64>> = from_value(&d).unwrap();
/// assert_eq!(m["k"], [1]);
///
/// let e = from_value::<Vec<String>>(&Value::list(vec![Value::Int(1)])).unwrap_err();
/// assert_eq!(e.to_string(), "expected a str, found 'int'");
/// ```
pub fn from_value<T: de::DeserializeOwned>(v: &Value) -> Result<T, SerdeError> {
    let active = Active::default();
    grow(|| {
        T::deserialize(ValueDeserializer {
            v: v.clone(),
            active: &active,
            depth: 0,
            hops: 0,
        })
    })
}

struct ValueDeserializer<'c> {
    v: Value,
    active: &'c Active,
    /// Python nesting depth of `v`.
    depth: usize,
    /// How many times in a row `v` has been re-entered without descending
    /// (`Option`, newtypes): bounded so that a type like
    /// `struct A(Option<Box<A>>)` cannot recurse forever.
    hops: usize,
}

/// Deserializes `v` one level below `depth`, growing the stack as needed.
fn de_child<'de, S: DeserializeSeed<'de>>(
    seed: S,
    v: Value,
    active: &Active,
    depth: usize,
) -> Result<S::Value, SerdeError> {
    let depth = depth + 1;
    if depth > MAX_DEPTH {
        return Err(SerdeError::TooDeep(MAX_DEPTH));
    }
    grow(|| {
        seed.deserialize(ValueDeserializer {
            v,
            active,
            depth,
            hops: 0,
        })
    })
}

impl<'c> ValueDeserializer<'c> {
    /// `f` applied to a deserializer of `v` (this value again, or its
    /// description) at the same depth.
    fn nested<R>(
        &self,
        v: Value,
        f: impl FnOnce(ValueDeserializer<'_>) -> Result<R, SerdeError>,
    ) -> Result<R, SerdeError> {
        let hops = self.hops + 1;
        if hops > MAX_DEPTH {
            return Err(SerdeError::TooDeep(MAX_DEPTH));
        }
        grow(|| {
            f(ValueDeserializer {
                v,
                active: self.active,
                depth: self.depth,
                hops,
            })
        })
    }

    fn int<T>(&self, target: &'static str) -> Result<T, SerdeError>
    where
        T: TryFrom<i64> + for<'b> TryFrom<&'b BigInt>,
    {
        let range = |value: String| SerdeError::OutOfRange { value, target };
        match &self.v {
            Value::Bool(b) => T::try_from(*b as i64).map_err(|_| range(b.to_string())),
            Value::Int(i) => T::try_from(*i).map_err(|_| range(i.to_string())),
            Value::BigInt(b) => T::try_from(&**b).map_err(|_| range(int_text(b))),
            other => Err(type_err("an int", other)),
        }
    }

    fn float(&self) -> Result<f64, SerdeError> {
        match &self.v {
            Value::Float(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            Value::Bool(b) => Ok(*b as u8 as f64),
            Value::BigInt(b) => match b.to_f64() {
                Some(f) if f.is_finite() => Ok(f),
                _ => Err(SerdeError::OutOfRange {
                    value: int_text(b),
                    target: "float",
                }),
            },
            other => Err(type_err("a float", other)),
        }
    }

    fn str_of(&self, expected: &'static str) -> Result<&str, SerdeError> {
        match &self.v {
            Value::Str(s) => s.as_str().ok_or_else(|| surrogates(s)),
            other => Err(type_err(expected, other)),
        }
    }

    fn visit_items<'de, V: Visitor<'de>>(
        &self,
        items: Vec<Value>,
        visitor: V,
    ) -> Result<V::Value, SerdeError> {
        let _guard = self.active.enter(&self.v)?;
        let len = items.len();
        let mut acc = SeqAccess {
            items: items.into_iter(),
            active: self.active,
            depth: self.depth,
        };
        let r = visitor.visit_seq(&mut acc)?;
        let left = acc.items.len();
        if left > 0 {
            return Err(SerdeError::Length {
                expected: len - left,
                found: self.v.type_name(),
                len,
            });
        }
        Ok(r)
    }

    fn visit_dict<'de, V: Visitor<'de>>(
        &self,
        pairs: Vec<(Value, Value)>,
        visitor: V,
    ) -> Result<V::Value, SerdeError> {
        let _guard = self.active.enter(&self.v)?;
        let mut acc = MapAccess {
            pairs: pairs.into_iter(),
            value: None,
            active: self.active,
            depth: self.depth,
        };
        visitor.visit_map(&mut acc)
    }

    fn seq<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        match seq_items(&self.v).or_else(|| byte_items(&self.v)) {
            Some(items) => self.visit_items(items, visitor),
            None => Err(type_err("a list, tuple, set or frozenset", &self.v)),
        }
    }
}

macro_rules! de_int {
    ($($method:ident $visit:ident $t:ty;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
            visitor.$visit(self.int::<$t>(stringify!($t))?)
        }
    )*};
}

impl<'de> Deserializer<'de> for ValueDeserializer<'_> {
    type Error = SerdeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        match &self.v {
            Value::None => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::BigInt(b) => {
                if let Some(u) = b.to_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = b.to_i128() {
                    visitor.visit_i128(i)
                } else if let Some(u) = b.to_u128() {
                    visitor.visit_u128(u)
                } else {
                    Err(SerdeError::OutOfRange {
                        value: int_text(b),
                        target: "serde (i128/u128)",
                    })
                }
            }
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => match s.as_str() {
                Some(t) => visitor.visit_str(t),
                None => Err(surrogates(s)),
            },
            Value::Bytes(b) => visitor.visit_bytes(b),
            Value::ByteArray(b) => {
                let b = b.read_recursive().clone();
                visitor.visit_byte_buf(b)
            }
            Value::Tuple(_) | Value::List(_) | Value::Set(_) | Value::FrozenSet(_) => {
                self.seq(visitor)
            }
            Value::Dict(_) => {
                let pairs = dict_pairs(&self.v).unwrap_or_default();
                self.visit_dict(pairs, visitor)
            }
            Value::Complex(..) | Value::Slice(_) | Value::Global(_) | Value::Object(_) => {
                let _guard = self.active.enter(&self.v)?;
                match describe(&self.v) {
                    Some(d) => self.nested(d, |de| de.deserialize_any(visitor)),
                    None => Err(SerdeError::Custom(
                        "internal error: undescribed value".into(),
                    )),
                }
            }
        }
    }

    de_int! {
        deserialize_i8 visit_i8 i8;
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_i128 visit_i128 i128;
        deserialize_u8 visit_u8 u8;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
        deserialize_u128 visit_u128 u128;
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        match &self.v {
            Value::Bool(b) => visitor.visit_bool(*b),
            other => Err(type_err("a bool", other)),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        visitor.visit_f32(self.float()? as f32)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        visitor.visit_f64(self.float()?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        const EXPECTED: &str = "a str of length 1";
        let s = self.str_of(EXPECTED)?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(SerdeError::Custom(format!(
                "expected {EXPECTED}, found a str of length {}",
                s.chars().count()
            ))),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        visitor.visit_str(self.str_of("a str")?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        match &self.v {
            Value::Bytes(b) => visitor.visit_bytes(b),
            Value::ByteArray(b) => {
                let b = b.read_recursive().clone();
                visitor.visit_byte_buf(b)
            }
            Value::List(_) | Value::Tuple(_) => self.seq(visitor),
            other => Err(type_err("bytes or bytearray", other)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        match &self.v {
            Value::None => visitor.visit_none(),
            _ => {
                let v = self.v.clone();
                self.nested(v, |de| visitor.visit_some(de))
            }
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        match &self.v {
            Value::None => visitor.visit_unit(),
            other => Err(type_err("None", other)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, SerdeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, SerdeError> {
        let v = self.v.clone();
        if name == MAGIC {
            DE_HANDOFF.with(|h| *h.borrow_mut() = Some(v.clone()));
            let r = self.nested(v, |de| visitor.visit_newtype_struct(de));
            DE_HANDOFF.with(|h| h.borrow_mut().take());
            return r;
        }
        self.nested(v, |de| visitor.visit_newtype_struct(de))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        self.seq(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, SerdeError> {
        self.seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, SerdeError> {
        self.seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        match dict_pairs(&self.v) {
            Some(pairs) => self.visit_dict(pairs, visitor),
            None => Err(type_err("a dict", &self.v)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, SerdeError> {
        match &self.v {
            Value::Dict(_) => self.deserialize_map(visitor),
            Value::List(_) | Value::Tuple(_) => self.seq(visitor),
            other => Err(type_err("a dict", other)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, SerdeError> {
        let expected =
            || -> Cow<'static, str> { format!("a str or a single-key dict (enum {name})").into() };
        let (variant, payload) = match &self.v {
            Value::Str(_) => (self.v.clone(), None),
            Value::Dict(d) => {
                let d = d.read_recursive();
                match d.first() {
                    Some((k, v)) if d.len() == 1 => (k.value().clone(), Some(v.clone())),
                    _ => {
                        return Err(SerdeError::Custom(format!(
                            "expected {}, found a dict with {} keys",
                            expected(),
                            d.len()
                        )))
                    }
                }
            }
            other => return Err(type_err(expected(), other)),
        };
        let _guard = self.active.enter(&self.v)?;
        visitor.visit_enum(EnumAccess {
            variant,
            payload,
            active: self.active,
            depth: self.depth,
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        match &self.v {
            Value::Int(i) if *i >= 0 => visitor.visit_u64(*i as u64),
            Value::Bytes(b) => visitor.visit_bytes(b),
            _ => visitor.visit_str(self.str_of("a str")?),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SerdeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'c> {
    items: std::vec::IntoIter<Value>,
    active: &'c Active,
    depth: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_> {
    type Error = SerdeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, SerdeError> {
        match self.items.next() {
            Some(v) => de_child(seed, v, self.active, self.depth).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'c> {
    pairs: std::vec::IntoIter<(Value, Value)>,
    value: Option<Value>,
    active: &'c Active,
    depth: usize,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_> {
    type Error = SerdeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, SerdeError> {
        match self.pairs.next() {
            Some((k, v)) => {
                self.value = Some(v);
                de_child(seed, k, self.active, self.depth).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, SerdeError> {
        match self.value.take() {
            Some(v) => de_child(seed, v, self.active, self.depth),
            None => Err(SerdeError::Custom(
                "map value requested before its key".into(),
            )),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len())
    }
}

struct EnumAccess<'c> {
    variant: Value,
    payload: Option<Value>,
    active: &'c Active,
    depth: usize,
}

impl<'de, 'c> de::EnumAccess<'de> for EnumAccess<'c> {
    type Error = SerdeError;
    type Variant = VariantAccess<'c>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantAccess<'c>), SerdeError> {
        let name = self.variant.clone();
        let v = de_child(seed, self.variant, self.active, self.depth)?;
        Ok((
            v,
            VariantAccess {
                name,
                payload: self.payload,
                active: self.active,
                depth: self.depth,
            },
        ))
    }
}

struct VariantAccess<'c> {
    name: Value,
    payload: Option<Value>,
    active: &'c Active,
    depth: usize,
}

impl VariantAccess<'_> {
    fn need_payload(&self, kind: &'static str) -> Result<Value, SerdeError> {
        match &self.payload {
            Some(p) => Ok(p.clone()),
            None => Err(SerdeError::Type {
                expected: format!(
                    "a single-key dict {{{}: payload}} for a {kind} variant",
                    match self.name.as_str() {
                        Some(n) => format!("'{n}'"),
                        None => self.name.type_name(),
                    }
                )
                .into(),
                found: self.name.type_name(),
            }),
        }
    }

    fn run<R>(
        &self,
        v: Value,
        f: impl FnOnce(ValueDeserializer<'_>) -> Result<R, SerdeError>,
    ) -> Result<R, SerdeError> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(SerdeError::TooDeep(MAX_DEPTH));
        }
        grow(|| {
            f(ValueDeserializer {
                v,
                active: self.active,
                depth,
                hops: 0,
            })
        })
    }
}

impl<'de> de::VariantAccess<'de> for VariantAccess<'_> {
    type Error = SerdeError;
    fn unit_variant(self) -> Result<(), SerdeError> {
        match &self.payload {
            None | Some(Value::None) => Ok(()),
            Some(p) => Err(type_err("None as the payload of a unit variant", p)),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, SerdeError> {
        let p = self.need_payload("newtype")?;
        de_child(seed, p, self.active, self.depth)
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, SerdeError> {
        let p = self.need_payload("tuple")?;
        self.run(p, |de| de.deserialize_tuple(len, visitor))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, SerdeError> {
        let p = self.need_payload("struct")?;
        self.run(p, |de| de.deserialize_struct("", fields, visitor))
    }
}

// ---------------------------------------------------------------------------
// any deserializer -> Value

/// Reads a value from any self-describing serde format (JSON and the like).
///
/// Through [`from_value`] (e.g. a field of type `Value` in a derived
/// struct) the value is taken over unchanged. From other formats: unit and
/// `None` → `None`, `bool`, integers → `int`, floats → `float`, `char` and
/// strings → `str`, bytes → `bytes`, sequences → `list`, maps → `dict` (a
/// key Python cannot hash is an error), newtypes and `Some(x)` → `x`. Enums
/// (which self-describing formats do not produce) are not supported.
///
/// ```
/// use mpmanager_pickle::{from_value, hash::py_eq, to_value, Value};
/// let v = Value::tuple(vec![Value::Int(1), Value::str("x")]);
/// // A Value round-trips through the bridge unchanged (a tuple stays a tuple).
/// let back: Value = from_value(&to_value(&v).unwrap()).unwrap();
/// assert!(py_eq(&back, &v).unwrap());
/// ```
impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_newtype_struct(MAGIC, ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::from_bigint(BigInt::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(int_u64(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::from_bigint(BigInt::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<Value, E> {
        Ok(Value::str(v.encode_utf8(&mut [0; 4])))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::bytes(v))
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        grow(|| <Value as serde::Deserialize>::deserialize(d))
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if let Some(v) = DE_HANDOFF.with(|h| h.borrow_mut().take()) {
            return Ok(v);
        }
        grow(|| d.deserialize_any(ValueVisitor))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = grow(|| seq.next_element::<Value>())? {
            items.push(v);
        }
        Ok(Value::list(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut d = Dict::default();
        while let Some((k, v)) = grow(|| map.next_entry::<Value, Value>())? {
            let k = Key::new(k)
                .map_err(|e| de::Error::custom(SerdeError::Unhashable(e.to_string())))?;
            d.insert(k, v);
        }
        Ok(Value::Dict(shared(d)))
    }
}
