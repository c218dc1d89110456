//! [`MessageError`]: why a value is not a well-formed manager message.

use mpmanager_pickle::{ExcType, PyErr};

/// A value received from a peer is not the message it should be.
///
/// Every variant says which part was wrong and what was found, so that the
/// text is useful in a log or a `#TRACEBACK` reply. [`MessageError::to_py_err`]
/// gives the exception CPython would raise in the same situation.
///
/// ```
/// use mpmanager_pickle::Value;
/// use mpmanager_protocol::{MessageError, Request};
/// let err = Request::from_value(&Value::tuple(vec![Value::None, Value::str("dummy")])).unwrap_err();
/// assert!(matches!(err, MessageError::RequestShape { len: Some(2), .. }));
/// assert_eq!(
///     err.to_string(),
///     "a request must be a 4-tuple (ident, method, args, kwds), got a tuple of 2 items"
/// );
/// assert_eq!(err.to_py_err().to_string(), "ValueError: not enough values to unpack (expected 4, got 2)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A request is not a 4-item tuple (or list).
    #[error("a request must be a 4-tuple (ident, method, args, kwds), got a {found}")]
    RequestShape {
        /// What was received, e.g. `tuple of 2 items` or `int`.
        found: String,
        /// The number of items, when it was a tuple or list.
        len: Option<usize>,
    },
    /// A reply is not a 2-item tuple (or list).
    #[error("a reply must be a 2-tuple (kind, payload), got a {found}")]
    ReplyShape {
        /// What was received.
        found: String,
    },
    /// A reply's kind is not one of `#RETURN`, `#ERROR`, `#TRACEBACK`,
    /// `#UNSERIALIZABLE`, `#PROXY`.
    #[error("Unrecognized message type {kind}")]
    UnknownReplyKind {
        /// The kind as Python's `repr` shows it, e.g. `'#FOO'`.
        kind: String,
    },
    /// A part of a message has the wrong Python type.
    #[error("{field} must be {expected}, got {found}")]
    WrongType {
        /// Which part, e.g. `request ident`.
        field: &'static str,
        /// What it must be, e.g. `None or a str`.
        expected: &'static str,
        /// What was received, e.g. `int`.
        found: String,
    },
    /// A text part holds lone surrogates (e.g. `'\udc80'`), which no method
    /// name, ident, keyword or typeid can contain.
    #[error("{field} contains lone surrogate code points: {repr}")]
    Surrogates {
        /// Which part.
        field: &'static str,
        /// The text as Python's `repr` shows it.
        repr: String,
    },
    /// A value that should be a `multiprocessing.managers.Token` is not one.
    #[error("not a multiprocessing.managers.Token: {reason}")]
    BadToken {
        /// What is wrong.
        reason: String,
    },
    /// A token address is not a `(host, port)` tuple, a `str` path or an
    /// abstract-namespace `bytes` name.
    #[error("bad manager address {found}: {reason}")]
    BadAddress {
        /// The address as received.
        found: String,
        /// What is wrong.
        reason: String,
    },
    /// A value that should be a pickled proxy
    /// (`multiprocessing.managers.RebuildProxy(func, token, serializer, kwds)`)
    /// is not one.
    #[error("not a pickled proxy (RebuildProxy): {reason}")]
    BadProxy {
        /// What is wrong.
        reason: String,
    },
}

impl MessageError {
    pub(crate) fn wrong_type(
        field: &'static str,
        expected: &'static str,
        found: &mpmanager_pickle::Value,
    ) -> MessageError {
        MessageError::WrongType {
            field,
            expected,
            found: crate::pyrepr::describe(found),
        }
    }

    /// The exception CPython raises for the same malformed message, for a
    /// `#TRACEBACK` reply or a client-side error:
    ///
    /// * a request of the wrong length → `ValueError: not enough values to
    ///   unpack (expected 4, got 2)` / `too many values to unpack (expected 4)`;
    ///   not a sequence at all → `TypeError: cannot unpack non-iterable int object`;
    /// * an unknown reply kind → `ValueError: Unrecognized message type '#FOO'`;
    /// * anything else → `TypeError` with this error's text.
    pub fn to_py_err(&self) -> PyErr {
        match self {
            MessageError::RequestShape { len: Some(n), .. } if *n < 4 => {
                PyErr::value_error(format!("not enough values to unpack (expected 4, got {n})"))
            }
            MessageError::RequestShape { len: Some(_), .. } => {
                PyErr::value_error("too many values to unpack (expected 4)")
            }
            MessageError::RequestShape { found, len: None } => {
                PyErr::type_error(format!("cannot unpack non-iterable {found} object"))
            }
            MessageError::UnknownReplyKind { .. } => {
                PyErr::new(ExcType::ValueError, self.to_string())
            }
            _ => PyErr::type_error(self.to_string()),
        }
    }
}
