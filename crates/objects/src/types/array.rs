//! `Array` (client `ArrayProxy`): a real typed `array.array`.

use mpmanager_pickle::repr::{float_repr, str_repr, try_repr};
use mpmanager_pickle::{ExcType, Object, PyErr, PyStr, Value};
use num_bigint::BigInt;
use num_traits::ToPrimitive;
use parking_lot::RwLock;

use crate::args::{self, int_like};
use crate::referent::{CallContext, CallError, Kwargs, Outcome, Referent};

/// The machine types of `array.array` typecodes (Linux x86-64 sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Signed {
        bits: u32,
    },
    Unsigned {
        bits: u32,
    },
    Float32,
    Float64,
    /// `u` (wchar_t, 4 bytes) and `w` (Py_UCS4).
    Char,
}

fn kind_of(tc: char) -> Option<Kind> {
    Some(match tc {
        'b' => Kind::Signed { bits: 8 },
        'h' => Kind::Signed { bits: 16 },
        'i' => Kind::Signed { bits: 32 },
        'l' | 'q' => Kind::Signed { bits: 64 },
        'B' => Kind::Unsigned { bits: 8 },
        'H' => Kind::Unsigned { bits: 16 },
        'I' => Kind::Unsigned { bits: 32 },
        'L' | 'Q' => Kind::Unsigned { bits: 64 },
        'f' => Kind::Float32,
        'd' => Kind::Float64,
        'u' | 'w' => Kind::Char,
        _ => return None,
    })
}

/// One stored item.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Item {
    I(i64),
    U(u64),
    F(f64),
    C(u32),
}

/// A shared `array.array`.
///
/// Items are range- and type-checked like CPython 3.13 (`OverflowError:
/// signed char is greater than maximum`, `TypeError: 'str' object cannot be
/// interpreted as an integer` — the 3.10+ wording; 3.8/3.9 said `an integer
/// is required (got type str)`).
///
/// ```
/// use mpmanager_objects::{types::ArrayObject, Kwargs, Referent};
/// use mpmanager_pickle::Value;
/// let a = ArrayObject::construct(&[Value::str("d"), Value::list(vec![Value::Float(1.0), Value::Int(2)])], &Kwargs::new()).unwrap();
/// assert_eq!(a.repr().unwrap(), "array('d', [1.0, 2.0])");
/// let e = ArrayObject::construct(&[Value::str("b"), Value::list(vec![Value::Int(200)])], &Kwargs::new()).err().unwrap();
/// assert_eq!(e.to_string(), "OverflowError: signed char is greater than maximum");
/// ```
pub struct ArrayObject {
    typecode: char,
    kind: Kind,
    items: RwLock<Vec<Item>>,
}

fn overflow(msg: &str) -> PyErr {
    PyErr::new(ExcType::OverflowError, msg)
}

fn convert(tc: char, kind: Kind, v: &Value) -> Result<Item, PyErr> {
    match kind {
        Kind::Signed { bits } | Kind::Unsigned { bits } => {
            let Some(i) = int_like(v) else {
                return Err(PyErr::type_error(format!(
                    "'{}' object cannot be interpreted as an integer",
                    v.type_name()
                )));
            };
            let signed = matches!(kind, Kind::Signed { .. });
            let big_negative = matches!(i, Err(true));
            let i = i.ok();
            // Messages by typecode, from CPython's arraymodule.c /
            // PyLong_As* (3.13).
            let (lo_msg, hi_msg): (&str, &str) = match tc {
                'b' => (
                    "signed char is less than minimum",
                    "signed char is greater than maximum",
                ),
                'B' => (
                    "unsigned byte integer is less than minimum",
                    "unsigned byte integer is greater than maximum",
                ),
                'h' => (
                    "signed short integer is less than minimum",
                    "signed short integer is greater than maximum",
                ),
                'H' => (
                    "unsigned short is less than minimum",
                    "unsigned short is greater than maximum",
                ),
                'i' => (
                    "signed integer is less than minimum",
                    "signed integer is greater than maximum",
                ),
                'I' => (
                    "can't convert negative value to unsigned int",
                    "unsigned int is greater than maximum",
                ),
                'l' => (
                    "Python int too large to convert to C long",
                    "Python int too large to convert to C long",
                ),
                'L' => (
                    "can't convert negative value to unsigned int",
                    "Python int too large to convert to C unsigned long",
                ),
                'q' => ("int too big to convert", "int too big to convert"),
                _ => (
                    "can't convert negative int to unsigned",
                    "int too big to convert",
                ), // 'Q'
            };
            if signed {
                let (min, max) = if bits == 64 {
                    (i64::MIN, i64::MAX)
                } else {
                    (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
                };
                match i {
                    Some(i) if i < min => Err(overflow(lo_msg)),
                    Some(i) if i > max => Err(overflow(hi_msg)),
                    Some(i) => Ok(Item::I(i)),
                    None if big_negative => Err(overflow(lo_msg)),
                    None => Err(overflow(hi_msg)),
                }
            } else {
                let max: u64 = if bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                let u = match (i, v) {
                    (Some(i), _) if i < 0 => return Err(overflow(lo_msg)),
                    (Some(i), _) => i as u64,
                    (None, _) if big_negative => return Err(overflow(lo_msg)),
                    (None, v) => match v.to_bigint().and_then(|b: BigInt| b.to_u64()) {
                        Some(u) => u,
                        None => return Err(overflow(hi_msg)),
                    },
                };
                if u > max {
                    return Err(overflow(hi_msg));
                }
                Ok(Item::U(u))
            }
        }
        Kind::Float32 | Kind::Float64 => {
            let f = match v {
                Value::Float(f) => *f,
                Value::Int(i) => *i as f64,
                Value::Bool(b) => *b as i64 as f64,
                Value::BigInt(b) => match b.to_f64() {
                    Some(f) if f.is_finite() => f,
                    _ => return Err(overflow("int too large to convert to float")),
                },
                other => {
                    return Err(PyErr::type_error(format!(
                        "must be real number, not {}",
                        other.type_name()
                    )))
                }
            };
            Ok(Item::F(if kind == Kind::Float32 {
                f as f32 as f64
            } else {
                f
            }))
        }
        Kind::Char => {
            if let Value::Str(s) = v {
                let mut cps = s.code_points();
                if let (Some(c), None) = (cps.next(), cps.next()) {
                    return Ok(Item::C(c));
                }
            }
            Err(PyErr::type_error("array item must be unicode character"))
        }
    }
}

fn item_value(it: Item) -> Value {
    match it {
        Item::I(i) => Value::Int(i),
        Item::U(u) => match i64::try_from(u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::from_bigint(BigInt::from(u)),
        },
        Item::F(f) => Value::Float(f),
        Item::C(c) => Value::Str(PyStr::from_code_points([c]).expect("valid code point")),
    }
}

fn itemsize(kind: Kind) -> usize {
    match kind {
        Kind::Signed { bits } | Kind::Unsigned { bits } => bits as usize / 8,
        Kind::Float32 | Kind::Char => 4,
        Kind::Float64 => 8,
    }
}

fn to_bytes(kind: Kind, items: &[Item]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * itemsize(kind));
    for it in items {
        match (kind, *it) {
            (Kind::Signed { bits }, Item::I(i)) => {
                out.extend_from_slice(&i.to_ne_bytes()[..bits as usize / 8])
            }
            (Kind::Unsigned { bits }, Item::U(u)) => {
                out.extend_from_slice(&u.to_ne_bytes()[..bits as usize / 8])
            }
            (Kind::Float32, Item::F(f)) => out.extend_from_slice(&(f as f32).to_ne_bytes()),
            (Kind::Float64, Item::F(f)) => out.extend_from_slice(&f.to_ne_bytes()),
            (Kind::Char, Item::C(c)) => out.extend_from_slice(&c.to_ne_bytes()),
            _ => unreachable!("item kind matches array kind"),
        }
    }
    out
}

fn from_bytes(kind: Kind, b: &[u8]) -> Result<Vec<Item>, PyErr> {
    let size = itemsize(kind);
    if b.len() % size != 0 {
        return Err(PyErr::value_error(
            "bytes length not a multiple of item size",
        ));
    }
    Ok(b.chunks(size)
        .map(|c| {
            let mut buf = [0u8; 8];
            buf[..size].copy_from_slice(c);
            match kind {
                Kind::Signed { bits } => {
                    let u = u64::from_ne_bytes(buf);
                    let shift = 64 - bits;
                    Item::I(((u << shift) as i64) >> shift)
                }
                Kind::Unsigned { .. } => Item::U(u64::from_ne_bytes(buf)),
                Kind::Float32 => Item::F(f32::from_ne_bytes([c[0], c[1], c[2], c[3]]) as f64),
                Kind::Float64 => Item::F(f64::from_ne_bytes(buf)),
                Kind::Char => Item::C(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
            }
        })
        .collect())
}

/// If `v` is a pickled `array.array(typecode, bytes_or_list)` (the
/// ForkingPickler form), its typecode and raw argument.
fn parse_array_value(v: &Value) -> Option<(char, Value)> {
    let Value::Object(o) = v else { return None };
    let o = o.read_recursive();
    match o.global() {
        Some(g) if g.is("array", "array") => {}
        _ => return None,
    }
    let [tc, init] = o.args_slice() else {
        return None;
    };
    let mut cs = tc.as_str()?.chars();
    let (Some(c), None) = (cs.next(), cs.next()) else {
        return None;
    };
    Some((c, init.clone()))
}

impl ArrayObject {
    /// `Array(typecode, sequence, lock=True)` → `array.array(typecode,
    /// sequence)`; `lock` is ignored.
    pub fn construct(args: &[Value], kwargs: &Kwargs) -> Result<ArrayObject, PyErr> {
        let p = [
            ("typecode", None),
            ("sequence", None),
            ("lock", Some(Value::Bool(true))),
        ];
        let b = args::bind("Array", &p, args, kwargs)?;
        ArrayObject::array(&b[0], &b[1])
    }

    /// `array.array(typecode, initializer)`.
    pub fn array(typecode: &Value, init: &Value) -> Result<ArrayObject, PyErr> {
        let tc = match typecode {
            Value::Str(s) if s.char_len() == 1 => {
                char::from_u32(s.code_points().next().expect("one char")).unwrap_or('\0')
            }
            other => {
                return Err(PyErr::type_error(format!(
                    "array() argument 1 must be a unicode character, not {}",
                    other.type_name()
                )))
            }
        };
        let kind = kind_of(tc).ok_or_else(|| {
            PyErr::value_error("bad typecode (must be b, B, u, h, H, i, I, l, L, q, Q, f or d)")
        })?;
        let items = match init {
            Value::Str(s) => {
                if kind != Kind::Char {
                    return Err(PyErr::type_error(format!(
                        "cannot use a str to initialize an array with typecode '{tc}'"
                    )));
                }
                s.code_points().map(Item::C).collect()
            }
            Value::Bytes(b) => from_bytes(kind, b)?,
            Value::ByteArray(b) => from_bytes(kind, &b.read_recursive())?,
            other => match parse_array_value(other) {
                Some((otc, oinit)) => {
                    let o = ArrayObject::array(&Value::str(&otc.to_string()), &oinit)?;
                    let items = o.items.into_inner();
                    if (o.kind == Kind::Char) != (kind == Kind::Char) {
                        return Err(PyErr::type_error(format!(
                            "cannot use a unicode array to initialize an array with typecode '{tc}'"
                        )));
                    }
                    items
                        .into_iter()
                        .map(|it| convert(tc, kind, &item_value(it)))
                        .collect::<Result<_, _>>()?
                }
                None => args::iterate(other)?
                    .iter()
                    .map(|v| convert(tc, kind, v))
                    .collect::<Result<_, _>>()?,
            },
        };
        Ok(ArrayObject {
            typecode: tc,
            kind,
            items: RwLock::new(items),
        })
    }

    fn as_value(&self, items: &[Item]) -> Value {
        Value::object(Object::reduce(
            Value::global("array", "array"),
            vec![
                Value::str(&self.typecode.to_string()),
                Value::bytes(&to_bytes(self.kind, items)),
            ],
        ))
    }
}

impl Referent for ArrayObject {
    /// No method of a `ArrayObject` waits for another client.
    fn may_block(&self, _method: &str) -> bool {
        false
    }

    fn class_name(&self) -> &str {
        "array.array"
    }

    fn call(
        &self,
        _cx: &CallContext,
        method: &str,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        if !kw.is_empty() {
            let msg = if method == "__getitem__" {
                "array.array.__getitem__() takes no keyword arguments".to_string()
            } else {
                format!("wrapper {method}() takes no keyword arguments")
            };
            return Err(PyErr::type_error(msg).into());
        }
        match method {
            "__len__" => {
                args::slot::<0>(a)?;
                Ok(Value::Int(self.items.read().len() as i64).into())
            }
            "__getitem__" => {
                let [i] = args::slot::<1>(a)?;
                let items = self.items.read();
                if let Value::Slice(s) = i {
                    let r = args::slice_indices(s, items.len())?;
                    let sel: Vec<Item> = r.indices().map(|k| items[k]).collect();
                    return Ok(self.as_value(&sel).into());
                }
                if int_like(i).is_none() {
                    return Err(PyErr::type_error("array indices must be integers").into());
                }
                match args::seq_index(i, items.len(), "array")? {
                    Some(k) => Ok(item_value(items[k]).into()),
                    None => Err(PyErr::index_error("array index out of range").into()),
                }
            }
            "__setitem__" => {
                let [i, v] = args::slot::<2>(a)?;
                if let Value::Slice(s) = i {
                    let Some((otc, init)) = parse_array_value(v) else {
                        return Err(PyErr::type_error(format!(
                            "can only assign array (not \"{}\") to array slice",
                            v.type_name()
                        ))
                        .into());
                    };
                    if otc != self.typecode {
                        return Err(
                            PyErr::type_error("bad argument type for built-in operation").into(),
                        );
                    }
                    let new = ArrayObject::array(&Value::str(&otc.to_string()), &init)?
                        .items
                        .into_inner();
                    let mut items = self.items.write();
                    let r = args::slice_indices(s, items.len())?;
                    if r.step == 1 {
                        let st = r.start as usize;
                        items.splice(st..st + r.len, new);
                    } else {
                        if new.len() != r.len {
                            return Err(PyErr::value_error(format!(
                                "attempt to assign array of size {} to extended slice of size {}",
                                new.len(),
                                r.len
                            ))
                            .into());
                        }
                        for (k, it) in r.indices().zip(new) {
                            items[k] = it;
                        }
                    }
                    return Ok(Outcome::none());
                }
                if int_like(i).is_none() {
                    return Err(PyErr::type_error("array indices must be integers").into());
                }
                let mut items = self.items.write();
                let Some(k) = args::seq_index(i, items.len(), "array")? else {
                    return Err(PyErr::index_error("array assignment index out of range").into());
                };
                items[k] = convert(self.typecode, self.kind, v)?;
                Ok(Outcome::none())
            }
            _ => Err(CallError::Python(args::no_attribute("array", method))),
        }
    }

    /// `array('i', [1, 2])`, `array('u', 'ab')`, `array('d')` when empty.
    fn repr(&self) -> Result<String, PyErr> {
        let items = self.items.read();
        if items.is_empty() {
            return Ok(format!("array('{}')", self.typecode));
        }
        let body = if self.kind == Kind::Char {
            let s = PyStr::from_code_points(items.iter().map(|it| match it {
                Item::C(c) => *c,
                _ => unreachable!(),
            }))
            .ok_or_else(|| PyErr::value_error("character out of range"))?;
            str_repr(&s)
        } else {
            let parts: Vec<String> = items
                .iter()
                .map(|it| match it {
                    Item::F(f) => Ok(float_repr(*f)),
                    other => try_repr(&item_value(*other)),
                })
                .collect::<Result<_, PyErr>>()?;
            format!("[{}]", parts.join(", "))
        };
        Ok(format!("array('{}', {body})", self.typecode))
    }

    /// `array.array(typecode, native_bytes)` (ForkingPickler's form).
    fn get_value(&self) -> Result<Value, PyErr> {
        Ok(self.as_value(&self.items.read()))
    }
}
