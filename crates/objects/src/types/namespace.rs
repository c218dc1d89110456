//! `Namespace` (client `NamespaceProxy`) and `Value` (client `ValueProxy`).

use indexmap::IndexMap;
use mpmanager_pickle::repr::{str_repr, try_repr};
use mpmanager_pickle::{shared, Dict, ExcType, Global, Key, Object, PyErr, PyStr, Value};
use parking_lot::RwLock;

use crate::args;
use crate::referent::{CallContext, CallError, Kwargs, Outcome, Referent};

/// `multiprocessing.managers.Namespace`: an attribute bag.
///
/// `__getattribute__`, `__setattr__`, `__delattr__`; a missing name raises
/// `AttributeError("'Namespace' object has no attribute 'y'")` (an
/// `#ERROR`, so `hasattr(proxy, 'y')` is False). `__getattribute__('__dict__')`
/// returns the attributes as a plain dict; other names CPython would find
/// on the class (methods) are not modelled.
///
/// ```
/// use mpmanager_objects::{types::NamespaceObject, Kwargs, Referent};
/// use mpmanager_pickle::Value;
/// let ns = NamespaceObject::construct(&[], &Kwargs::from_pairs(vec![
///     ("y".into(), Value::str("hello")), ("x".into(), Value::Int(10)),
///     ("_z".into(), Value::Float(12.3)),
/// ])).unwrap();
/// assert_eq!(ns.repr().unwrap(), "Namespace(x=10, y='hello')");
/// ```
#[derive(Default)]
pub struct NamespaceObject {
    attrs: RwLock<IndexMap<PyStr, Value>>,
}

fn attr_name(v: &Value) -> Result<PyStr, PyErr> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        other => Err(PyErr::type_error(format!(
            "attribute name must be string, not '{}'",
            other.type_name()
        ))),
    }
}

fn no_attr(name: &PyStr) -> PyErr {
    PyErr::new(
        ExcType::AttributeError,
        format!(
            "'Namespace' object has no attribute '{}'",
            name.to_string_lossy()
        ),
    )
}

impl NamespaceObject {
    /// `Namespace(**kwds)`.
    pub fn construct(args: &[Value], kwargs: &Kwargs) -> Result<NamespaceObject, PyErr> {
        args::bind("Namespace.__init__", &[], args, &Kwargs::new())?;
        let mut attrs = IndexMap::new();
        for (k, v) in kwargs.iter() {
            attrs.insert(PyStr::new(k), v.clone());
        }
        Ok(NamespaceObject {
            attrs: RwLock::new(attrs),
        })
    }

    fn attrs_dict(&self) -> Value {
        let mut d = Dict::default();
        for (k, v) in self.attrs.read().iter() {
            d.insert(
                Key::new(Value::Str(k.clone())).expect("str hashes"),
                v.clone(),
            );
        }
        Value::Dict(shared(d))
    }
}

impl Referent for NamespaceObject {
    /// No method of a `NamespaceObject` waits for another client.
    fn may_block(&self, _method: &str) -> bool {
        false
    }

    fn class_name(&self) -> &str {
        "multiprocessing.managers.Namespace"
    }

    fn call(
        &self,
        _cx: &CallContext,
        method: &str,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        if !kw.is_empty() && method.starts_with("__") {
            return Err(PyErr::type_error(format!(
                "wrapper {method}() takes no keyword arguments"
            ))
            .into());
        }
        match method {
            "__getattribute__" => {
                let [name] = args::slot::<1>(a)?;
                let name = attr_name(name)?;
                if let Some(v) = self.attrs.read().get(&name) {
                    return Ok(Outcome::Return(v.clone()));
                }
                if name.as_str() == Some("__dict__") {
                    return Ok(Outcome::Return(self.attrs_dict()));
                }
                Err(no_attr(&name).into())
            }
            "__setattr__" => {
                let [name, v] = args::slot::<2>(a)?;
                let name = attr_name(name)?;
                let old = self.attrs.write().insert(name, v.clone());
                drop(old);
                Ok(Outcome::none())
            }
            "__delattr__" => {
                let [name] = args::slot::<1>(a)?;
                let name = attr_name(name)?;
                match self.attrs.write().shift_remove(&name) {
                    Some(_) => Ok(Outcome::none()),
                    None => Err(no_attr(&name).into()),
                }
            }
            _ => Err(CallError::Python(args::no_attribute(
                self.class_name(),
                method,
            ))),
        }
    }

    /// `Namespace(a=1, b='x')`: `name=repr(value)` for names not starting
    /// with `_`, the *strings* sorted (docs/PROTOCOL.md §4.4).
    fn repr(&self) -> Result<String, PyErr> {
        let items: Vec<(PyStr, Value)> = self
            .attrs
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut parts = Vec::new();
        for (k, v) in items {
            if k.as_wtf8().first() == Some(&b'_') {
                continue;
            }
            parts.push(format!("{}={}", k.to_string_lossy(), try_repr(&v)?));
        }
        parts.sort();
        Ok(format!("Namespace({})", parts.join(", ")))
    }

    /// `NEWOBJ(multiprocessing.managers.Namespace)` + `BUILD {attrs}`.
    fn get_value(&self) -> Result<Value, PyErr> {
        Ok(Value::object(Object::new_obj(
            Global::new("multiprocessing.managers", "Namespace"),
            vec![],
            Some(self.attrs_dict()),
        )))
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        self.attrs.read().values().for_each(f);
    }
}

/// `multiprocessing.managers.Value(typecode, value, lock=True)`: a typecode
/// and a value, **no type checking** (`Value('i', 'text')` is fine).
/// Methods `get()` and `set(value)`; repr `Value('i', 3)`.
///
/// ```
/// use mpmanager_objects::{types::ValueObject, Kwargs, Referent};
/// use mpmanager_pickle::Value;
/// let v = ValueObject::construct(&[Value::str("i"), Value::Int(3)], &Kwargs::new()).unwrap();
/// assert_eq!(v.repr().unwrap(), "Value('i', 3)");
/// ```
pub struct ValueObject {
    typecode: Value,
    value: RwLock<Value>,
}

impl ValueObject {
    /// `Value(typecode, value, lock=True)`; `lock` is ignored.
    pub fn construct(args: &[Value], kwargs: &Kwargs) -> Result<ValueObject, PyErr> {
        let p = [
            ("typecode", None),
            ("value", None),
            ("lock", Some(Value::Bool(true))),
        ];
        let mut b = args::bind("Value.__init__", &p, args, kwargs)?.into_iter();
        let typecode = b.next().expect("bound");
        let value = b.next().expect("bound");
        Ok(ValueObject {
            typecode,
            value: RwLock::new(value),
        })
    }
}

impl Referent for ValueObject {
    /// No method of a `ValueObject` waits for another client.
    fn may_block(&self, _method: &str) -> bool {
        false
    }

    fn class_name(&self) -> &str {
        "multiprocessing.managers.Value"
    }

    fn call(
        &self,
        _cx: &CallContext,
        method: &str,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        match method {
            "get" => {
                args::bind("Value.get", &[], a, kw)?;
                Ok(Outcome::Return(self.value.read().clone()))
            }
            "set" => {
                let v = args::bind("Value.set", &[("value", None)], a, kw)?;
                let old = std::mem::replace(&mut *self.value.write(), v[0].clone());
                drop(old);
                Ok(Outcome::none())
            }
            _ => Err(CallError::Python(args::no_attribute(
                self.class_name(),
                method,
            ))),
        }
    }

    fn repr(&self) -> Result<String, PyErr> {
        let tc = match &self.typecode {
            Value::Str(s) => str_repr(s),
            other => try_repr(other)?,
        };
        Ok(format!(
            "Value({tc}, {})",
            try_repr(&self.value.read().clone())?
        ))
    }

    /// `NEWOBJ(multiprocessing.managers.Value)` + `BUILD {'_typecode': …,
    /// '_value': …}`.
    fn get_value(&self) -> Result<Value, PyErr> {
        let state = Value::dict(vec![
            (Value::str("_typecode"), self.typecode.clone()),
            (Value::str("_value"), self.value.read().clone()),
        ])
        .expect("str keys");
        Ok(Value::object(Object::new_obj(
            Global::new("multiprocessing.managers", "Value"),
            vec![],
            Some(state),
        )))
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        f(&self.typecode);
        f(&self.value.read());
    }
}
