//! Python exceptions raised by the value model's operations.
//!
//! The server sends these back to clients as `('#ERROR', exception)`, so
//! they carry the real Python type (`KeyError`, `queue.Empty`, …) and
//! arguments, and turn into the pickle a CPython client expects with
//! [`PyErr::to_value`].

use std::fmt;
use std::sync::Arc;

use crate::value::{Global, Object, Value};

/// The class of a Python exception.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExcType {
    /// `TypeError`
    TypeError,
    /// `ValueError`
    ValueError,
    /// `IndexError`
    IndexError,
    /// `KeyError`
    KeyError,
    /// `AttributeError`
    AttributeError,
    /// `RuntimeError`
    RuntimeError,
    /// `RecursionError`
    RecursionError,
    /// `OverflowError`
    OverflowError,
    /// `ZeroDivisionError`
    ZeroDivisionError,
    /// `StopIteration`
    StopIteration,
    /// `MemoryError`
    MemoryError,
    /// `NotImplementedError`
    NotImplementedError,
    /// `UnicodeDecodeError` (raised with a plain message here)
    UnicodeError,
    /// Any other class, by module and name (e.g. `_queue.Empty`).
    Other(Arc<Global>),
}

impl ExcType {
    /// The module and name of the class, as pickled.
    pub fn path(&self) -> (&str, &str) {
        let name = match self {
            ExcType::TypeError => "TypeError",
            ExcType::ValueError => "ValueError",
            ExcType::IndexError => "IndexError",
            ExcType::KeyError => "KeyError",
            ExcType::AttributeError => "AttributeError",
            ExcType::RuntimeError => "RuntimeError",
            ExcType::RecursionError => "RecursionError",
            ExcType::OverflowError => "OverflowError",
            ExcType::ZeroDivisionError => "ZeroDivisionError",
            ExcType::StopIteration => "StopIteration",
            ExcType::MemoryError => "MemoryError",
            ExcType::NotImplementedError => "NotImplementedError",
            ExcType::UnicodeError => "UnicodeError",
            ExcType::Other(g) => return (&g.module, &g.name),
        };
        ("builtins", name)
    }

    /// The class name alone (`KeyError`, `Empty`).
    pub fn name(&self) -> &str {
        self.path().1
    }
}

/// A Python exception: its class and its `args`.
///
/// ```
/// use mpmanager_pickle::{PyErr, ExcType};
/// let e = PyErr::new(ExcType::IndexError, "list index out of range");
/// assert_eq!(e.to_string(), "IndexError: list index out of range");
/// ```
#[derive(Clone)]
pub struct PyErr {
    /// The exception class.
    pub ty: ExcType,
    /// The exception's `args`.
    pub args: Vec<Value>,
}

impl PyErr {
    /// An exception with a single message argument.
    pub fn new(ty: ExcType, msg: impl Into<String>) -> PyErr {
        PyErr {
            ty,
            args: vec![Value::from(msg.into())],
        }
    }

    /// An exception with the given `args`.
    pub fn with_args(ty: ExcType, args: Vec<Value>) -> PyErr {
        PyErr { ty, args }
    }

    /// `TypeError(msg)`.
    pub fn type_error(msg: impl Into<String>) -> PyErr {
        PyErr::new(ExcType::TypeError, msg)
    }

    /// `ValueError(msg)`.
    pub fn value_error(msg: impl Into<String>) -> PyErr {
        PyErr::new(ExcType::ValueError, msg)
    }

    /// `IndexError(msg)`.
    pub fn index_error(msg: impl Into<String>) -> PyErr {
        PyErr::new(ExcType::IndexError, msg)
    }

    /// `KeyError(key)`.
    pub fn key_error(key: Value) -> PyErr {
        PyErr::with_args(ExcType::KeyError, vec![key])
    }

    /// `RecursionError('maximum recursion depth exceeded …')`.
    pub fn recursion(what: &str) -> PyErr {
        PyErr::new(
            ExcType::RecursionError,
            format!("maximum recursion depth exceeded {what}"),
        )
    }

    /// The message: the first argument if it is a `str`.
    pub fn message(&self) -> Option<&str> {
        self.args.first().and_then(Value::as_str)
    }

    /// The exception as a picklable value: `REDUCE(cls, args)`, the form
    /// every CPython 3.8+ client loads.
    pub fn to_value(&self) -> Value {
        let (m, n) = self.ty.path();
        Value::object(Object::reduce(Value::global(m, n), self.args.clone()))
    }

    /// Reads an exception back from a value produced by
    /// [`PyErr::to_value`] or by CPython (`REDUCE(cls, args)`, possibly
    /// followed by a `BUILD` state, which is ignored).
    pub fn from_value(v: &Value) -> Option<PyErr> {
        let Value::Object(o) = v else { return None };
        let o = o.read_recursive();
        let g = o.global()?;
        let ty = match (&*g.module, &*g.name) {
            ("builtins", "TypeError") => ExcType::TypeError,
            ("builtins", "ValueError") => ExcType::ValueError,
            ("builtins", "IndexError") => ExcType::IndexError,
            ("builtins", "KeyError") => ExcType::KeyError,
            ("builtins", "AttributeError") => ExcType::AttributeError,
            ("builtins", "RuntimeError") => ExcType::RuntimeError,
            ("builtins", "RecursionError") => ExcType::RecursionError,
            ("builtins", "OverflowError") => ExcType::OverflowError,
            ("builtins", "ZeroDivisionError") => ExcType::ZeroDivisionError,
            ("builtins", "StopIteration") => ExcType::StopIteration,
            ("builtins", "MemoryError") => ExcType::MemoryError,
            ("builtins", "NotImplementedError") => ExcType::NotImplementedError,
            _ => ExcType::Other(Arc::new(g.clone())),
        };
        Some(PyErr {
            ty,
            args: o.args_slice().to_vec(),
        })
    }
}

impl fmt::Display for PyErr {
    /// `Type: message`, as the last line of a Python traceback shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.ty.name();
        match self.args.as_slice() {
            [] => f.write_str(name),
            [Value::Str(s)] if !matches!(self.ty, ExcType::KeyError) => {
                write!(f, "{name}: {}", s.to_string_lossy())
            }
            [one] => write!(f, "{name}: {}", crate::repr::repr(one)),
            many => write!(
                f,
                "{name}: {}",
                crate::repr::repr(&Value::tuple(many.to_vec()))
            ),
        }
    }
}

impl fmt::Debug for PyErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for PyErr {}
