//! `set` (typeid `set`, new in CPython 3.14, client `SetProxy`).

use mpmanager_pickle::repr::try_repr;
use mpmanager_pickle::{shared, ExcType, Key, Object, PyErr, Set, Value};
use parking_lot::RwLock;

use crate::args::{self, iterate};
use crate::referent::{CallContext, CallError, Kwargs, Outcome, Referent};

/// A shared Python `set`.
///
/// Iteration order (and so `repr` and `pop`) is insertion order, where
/// CPython's is hash order: the same members, possibly listed differently.
///
/// ```
/// use mpmanager_objects::{types::SetObject, Kwargs, Referent};
/// use mpmanager_pickle::Value;
/// let s = SetObject::construct(&[Value::list(vec![Value::Int(1), Value::Int(1)])], &Kwargs::new()).unwrap();
/// assert_eq!(s.repr().unwrap(), "{1}");
/// ```
#[derive(Default)]
pub struct SetObject {
    data: RwLock<Set>,
}

fn ret(v: Value) -> Result<Outcome, CallError> {
    Ok(Outcome::Return(v))
}

fn not_implemented() -> Result<Outcome, CallError> {
    ret(Value::global("builtins", "NotImplemented"))
}

fn set_value(s: Set) -> Value {
    Value::Set(shared(s))
}

/// The members of a `set`/`frozenset` argument (binary operators accept
/// nothing else).
fn as_set(v: &Value) -> Option<Set> {
    match v {
        Value::Set(s) => Some(s.read_recursive().clone()),
        Value::FrozenSet(s) => Some((**s).clone()),
        _ => None,
    }
}

/// Any iterable as a set (the named methods accept any iterable).
fn to_set(v: &Value) -> Result<Set, PyErr> {
    if let Some(s) = as_set(v) {
        return Ok(s);
    }
    let mut s = Set::default();
    for x in iterate(v)? {
        s.insert(Key::new(x)?);
    }
    Ok(s)
}

/// A key for membership tests: like CPython, an unhashable `set` argument
/// is looked up as the equal `frozenset`.
fn lookup_key(v: &Value) -> Result<Key, PyErr> {
    match v {
        Value::Set(s) => Key::new(Value::FrozenSet(std::sync::Arc::new(
            s.read_recursive().clone(),
        ))),
        other => Key::new(other.clone()),
    }
}

fn union(a: &Set, b: &Set) -> Set {
    let mut out = a.clone();
    for k in b.iter() {
        out.insert(k.clone());
    }
    out
}

fn intersection(a: &Set, b: &Set) -> Set {
    a.iter()
        .filter(|k| b.contains(*k))
        .cloned()
        .collect::<indexmap::IndexSet<_, _>>()
        .into()
}

fn difference(a: &Set, b: &Set) -> Set {
    a.iter()
        .filter(|k| !b.contains(*k))
        .cloned()
        .collect::<indexmap::IndexSet<_, _>>()
        .into()
}

fn sym_difference(a: &Set, b: &Set) -> Set {
    let mut out = difference(a, b);
    for k in b.iter() {
        if !a.contains(k) {
            out.insert(k.clone());
        }
    }
    out
}

fn is_subset(a: &Set, b: &Set) -> bool {
    a.len() <= b.len() && a.iter().all(|k| b.contains(k))
}

impl SetObject {
    /// `set(iterable=())`.
    pub fn construct(args: &[Value], kwargs: &Kwargs) -> Result<SetObject, PyErr> {
        if !kwargs.is_empty() {
            return Err(PyErr::type_error("set() takes no keyword arguments"));
        }
        match args {
            [] => Ok(SetObject::default()),
            [it] => Ok(SetObject {
                data: RwLock::new(to_set(it)?),
            }),
            _ => Err(PyErr::type_error(format!(
                "set expected at most 1 argument, got {}",
                args.len()
            ))),
        }
    }

    fn call_inner(&self, method: &str, a: &[Value], kw: &Kwargs) -> Result<Outcome, CallError> {
        if !kw.is_empty() {
            let msg = if method.starts_with("__") && method != "__class_getitem__" {
                format!("wrapper {method}() takes no keyword arguments")
            } else {
                format!("set.{method}() takes no keyword arguments")
            };
            return Err(PyErr::type_error(msg).into());
        }
        // Binary operators: a set or frozenset, else NotImplemented.
        let binop = |f: &dyn Fn(&Set, &Set) -> Value| -> Result<Outcome, CallError> {
            let [o] = args::slot::<1>(a)?;
            let Some(o) = as_set(o) else {
                return not_implemented();
            };
            let me = self.data.read().clone();
            ret(f(&me, &o))
        };
        let inplace = |f: &dyn Fn(&Set, &Set) -> Set| -> Result<Outcome, CallError> {
            let [o] = args::slot::<1>(a)?;
            let Some(o) = as_set(o) else {
                return not_implemented();
            };
            let mut me = self.data.write();
            *me = f(&me, &o);
            ret(set_value(me.clone()))
        };
        // Named methods taking any number of iterables.
        let many = |f: &dyn Fn(&Set, &Set) -> Set| -> Result<Set, PyErr> {
            let mut acc = self.data.read().clone();
            for o in a {
                acc = f(&acc, &to_set(o)?);
            }
            Ok(acc)
        };
        match method {
            "__and__" | "__rand__" => binop(&|x, y| set_value(intersection(x, y))),
            "__or__" | "__ror__" => binop(&|x, y| set_value(union(x, y))),
            "__xor__" | "__rxor__" => binop(&|x, y| set_value(sym_difference(x, y))),
            "__sub__" => binop(&|x, y| set_value(difference(x, y))),
            "__rsub__" => binop(&|x, y| set_value(difference(y, x))),
            "__le__" => binop(&|x, y| Value::Bool(is_subset(x, y))),
            "__lt__" => binop(&|x, y| Value::Bool(x.len() < y.len() && is_subset(x, y))),
            "__ge__" => binop(&|x, y| Value::Bool(is_subset(y, x))),
            "__gt__" => binop(&|x, y| Value::Bool(x.len() > y.len() && is_subset(y, x))),
            "__iand__" => inplace(&intersection),
            "__ior__" => inplace(&union),
            "__ixor__" => inplace(&sym_difference),
            "__isub__" => inplace(&difference),
            "__contains__" => {
                let [x] = args::slot::<1>(a)?;
                ret(Value::Bool(self.data.read().contains(&lookup_key(x)?)))
            }
            "__len__" => {
                args::slot::<0>(a)?;
                ret(Value::Int(self.data.read().len() as i64))
            }
            "__iter__" => {
                // Not in method_to_typeid: CPython pickles the set_iterator,
                // i.e. iter([remaining members]).
                args::slot::<0>(a)?;
                let items: Vec<Value> =
                    self.data.read().iter().map(|k| k.value().clone()).collect();
                ret(Value::object(Object::reduce(
                    Value::global("builtins", "iter"),
                    vec![Value::list(items)],
                )))
            }
            "__class_getitem__" => {
                let x = args::one("set.__class_getitem__", a)?;
                ret(Value::object(Object::reduce(
                    Value::global("types", "GenericAlias"),
                    vec![Value::global("builtins", "set"), x.clone()],
                )))
            }
            "add" => {
                let x = args::one("set.add", a)?;
                let k = Key::new(x.clone())?;
                self.data.write().insert(k);
                ret(Value::None)
            }
            "clear" => {
                args::none("set.clear", a)?;
                let old = std::mem::take(&mut *self.data.write());
                drop(old);
                ret(Value::None)
            }
            "copy" => {
                args::none("set.copy", a)?;
                ret(set_value(self.data.read().clone()))
            }
            "discard" => {
                let x = args::one("set.discard", a)?;
                let k = lookup_key(x)?;
                self.data.write().swap_remove(&k);
                ret(Value::None)
            }
            "remove" => {
                let x = args::one("set.remove", a)?;
                let k = lookup_key(x)?;
                if self.data.write().swap_remove(&k) {
                    ret(Value::None)
                } else {
                    Err(PyErr::key_error(x.clone()).into())
                }
            }
            "pop" => {
                args::none("set.pop", a)?;
                match self.data.write().pop() {
                    Some(k) => ret(k.into_value()),
                    None => Err(PyErr::with_args(
                        ExcType::KeyError,
                        vec![Value::str("pop from an empty set")],
                    )
                    .into()),
                }
            }
            "union" => ret(set_value(many(&union)?)),
            "intersection" => ret(set_value(many(&intersection)?)),
            "difference" => ret(set_value(many(&difference)?)),
            "symmetric_difference" => {
                let o = args::one("set.symmetric_difference", a)?;
                let me = self.data.read().clone();
                ret(set_value(sym_difference(&me, &to_set(o)?)))
            }
            "update" | "intersection_update" | "difference_update" => {
                let f: &dyn Fn(&Set, &Set) -> Set = match method {
                    "update" => &union,
                    "intersection_update" => &intersection,
                    _ => &difference,
                };
                let others: Vec<Set> = a.iter().map(to_set).collect::<Result<_, _>>()?;
                let mut me = self.data.write();
                for o in &others {
                    *me = f(&me, o);
                }
                ret(Value::None)
            }
            "symmetric_difference_update" => {
                let o = args::one("set.symmetric_difference_update", a)?;
                let o = to_set(o)?;
                let mut me = self.data.write();
                *me = sym_difference(&me, &o);
                ret(Value::None)
            }
            "isdisjoint" => {
                let o = to_set(args::one("set.isdisjoint", a)?)?;
                let me = self.data.read();
                ret(Value::Bool(me.iter().all(|k| !o.contains(k))))
            }
            "issubset" => {
                let o = to_set(args::one("set.issubset", a)?)?;
                ret(Value::Bool(is_subset(&self.data.read(), &o)))
            }
            "issuperset" => {
                let o = to_set(args::one("set.issuperset", a)?)?;
                ret(Value::Bool(is_subset(&o, &self.data.read())))
            }
            _ => Err(CallError::Python(args::no_attribute("set", method))),
        }
    }
}

impl Referent for SetObject {
    /// No method of a `SetObject` waits for another client.
    fn may_block(&self, _method: &str) -> bool {
        false
    }

    fn class_name(&self) -> &str {
        "set"
    }

    fn call(
        &self,
        _cx: &CallContext,
        method: &str,
        args: &[Value],
        kwargs: &Kwargs,
    ) -> Result<Outcome, CallError> {
        self.call_inner(method, args, kwargs)
    }

    fn repr(&self) -> Result<String, PyErr> {
        try_repr(&set_value(self.data.read().clone()))
    }

    fn get_value(&self) -> Result<Value, PyErr> {
        Ok(set_value(self.data.read().clone()))
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        self.data.read().iter().for_each(|k| f(k.value()));
    }
}
