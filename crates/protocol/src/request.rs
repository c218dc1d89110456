//! [`Request`]: `(ident, method, args, kwds)`, and the public one-shot
//! operations ([`PublicOp`]).

use std::fmt;

use mpmanager_pickle::{Key, Value};

use crate::pyrepr::describe;
use crate::{text, MessageError};

/// One request, as a client sends it: `(ident, method, args, kwds)` (§3.2).
///
/// * The first request on a connection names a public operation
///   ([`PublicOp`]) and has `ident = None`.
/// * On a served connection `ident` is the object's ident and `method` a
///   method of it (or `#GETVALUE`, `__str__`, `__repr__`).
///
/// ```
/// use mpmanager_pickle::{hash::py_eq, Value};
/// use mpmanager_protocol::{PublicOp, Request};
/// // ('7f1c829a8a00', '__setitem__', ('a', 1), {})
/// let r = Request::call("7f1c829a8a00", "__setitem__", vec![Value::str("a"), Value::Int(1)], vec![]);
/// let v = r.to_value();
/// assert_eq!(Request::from_value(&v).unwrap(), r);
///
/// let create = Request::public(PublicOp::Create, vec![Value::str("dict")]);
/// assert_eq!(create.public_op(), Some(PublicOp::Create));
/// assert!(create.ident.is_none());
/// ```
#[derive(Clone, Debug)]
pub struct Request {
    /// The object ident, or `None` for public operations.
    pub ident: Option<String>,
    /// The method (or public operation) name.
    pub method: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments, in the order received.
    pub kwargs: Vec<(String, Value)>,
}

impl Request {
    /// A method call on object `ident`.
    pub fn call(
        ident: impl Into<String>,
        method: impl Into<String>,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Request {
        Request {
            ident: Some(ident.into()),
            method: method.into(),
            args,
            kwargs,
        }
    }

    /// A public operation `(None, op, args, {})`, e.g.
    /// `Request::public(PublicOp::Incref, vec![Value::str(ident)])`.
    pub fn public(op: PublicOp, args: Vec<Value>) -> Request {
        Request {
            ident: None,
            method: op.name().to_string(),
            args,
            kwargs: Vec::new(),
        }
    }

    /// The public operation this request names, if `method` is one.
    pub fn public_op(&self) -> Option<PublicOp> {
        PublicOp::from_name(&self.method)
    }

    /// The keyword argument `name`, if given.
    pub fn kwarg(&self, name: &str) -> Option<&Value> {
        self.kwargs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The wire value: `(ident or None, method, tuple(args), dict(kwargs))`.
    pub fn to_value(&self) -> Value {
        let ident = match &self.ident {
            Some(i) => Value::str(i),
            None => Value::None,
        };
        Value::tuple(vec![
            ident,
            Value::str(&self.method),
            Value::tuple(self.args.clone()),
            kwargs_value(&self.kwargs),
        ])
    }

    /// Reads a request.
    ///
    /// Accepts a 4-item tuple — or a list, as the `xmlrpclib` serializer
    /// delivers every tuple — whose items are: `ident` `None` or a `str`;
    /// `method` a `str`; `args` a tuple (or list); `kwds` a dict with `str`
    /// keys. Anything else is a [`MessageError`] saying which part is wrong.
    pub fn from_value(v: &Value) -> Result<Request, MessageError> {
        let items = match v {
            Value::Tuple(t) => t.items.clone(),
            Value::List(l) => l.read_recursive().items.clone(),
            other => {
                return Err(MessageError::RequestShape {
                    found: describe(other),
                    len: None,
                })
            }
        };
        let [ident, method, args, kwds] = items.as_slice() else {
            return Err(MessageError::RequestShape {
                found: describe(v),
                len: Some(items.len()),
            });
        };
        let ident = match ident {
            Value::None => None,
            Value::Str(_) => Some(text(ident, "request ident")?),
            other => {
                return Err(MessageError::wrong_type(
                    "request ident",
                    "None or a str",
                    other,
                ))
            }
        };
        let method = match method {
            Value::Str(_) => text(method, "request method name")?,
            other => {
                return Err(MessageError::wrong_type(
                    "request method name",
                    "a str",
                    other,
                ))
            }
        };
        let args = match args {
            Value::Tuple(t) => t.items.clone(),
            Value::List(l) => l.read_recursive().items.clone(),
            other => {
                return Err(MessageError::wrong_type(
                    "request args",
                    "a tuple (or list)",
                    other,
                ))
            }
        };
        let kwargs = kwargs_from_value(kwds, "request kwds")?;
        Ok(Request {
            ident,
            method,
            args,
            kwargs,
        })
    }
}

/// A dict value from keyword arguments.
pub(crate) fn kwargs_value(kwargs: &[(String, Value)]) -> Value {
    let mut d = mpmanager_pickle::Dict::default();
    for (k, v) in kwargs {
        d.insert(Key::str(k), v.clone());
    }
    Value::Dict(mpmanager_pickle::shared(d))
}

/// Keyword arguments from a dict value with `str` keys.
pub(crate) fn kwargs_from_value(
    v: &Value,
    field: &'static str,
) -> Result<Vec<(String, Value)>, MessageError> {
    let Value::Dict(d) = v else {
        return Err(MessageError::wrong_type(field, "a dict", v));
    };
    let d = d.read_recursive();
    let mut out = Vec::with_capacity(d.len());
    for (k, val) in d.iter() {
        match k.value() {
            Value::Str(_) => out.push((text(k.value(), "a keyword argument name")?, val.clone())),
            other => {
                return Err(MessageError::wrong_type(
                    "keyword argument names",
                    "str",
                    other,
                ))
            }
        }
    }
    Ok(out)
}

impl PartialEq for Request {
    /// Python equality of every part (`1 == 1.0` in arguments, as `==` on
    /// the tuples would say). Values that cannot be compared (too deep)
    /// are unequal.
    fn eq(&self, other: &Request) -> bool {
        let eq = |a: &Value, b: &Value| mpmanager_pickle::hash::py_eq(a, b).unwrap_or(false);
        self.ident == other.ident
            && self.method == other.method
            && self.args.len() == other.args.len()
            && self.args.iter().zip(&other.args).all(|(a, b)| eq(a, b))
            && self.kwargs.len() == other.kwargs.len()
            && self
                .kwargs
                .iter()
                .zip(&other.kwargs)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && eq(v1, v2))
    }
}

/// The public one-shot operations of a manager server (§3.3).
///
/// ```
/// use mpmanager_protocol::PublicOp;
/// assert_eq!(PublicOp::from_name("accept_connection"), Some(PublicOp::AcceptConnection));
/// assert_eq!(PublicOp::NumberOfObjects.name(), "number_of_objects");
/// assert_eq!(PublicOp::from_name("foo"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublicOp {
    /// `shutdown()`: replies `('#RETURN', None)` and stops the server.
    Shutdown,
    /// `create(typeid, *args, **kwds)` → `(ident, exposed)`.
    Create,
    /// `accept_connection(name)`: switches the connection to served mode.
    AcceptConnection,
    /// `get_methods(token)` → the exposed names.
    GetMethods,
    /// `debug_info()` → a text listing of the live objects.
    DebugInfo,
    /// `number_of_objects()` → how many objects have a positive refcount.
    NumberOfObjects,
    /// `dummy()` → `None` (a liveness and authentication check).
    Dummy,
    /// `incref(ident)`.
    Incref,
    /// `decref(ident)`.
    Decref,
}

impl PublicOp {
    /// Every operation, in CPython's `Server.public` order.
    pub const ALL: [PublicOp; 9] = [
        PublicOp::Shutdown,
        PublicOp::Create,
        PublicOp::AcceptConnection,
        PublicOp::GetMethods,
        PublicOp::DebugInfo,
        PublicOp::NumberOfObjects,
        PublicOp::Dummy,
        PublicOp::Incref,
        PublicOp::Decref,
    ];

    /// The operation named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<PublicOp> {
        PublicOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            PublicOp::Shutdown => "shutdown",
            PublicOp::Create => "create",
            PublicOp::AcceptConnection => "accept_connection",
            PublicOp::GetMethods => "get_methods",
            PublicOp::DebugInfo => "debug_info",
            PublicOp::NumberOfObjects => "number_of_objects",
            PublicOp::Dummy => "dummy",
            PublicOp::Incref => "incref",
            PublicOp::Decref => "decref",
        }
    }
}

impl fmt::Display for PublicOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
