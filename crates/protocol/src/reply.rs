//! [`Reply`]: `(kind, payload)` sent by the server (§3.6, §3.7).

use mpmanager_pickle::{PyErr, Value};

use crate::pyrepr::{describe, repr};
use crate::{text, MessageError, Token};

/// The reply kinds, as sent.
pub mod kind {
    /// `('#RETURN', result)`.
    pub const RETURN: &str = "#RETURN";
    /// `('#ERROR', exception)`.
    pub const ERROR: &str = "#ERROR";
    /// `('#TRACEBACK', text)`.
    pub const TRACEBACK: &str = "#TRACEBACK";
    /// `('#UNSERIALIZABLE', text)`.
    pub const UNSERIALIZABLE: &str = "#UNSERIALIZABLE";
    /// `('#PROXY', (exposed, token))`.
    pub const PROXY: &str = "#PROXY";
}

/// One reply from a manager server (§3.6).
///
/// ```
/// use mpmanager_pickle::{hash::py_eq, PyErr, Value};
/// use mpmanager_protocol::Reply;
/// // ('#ERROR', KeyError('zz'))
/// let r = Reply::error(&PyErr::key_error(Value::str("zz")));
/// let v = r.to_value();
/// let back = Reply::from_value(&v).unwrap();
/// assert_eq!(back.as_py_err().unwrap().ty.name(), "KeyError");
/// assert!(py_eq(&back.to_value(), &v).unwrap());
///
/// let bad = Value::tuple(vec![Value::str("#FOO"), Value::None]);
/// assert_eq!(Reply::from_value(&bad).unwrap_err().to_string(), "Unrecognized message type '#FOO'");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Reply {
    /// `('#RETURN', value)`: the call's result.
    Return(Value),
    /// `('#ERROR', exception)`: the exception object the referent raised,
    /// as sent; the client re-raises it. See [`Reply::error`] and
    /// [`Reply::as_py_err`].
    Error(Value),
    /// `('#TRACEBACK', text)`: a failure outside the referent's call; the
    /// client raises `RemoteError(text)`.
    Traceback(String),
    /// `('#UNSERIALIZABLE', text)`: the real reply could not be pickled;
    /// the client raises `RemoteError('Unserializable message: %s\n' % text)`.
    Unserializable(String),
    /// `('#PROXY', (exposed, token))`: the result is a new managed object
    /// (§3.7).
    Proxy {
        /// Its exposed method names, in wire order.
        exposed: Vec<String>,
        /// Its token.
        token: Token,
    },
}

impl Reply {
    /// `('#ERROR', exc)` for a [`PyErr`] (pickled as `REDUCE(cls, args)`).
    pub fn error(err: &PyErr) -> Reply {
        Reply::Error(err.to_value())
    }

    /// `('#RETURN', None)`.
    pub fn none() -> Reply {
        Reply::Return(Value::None)
    }

    /// The kind string (`#RETURN`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Return(_) => kind::RETURN,
            Reply::Error(_) => kind::ERROR,
            Reply::Traceback(_) => kind::TRACEBACK,
            Reply::Unserializable(_) => kind::UNSERIALIZABLE,
            Reply::Proxy { .. } => kind::PROXY,
        }
    }

    /// For an `#ERROR` reply, the exception as a [`PyErr`] (class and
    /// args; a `BUILD` state on the exception is ignored). `None` for other
    /// kinds, or when the payload is not an exception-shaped object.
    pub fn as_py_err(&self) -> Option<PyErr> {
        match self {
            Reply::Error(v) => PyErr::from_value(v),
            _ => None,
        }
    }

    /// The text a CPython client's `RemoteError` carries for this reply:
    /// the traceback for `#TRACEBACK`, `'Unserializable message: %s\n' %
    /// text` for `#UNSERIALIZABLE`; `None` for other kinds. Format it for
    /// display with [`crate::traceback::remote_error_str`].
    pub fn remote_error_text(&self) -> Option<String> {
        match self {
            Reply::Traceback(t) => Some(t.clone()),
            Reply::Unserializable(t) => Some(format!("Unserializable message: {t}\n")),
            _ => None,
        }
    }

    /// The wire value, a 2-tuple `(kind, payload)`; for `#PROXY` the payload
    /// is `(exposed_tuple, Token)`.
    pub fn to_value(&self) -> Value {
        let payload = match self {
            Reply::Return(v) | Reply::Error(v) => v.clone(),
            Reply::Traceback(t) | Reply::Unserializable(t) => Value::str(t),
            Reply::Proxy { exposed, token } => Value::tuple(vec![
                Value::tuple(exposed.iter().map(|s| Value::str(s)).collect()),
                token.to_value(),
            ]),
        };
        Value::tuple(vec![Value::str(self.kind()), payload])
    }

    /// Reads a reply: a 2-tuple (or a 2-list, as `xmlrpclib` delivers it)
    /// whose first item is one of the five kinds. An unknown kind is
    /// [`MessageError::UnknownReplyKind`] (CPython's client raises
    /// `ValueError("Unrecognized message type '...'")`); a non-`str`
    /// traceback is [`MessageError::WrongType`] (CPython: `TypeError`).
    ///
    /// Lone surrogates in a traceback text are replaced by U+FFFD.
    pub fn from_value(v: &Value) -> Result<Reply, MessageError> {
        let items = match v {
            Value::Tuple(t) => t.items.clone(),
            Value::List(l) => l.read_recursive().items.clone(),
            other => {
                return Err(MessageError::ReplyShape {
                    found: describe(other),
                })
            }
        };
        let [k, payload] = items.as_slice() else {
            return Err(MessageError::ReplyShape { found: describe(v) });
        };
        let unknown = || MessageError::UnknownReplyKind { kind: repr(k) };
        let k = k.as_str().ok_or_else(unknown)?;
        let lossy = |field: &'static str| match payload {
            Value::Str(s) => Ok(s.to_string_lossy().into_owned()),
            other => Err(MessageError::wrong_type(field, "a str", other)),
        };
        Ok(match k {
            kind::RETURN => Reply::Return(payload.clone()),
            kind::ERROR => Reply::Error(payload.clone()),
            kind::TRACEBACK => Reply::Traceback(lossy("a #TRACEBACK payload")?),
            kind::UNSERIALIZABLE => Reply::Unserializable(lossy("an #UNSERIALIZABLE payload")?),
            kind::PROXY => {
                let pair = match payload {
                    Value::Tuple(t) => t.items.clone(),
                    Value::List(l) => l.read_recursive().items.clone(),
                    other => {
                        return Err(MessageError::wrong_type(
                            "a #PROXY payload",
                            "an (exposed, token) tuple",
                            other,
                        ))
                    }
                };
                let [exposed, token] = pair.as_slice() else {
                    return Err(MessageError::wrong_type(
                        "a #PROXY payload",
                        "an (exposed, token) tuple",
                        payload,
                    ));
                };
                Reply::Proxy {
                    exposed: names(exposed, "#PROXY exposed")?,
                    token: Token::from_value(token)?,
                }
            }
            _ => return Err(unknown()),
        })
    }
}

/// A tuple (or list) of `str` names.
pub(crate) fn names(v: &Value, field: &'static str) -> Result<Vec<String>, MessageError> {
    let items = match v {
        Value::Tuple(t) => t.items.clone(),
        Value::List(l) => l.read_recursive().items.clone(),
        other => return Err(MessageError::wrong_type(field, "a tuple of str", other)),
    };
    items
        .iter()
        .map(|n| match n {
            Value::Str(_) => text(n, field),
            other => Err(MessageError::wrong_type(field, "a tuple of str", other)),
        })
        .collect()
}

impl PartialEq for Reply {
    /// Same kind and Python-equal payloads.
    fn eq(&self, other: &Reply) -> bool {
        let eq = |a: &Value, b: &Value| mpmanager_pickle::hash::py_eq(a, b).unwrap_or(false);
        match (self, other) {
            (Reply::Return(a), Reply::Return(b)) | (Reply::Error(a), Reply::Error(b)) => eq(a, b),
            (Reply::Traceback(a), Reply::Traceback(b)) => a == b,
            (Reply::Unserializable(a), Reply::Unserializable(b)) => a == b,
            (
                Reply::Proxy {
                    exposed: e1,
                    token: t1,
                },
                Reply::Proxy {
                    exposed: e2,
                    token: t2,
                },
            ) => e1 == e2 && t1 == t2,
            _ => false,
        }
    }
}
