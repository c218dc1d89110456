//! `dict` (typeid `dict`, client `DictProxy`) and its key `Iterator`.

use std::sync::Arc;

use mpmanager_pickle::repr::try_repr;
use mpmanager_pickle::{shared, Dict, ExcType, Key, Object, PyErr, Shared, Value};
use parking_lot::Mutex;

use crate::args::{self, iterate};
use crate::referent::{object_repr, CallContext, CallError, Kwargs, Outcome, Referent};

/// A shared Python `dict` (insertion-ordered).
///
/// Deleting a key is O(len) (the order-preserving removal of the
/// underlying `IndexMap`); everything else is O(1) on average.
///
/// ```
/// use mpmanager_objects::{types::DictObject, Kwargs, Referent};
/// use mpmanager_pickle::Value;
/// let d = DictObject::construct(&[], &Kwargs::from_pairs(vec![("ferrets".into(), Value::Int(2))])).unwrap();
/// assert_eq!(d.repr().unwrap(), "{'ferrets': 2}");
/// ```
pub struct DictObject {
    data: Shared<Dict>,
}

fn ret(v: Value) -> Result<Outcome, CallError> {
    Ok(Outcome::Return(v))
}

fn not_implemented() -> Result<Outcome, CallError> {
    ret(Value::global("builtins", "NotImplemented"))
}

/// `dict.update(arg)`'s positional part, applied to `d` item by item (so an
/// error midway leaves the earlier items in, as in CPython).
fn update_from(d: &mut Dict, arg: &Value) -> Result<(), PyErr> {
    if let Value::Dict(src) = arg {
        let pairs: Vec<(Key, Value)> = src
            .read_recursive()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in pairs {
            d.insert(k, v);
        }
        return Ok(());
    }
    let items = iterate(arg)?;
    for (n, item) in items.iter().enumerate() {
        if !args::is_iterable(item) {
            return Err(PyErr::type_error(format!(
                "cannot convert dictionary update sequence element #{n} to a sequence"
            )));
        }
        let kv = iterate(item)?;
        if kv.len() != 2 {
            return Err(PyErr::value_error(format!(
                "dictionary update sequence element #{n} has length {}; 2 is required",
                kv.len()
            )));
        }
        let mut kv = kv.into_iter();
        let k = kv.next().expect("2 items");
        let v = kv.next().expect("2 items");
        d.insert(Key::new(k)?, v);
    }
    Ok(())
}

fn update_kwargs(d: &mut Dict, kw: &Kwargs) {
    for (k, v) in kw.iter() {
        d.insert(Key::str(k), v.clone());
    }
}

fn copy_dict(d: &Dict) -> Value {
    Value::Dict(shared(d.clone()))
}

impl DictObject {
    /// A dict holding `d`.
    pub fn new(d: Dict) -> DictObject {
        DictObject { data: shared(d) }
    }

    /// `dict(*args, **kwds)`, as `create('dict', …)` calls it
    /// (`manager.dict(ferrets=2)`, `manager.dict([(1, 2)])`).
    pub fn construct(args: &[Value], kwargs: &Kwargs) -> Result<DictObject, PyErr> {
        let mut d = Dict::default();
        match args {
            [] => {}
            [a] => update_from(&mut d, a)?,
            _ => {
                return Err(PyErr::type_error(format!(
                    "dict expected at most 1 argument, got {}",
                    args.len()
                )))
            }
        }
        update_kwargs(&mut d, kwargs);
        Ok(DictObject::new(d))
    }

    /// A snapshot of the contents.
    pub fn snapshot(&self) -> Dict {
        self.data.read().clone()
    }

    fn call_inner(&self, method: &str, a: &[Value], kw: &Kwargs) -> Result<Outcome, CallError> {
        if method != "update" && !kw.is_empty() {
            let msg = match method {
                "__getitem__" | "__reversed__" => {
                    format!("dict.{method}() takes no keyword arguments")
                }
                m if m.starts_with("__") => {
                    format!("wrapper {method}() takes no keyword arguments")
                }
                "fromkeys" => "dict.fromkeys() takes no keyword arguments".to_string(),
                _ => format!("dict.{method}() takes no keyword arguments"),
            };
            return Err(PyErr::type_error(msg).into());
        }
        match method {
            "__contains__" => {
                let [k] = args::slot::<1>(a)?;
                let k = Key::new(k.clone())?;
                ret(Value::Bool(self.data.read().contains_key(&k)))
            }
            "__getitem__" => {
                let k = args::one("dict.__getitem__", a)?;
                let key = Key::new(k.clone())?;
                match self.data.read().get(&key) {
                    Some(v) => ret(v.clone()),
                    None => Err(PyErr::key_error(k.clone()).into()),
                }
            }
            "__setitem__" => {
                let [k, v] = args::slot::<2>(a)?;
                let key = Key::new(k.clone())?;
                let old = self.data.write().insert(key, v.clone());
                drop(old);
                ret(Value::None)
            }
            "__delitem__" => {
                let [k] = args::slot::<1>(a)?;
                let key = Key::new(k.clone())?;
                let old = self.data.write().shift_remove(&key);
                match old {
                    Some(_) => ret(Value::None),
                    None => Err(PyErr::key_error(k.clone()).into()),
                }
            }
            "__len__" => {
                args::slot::<0>(a)?;
                ret(Value::Int(self.data.read().len() as i64))
            }
            "__iter__" => {
                args::slot::<0>(a)?;
                let it = DictKeyIterator::new(self.data.clone(), false);
                Ok(Outcome::NewObject {
                    typeid: "Iterator".into(),
                    object: Arc::new(it),
                })
            }
            "__reversed__" => {
                args::none("dict.__reversed__", a)?;
                let keys: Vec<Value> = self
                    .data
                    .read()
                    .keys()
                    .rev()
                    .map(|k| k.value().clone())
                    .collect();
                ret(Value::object(Object::reduce(
                    Value::global("builtins", "iter"),
                    vec![Value::list(keys)],
                )))
            }
            "__or__" => {
                let [other] = args::slot::<1>(a)?;
                let Value::Dict(o) = other else {
                    return not_implemented();
                };
                let mut d = self.data.read().clone();
                update_from(&mut d, &Value::Dict(o.clone()))?;
                ret(Value::Dict(shared(d)))
            }
            "__ror__" => {
                let [other] = args::slot::<1>(a)?;
                let Value::Dict(o) = other else {
                    return not_implemented();
                };
                let mut d = o.read_recursive().clone();
                for (k, v) in self.data.read().iter() {
                    d.insert(k.clone(), v.clone());
                }
                ret(Value::Dict(shared(d)))
            }
            "__ior__" => {
                let [other] = args::slot::<1>(a)?;
                let mut d = self.data.write();
                update_from(&mut d, other)?;
                ret(copy_dict(&d))
            }
            "clear" => {
                args::none("dict.clear", a)?;
                let old = std::mem::take(&mut *self.data.write());
                drop(old);
                ret(Value::None)
            }
            "copy" => {
                args::none("dict.copy", a)?;
                ret(copy_dict(&self.data.read()))
            }
            "fromkeys" => {
                args::range("fromkeys", a, 1, 2)?;
                let value = a.get(1).cloned().unwrap_or(Value::None);
                let mut d = Dict::default();
                for k in iterate(&a[0])? {
                    d.insert(Key::new(k)?, value.clone());
                }
                ret(Value::Dict(shared(d)))
            }
            "get" => {
                args::range("get", a, 1, 2)?;
                let key = Key::new(a[0].clone())?;
                let d = self.data.read();
                ret(d
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| a.get(1).cloned().unwrap_or(Value::None)))
            }
            "items" => {
                args::none("dict.items", a)?;
                let d = self.data.read();
                ret(Value::list(
                    d.iter()
                        .map(|(k, v)| Value::tuple(vec![k.value().clone(), v.clone()]))
                        .collect(),
                ))
            }
            "keys" => {
                args::none("dict.keys", a)?;
                ret(Value::list(
                    self.data.read().keys().map(|k| k.value().clone()).collect(),
                ))
            }
            "values" => {
                args::none("dict.values", a)?;
                ret(Value::list(self.data.read().values().cloned().collect()))
            }
            "pop" => {
                args::range("pop", a, 1, 2)?;
                let mut d = self.data.write();
                if d.is_empty() {
                    // CPython answers before hashing the key.
                    return match a.get(1) {
                        Some(default) => ret(default.clone()),
                        None => Err(PyErr::key_error(a[0].clone()).into()),
                    };
                }
                let key = Key::new(a[0].clone())?;
                match d.shift_remove(&key) {
                    Some(v) => ret(v),
                    None => match a.get(1) {
                        Some(default) => ret(default.clone()),
                        None => Err(PyErr::key_error(a[0].clone()).into()),
                    },
                }
            }
            "popitem" => {
                args::none("dict.popitem", a)?;
                match self.data.write().pop() {
                    Some((k, v)) => ret(Value::tuple(vec![k.into_value(), v])),
                    None => Err(PyErr::with_args(
                        ExcType::KeyError,
                        vec![Value::str("popitem(): dictionary is empty")],
                    )
                    .into()),
                }
            }
            "setdefault" => {
                args::range("setdefault", a, 1, 2)?;
                let key = Key::new(a[0].clone())?;
                let mut d = self.data.write();
                let default = a.get(1).cloned().unwrap_or(Value::None);
                ret(d.entry(key).or_insert(default).clone())
            }
            "update" => {
                args::range("update", a, 0, 1)?;
                let mut d = self.data.write();
                if let Some(arg) = a.first() {
                    update_from(&mut d, arg)?;
                }
                update_kwargs(&mut d, kw);
                ret(Value::None)
            }
            _ => Err(CallError::Python(args::no_attribute("dict", method))),
        }
    }
}

impl Referent for DictObject {
    /// No method of a `DictObject` waits for another client.
    fn may_block(&self, _method: &str) -> bool {
        false
    }

    fn class_name(&self) -> &str {
        "dict"
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
        try_repr(&Value::Dict(self.data.clone()))
    }

    fn get_value(&self) -> Result<Value, PyErr> {
        Ok(copy_dict(&self.data.read()))
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        for (k, v) in self.data.read().iter() {
            f(k.value());
            f(v);
        }
    }
}

struct IterState {
    pos: usize,
    /// `len(d)` when the iterator was made; `None` once it raised
    /// `RuntimeError` (it keeps raising, as CPython's does).
    expected_len: Option<usize>,
    /// Set when exhausted: stays exhausted even if the dict grows.
    done: bool,
}

/// The `Iterator` referent of `iter(dict_proxy)`: CPython's
/// `dict_keyiterator` over the **live** dict. Exposed
/// `('__next__', 'send', 'throw', 'close')`, of which only `__next__`
/// exists (the others answer `#TRACEBACK`, as in CPython).
///
/// `__next__` raises `StopIteration()` when exhausted (and forever after)
/// and `RuntimeError('dictionary changed size during iteration')` if the
/// dict's size changed. Known difference: a delete plus an insert between
/// two `__next__` calls (same size) may skip or repeat a key, where CPython
/// would walk its entry table.
pub struct DictKeyIterator {
    dict: Shared<Dict>,
    state: Mutex<IterState>,
    reversed: bool,
}

impl DictKeyIterator {
    /// An iterator over `dict`'s keys.
    pub fn new(dict: Shared<Dict>, reversed: bool) -> DictKeyIterator {
        let len = dict.read().len();
        DictKeyIterator {
            dict,
            state: Mutex::new(IterState {
                pos: 0,
                expected_len: Some(len),
                done: false,
            }),
            reversed,
        }
    }

    fn next(&self) -> Result<Value, PyErr> {
        let mut st = self.state.lock();
        if st.done {
            return Err(PyErr::with_args(ExcType::StopIteration, vec![]));
        }
        let d = self.dict.read();
        match st.expected_len {
            Some(n) if n == d.len() => {}
            _ => {
                st.expected_len = None;
                return Err(PyErr::new(
                    ExcType::RuntimeError,
                    "dictionary changed size during iteration",
                ));
            }
        }
        if st.pos >= d.len() {
            st.done = true;
            return Err(PyErr::with_args(ExcType::StopIteration, vec![]));
        }
        let idx = if self.reversed {
            d.len() - 1 - st.pos
        } else {
            st.pos
        };
        st.pos += 1;
        let (k, _) = d.get_index(idx).expect("in range");
        Ok(k.value().clone())
    }

    fn remaining(&self) -> Vec<Value> {
        let st = self.state.lock();
        let d = self.dict.read();
        if st.done || st.expected_len != Some(d.len()) {
            return Vec::new();
        }
        let keys: Vec<Value> = d.keys().map(|k| k.value().clone()).collect();
        if self.reversed {
            keys[..keys.len() - st.pos].iter().rev().cloned().collect()
        } else {
            keys[st.pos..].to_vec()
        }
    }
}

impl Referent for DictKeyIterator {
    /// No method of a `DictKeyIterator` waits for another client.
    fn may_block(&self, _method: &str) -> bool {
        false
    }

    fn class_name(&self) -> &str {
        if self.reversed {
            "dict_reversekeyiterator"
        } else {
            "dict_keyiterator"
        }
    }

    fn call(
        &self,
        _cx: &CallContext,
        method: &str,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        match method {
            "__next__" => {
                if !kw.is_empty() {
                    return Err(
                        PyErr::type_error("wrapper __next__() takes no keyword arguments").into(),
                    );
                }
                args::slot::<0>(a)?;
                Ok(Outcome::Return(self.next()?))
            }
            _ => Err(CallError::Python(args::no_attribute(
                self.class_name(),
                method,
            ))),
        }
    }

    fn repr(&self) -> Result<String, PyErr> {
        Ok(object_repr(
            self.class_name(),
            self as *const Self as *const (),
        ))
    }

    fn get_value(&self) -> Result<Value, PyErr> {
        // dict_keyiterator.__reduce__: (iter, (list(remaining),))
        Ok(Value::object(Object::reduce(
            Value::global("builtins", "iter"),
            vec![Value::list(self.remaining())],
        )))
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        for k in self.dict.read().keys() {
            f(k.value());
        }
    }
}
