//! The [`Referent`] trait: what the server dispatches method calls to.
//!
//! A referent is one shared object living in the manager server (a `list`, a
//! `dict`, a `Namespace`, a user's Rust type …). The server finds it in the
//! [`Registry`](crate::Registry) by ident and calls [`Referent::call`] with
//! the method name and arguments a client sent.
//!
//! # Concurrency contract
//!
//! * `call` takes `&self`: every referent does its own locking (the built-in
//!   types hold a `parking_lot::RwLock` around their data), so calls on
//!   different objects never contend, and calls on one object only contend
//!   on that object's lock. The registry holds **no** lock while `call` runs.
//! * A blocking method (a queue `get`, a lock `acquire`) may block inside
//!   `call`; it blocks only the calling connection's thread. It must not
//!   hold its data lock while waiting (use a condition variable), so that
//!   other connections can still call the object.
//! * A referent must never call back into the registry from `call`,
//!   `repr`, `get_value` or `visit_values` (the registry may be inside a
//!   collection); return [`Outcome::NewObject`] to have the registry
//!   register a new object instead.

use std::sync::Arc;

use mpmanager_pickle::{Key, PyErr, Value};

pub use crate::context::{CallContext, Closed};

/// Keyword arguments of a call or `create`, in the order the client sent
/// them. Names are always `str` (CPython rejects other keys before sending).
///
/// ```
/// use mpmanager_objects::Kwargs;
/// use mpmanager_pickle::Value;
/// let kw = Kwargs::from_pairs(vec![("reverse".into(), Value::Bool(true))]);
/// assert!(kw.get("reverse").is_some());
/// assert!(kw.get("key").is_none());
/// assert_eq!(kw.len(), 1);
/// ```
#[derive(Clone, Default, Debug)]
pub struct Kwargs {
    pairs: Vec<(String, Value)>,
}

impl Kwargs {
    /// No keyword arguments.
    pub fn new() -> Kwargs {
        Kwargs::default()
    }

    /// Keyword arguments from name/value pairs (a later duplicate wins, as
    /// in a Python `dict`).
    pub fn from_pairs(pairs: Vec<(String, Value)>) -> Kwargs {
        let mut kw = Kwargs::new();
        for (k, v) in pairs {
            kw.insert(k, v);
        }
        kw
    }

    /// Keyword arguments from a decoded `kwds` value (a `dict` with `str`
    /// keys). `None` is accepted as "no keywords". Anything else raises
    /// `TypeError`, as Python's `f(**kwds)` would.
    ///
    /// ```
    /// use mpmanager_objects::Kwargs;
    /// use mpmanager_pickle::Value;
    /// let d = Value::dict(vec![(Value::str("ferrets"), Value::Int(2))]).unwrap();
    /// assert_eq!(Kwargs::from_value(&d).unwrap().len(), 1);
    /// assert!(Kwargs::from_value(&Value::Int(1)).is_err());
    /// ```
    pub fn from_value(v: &Value) -> Result<Kwargs, PyErr> {
        match v {
            Value::None => Ok(Kwargs::new()),
            Value::Dict(d) => {
                let d = d.read_recursive();
                let mut kw = Kwargs::new();
                for (k, v) in d.iter() {
                    match k.value() {
                        Value::Str(s) => kw.insert(s.to_string_lossy().into_owned(), v.clone()),
                        _ => return Err(PyErr::type_error("keywords must be strings")),
                    }
                }
                Ok(kw)
            }
            other => Err(PyErr::type_error(format!(
                "argument after ** must be a mapping, not {}",
                other.type_name()
            ))),
        }
    }

    /// Adds (or replaces) one keyword argument.
    pub fn insert(&mut self, name: String, value: Value) {
        match self.pairs.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.pairs.push((name, value)),
        }
    }

    /// The value of keyword `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The number of keyword arguments.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The keywords as a Python `dict` value.
    pub fn to_value(&self) -> Value {
        let mut d = mpmanager_pickle::Dict::default();
        for (k, v) in &self.pairs {
            d.insert(Key::str(k), v.clone());
        }
        Value::Dict(mpmanager_pickle::shared(d))
    }
}

/// What a successful method call produced.
#[derive(Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// A value to send back as `('#RETURN', value)`.
    Return(Value),
    /// A new shared object to register (refcount 1) and send back as
    /// `('#PROXY', (exposed, Token(typeid, address, ident)))`, as CPython's
    /// `method_to_typeid` does (`dict.__iter__` → an `Iterator`).
    NewObject {
        /// The typeid of the new object; it must be registered (its spec
        /// gives the exposed list the client receives).
        typeid: String,
        /// The new object.
        object: Arc<dyn Referent>,
    },
}

impl Outcome {
    /// `('#RETURN', None)`.
    pub fn none() -> Outcome {
        Outcome::Return(Value::None)
    }
}

impl From<Value> for Outcome {
    fn from(v: Value) -> Outcome {
        Outcome::Return(v)
    }
}

/// Why a call failed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CallError {
    /// A Python exception raised by the referent's method: sent as
    /// `('#ERROR', exception)`, re-raised as-is by the client.
    Python(PyErr),
    /// A failure outside the method itself (unknown ident, method not
    /// exposed, a one-shot operation failing): sent as
    /// `('#TRACEBACK', text)`, raised as `RemoteError(text)` by the client.
    Traceback(String),
    /// The client is gone ([`CallContext::is_cancelled`]): the call gave up
    /// and took nothing. Nothing is sent; the server closes the connection.
    Cancelled,
}

impl CallError {
    /// A `#TRACEBACK` whose text ends with `err` as Python prints it, e.g.
    /// `KeyError: 'foo'`; `location` names where it happened.
    ///
    /// ```
    /// use mpmanager_objects::CallError;
    /// use mpmanager_pickle::PyErr;
    /// let e = CallError::traceback(&PyErr::type_error("bad"), "create");
    /// let CallError::Traceback(text) = e else { panic!() };
    /// assert!(text.starts_with("Traceback (most recent call last):\n"));
    /// assert!(text.ends_with("TypeError: bad\n"));
    /// ```
    pub fn traceback(err: &PyErr, location: &str) -> CallError {
        CallError::Traceback(mpmanager_protocol::traceback::for_error(err, location))
    }

    /// The `'#ERROR'`/`'#TRACEBACK'` message kind this error is sent as.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Python(_) => "#ERROR",
            CallError::Traceback(_) | CallError::Cancelled => "#TRACEBACK",
        }
    }
}

impl From<PyErr> for CallError {
    fn from(e: PyErr) -> CallError {
        CallError::Python(e)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Python(e) => write!(f, "{e}"),
            CallError::Traceback(t) => f.write_str(t.trim_end()),
            CallError::Cancelled => f.write_str("the call was cancelled: its client is gone"),
        }
    }
}

impl std::error::Error for CallError {}

/// CPython's default `repr`: `<module.Class object at 0x7f…>`, with the
/// address of the object in this process.
pub(crate) fn object_repr(class: &str, addr: *const ()) -> String {
    format!("<{class} object at {:#x}>", addr as usize)
}

/// One shared object in the manager server.
///
/// Implement this for a custom Rust type to serve it like a
/// `BaseManager.register('Maths', MathsClass)` registration:
///
/// ```
/// use std::sync::atomic::{AtomicI64, Ordering};
/// use mpmanager_objects::{CallContext, CallError, Kwargs, Outcome, Referent, args};
/// use mpmanager_pickle::{PyErr, Value};
///
/// struct Counter(AtomicI64);
///
/// impl Referent for Counter {
///     fn class_name(&self) -> &str { "Counter" }
///     fn call(&self, _cx: &CallContext, method: &str, a: &[Value], kw: &Kwargs)
///         -> Result<Outcome, CallError>
///     {
///         match method {
///             "add" => {
///                 args::no_kwargs("Counter.add", kw)?;
///                 let n = args::index(args::one("Counter.add", a)?)?;
///                 Ok(Value::Int(self.0.fetch_add(n, Ordering::SeqCst) + n).into())
///             }
///             _ => Err(CallError::Python(args::no_attribute(self.class_name(), method))),
///         }
///     }
///     fn repr(&self) -> Result<String, PyErr> {
///         Ok(format!("Counter({})", self.0.load(Ordering::SeqCst)))
///     }
///     fn get_value(&self) -> Result<Value, PyErr> {
///         Ok(Value::Int(self.0.load(Ordering::SeqCst)))
///     }
/// }
///
/// let c = Counter(AtomicI64::new(1));
/// let cx = CallContext::new(0);
/// let Outcome::Return(v) = c.call(&cx, "add", &[Value::Int(2)], &Kwargs::new()).unwrap()
///     else { panic!() };
/// assert_eq!(v.as_i64(), Some(3));
/// assert_eq!(c.repr().unwrap(), "Counter(3)");
/// ```
pub trait Referent: Send + Sync + 'static {
    /// The Python class name, as `type(obj).__qualname__` would show it
    /// qualified by module for non-builtins (`"list"`,
    /// `"multiprocessing.managers.Namespace"`, `"array.array"`). Used in
    /// error texts such as `method 'x' of <class 'list'> object is not in
    /// exposed=…`.
    fn class_name(&self) -> &str;

    /// Runs method `method` with `args` and `kwargs`.
    ///
    /// Only called for names in the typeid's exposed list. A Python
    /// exception the method raises is `Err(CallError::Python(..))`; if the
    /// object has no such method at all, return the `AttributeError` of
    /// [`args::no_attribute`](crate::args::no_attribute) wrapped in
    /// `CallError::Python` (the registry turns it into the `#TRACEBACK`
    /// CPython sends for an exposed-but-missing attribute).
    fn call(
        &self,
        cx: &CallContext,
        method: &str,
        args: &[Value],
        kwargs: &Kwargs,
    ) -> Result<Outcome, CallError>;

    /// `repr(obj)`: answers the `__repr__` fallback (what `str(proxy)`
    /// shows) and is the text of `debug_info`.
    fn repr(&self) -> Result<String, PyErr>;

    /// `str(obj)`: answers the `__str__` fallback. Defaults to
    /// [`Referent::repr`], as for every built-in type.
    fn str(&self) -> Result<String, PyErr> {
        self.repr()
    }

    /// `#GETVALUE`: a picklable snapshot of the object (what
    /// `proxy._getvalue()` and `copy.deepcopy(proxy)` return).
    ///
    /// An error means the object cannot be pickled (a queue or an event
    /// holds locks: `TypeError: cannot pickle '_thread.lock' object`); it
    /// is sent as `('#UNSERIALIZABLE', traceback)`, as CPython's server
    /// does when pickling the referent fails, and the client raises
    /// `RemoteError`.
    fn get_value(&self) -> Result<Value, PyErr>;

    /// Calls `f` on every [`Value`] this object holds (not recursively: the
    /// registry walks nested containers itself). The registry's collector
    /// uses it to find proxies to other shared objects kept inside this one.
    /// Types that never store client values can keep the default, which
    /// visits nothing.
    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        let _ = f;
    }

    /// This object as `Any`, for a [`RegistryConstructor`](crate::registry::RegistryConstructor)
    /// that needs the concrete type of another shared object (a
    /// `Condition` built on a shared `Lock`). The default, `None`, means
    /// "not available".
    fn into_any(self: Arc<Self>) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        None
    }

    /// True if `method` may wait for another client (a queue `get`, a lock
    /// `acquire`). The server writes the replies it holds back for a
    /// pipelining client before such a call, so that no reply waits behind
    /// it. The default, `true`, is always safe; a type whose methods never
    /// wait answers `false` and keeps pipelined replies batched.
    fn may_block(&self, method: &str) -> bool {
        let _ = method;
        true
    }

    /// The reply of a successful `method` call could not be delivered: its
    /// client was gone before the reply was sent. Undo what the call took
    /// for the client (a queue puts the item back at its head, a lock
    /// releases the acquisition) and describe it for the server's log, or
    /// return `None` if the call took nothing. `value` is what the call
    /// returned.
    fn reply_lost(&self, cx: &CallContext, method: &str, value: &Value) -> Option<String> {
        let _ = (cx, method, value);
        None
    }

    /// A connection whose calls said they [hold](CallContext::hold)
    /// something in this object has closed: release what it held (an
    /// `RLock` at every level, and with
    /// [`Closed::release_unowned`] a plain lock or permits), wake whoever
    /// waits for it, and describe each release for the server's log.
    fn connection_closed(&self, closed: &Closed) -> Vec<String> {
        let _ = closed;
        Vec::new()
    }
}

impl std::fmt::Debug for dyn Referent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.repr() {
            Ok(r) => f.write_str(&r),
            Err(_) => write!(f, "<{} object>", self.class_name()),
        }
    }
}
