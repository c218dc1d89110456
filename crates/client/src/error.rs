//! [`ClientError`] and [`RemoteException`].

use mpmanager_connection::ConnectionError;
use mpmanager_pickle::{repr, ExcType, PyErr, Value};
use std::fmt;

/// A Python exception raised by the referent on the server and sent back as
/// `('#ERROR', exception)` (CPython's client re-raises it as is).
///
/// It keeps the exception's class (module and name, e.g. `builtins.KeyError`,
/// `_queue.Empty`) and its `args`.
///
/// ```
/// use mpmanager_client::RemoteException;
/// use mpmanager_pickle::{PyErr, Value};
/// let e = RemoteException::from(PyErr::key_error(Value::str("zz")));
/// assert!(e.is("KeyError"));
/// assert_eq!(e.module(), "builtins");
/// assert_eq!(e.to_string(), "KeyError: 'zz'");
/// ```
#[derive(Clone, Debug)]
pub struct RemoteException {
    err: PyErr,
}

impl RemoteException {
    /// The class name, e.g. `KeyError`, `Empty`.
    pub fn type_name(&self) -> &str {
        self.err.ty.name()
    }

    /// The module of the class, e.g. `builtins`, `_queue`, `queue`.
    pub fn module(&self) -> &str {
        self.err.ty.path().0
    }

    /// True if the class name is `name` (`"KeyError"`, `"Empty"`), or its
    /// dotted path is (`"queue.Full"`, `"_queue.Empty"`).
    pub fn is(&self, name: &str) -> bool {
        let (m, n) = self.err.ty.path();
        name == n || name.strip_suffix(n).and_then(|p| p.strip_suffix('.')) == Some(m)
    }

    /// The exception's `args`.
    pub fn args(&self) -> &[Value] {
        &self.err.args
    }

    /// The message: the first argument if it is a `str`
    /// (`KeyError('zz')` has none: use [`args`](Self::args)).
    pub fn message(&self) -> Option<&str> {
        match self.err.ty {
            ExcType::KeyError => None,
            _ => self.err.message(),
        }
    }

    /// The underlying [`PyErr`].
    pub fn py_err(&self) -> &PyErr {
        &self.err
    }

    /// The exception as the pickled value (`REDUCE(cls, args)`).
    pub fn to_value(&self) -> Value {
        self.err.to_value()
    }
}

impl From<PyErr> for RemoteException {
    fn from(err: PyErr) -> Self {
        RemoteException { err }
    }
}

impl fmt::Display for RemoteException {
    /// `Type: message`, as the last line of a Python traceback.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.err, f)
    }
}

impl std::error::Error for RemoteException {}

/// Everything that can go wrong when using a manager from Rust.
///
/// The questions a caller usually asks:
/// * did the *referent* raise? → [`ClientError::Exception`] (and the typed
///   [`Empty`](ClientError::Empty) / [`Full`](ClientError::Full) for
///   queues); [`ClientError::exception`] gives it;
/// * is it a transport problem, and would reconnecting help? →
///   [`is_transport`](ClientError::is_transport),
///   [`reconnect_may_help`](ClientError::reconnect_may_help).
///
/// A connection that failed in the middle of a call is never reused (the
/// client drops it and opens a new one for the next call), so after any
/// error the proxies stay usable if the server is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, authenticating, sending or receiving failed. The
    /// underlying error tells whether the server is unreachable, the key
    /// wrong, or a deadline expired.
    #[error(transparent)]
    Connection(#[from] ConnectionError),

    /// The deadline of [`Proxy::call_with_deadline`](crate::Proxy::call_with_deadline)
    /// (or a timeout given to a typed method) expired before the reply
    /// arrived. The call's connection was closed, never reused. An
    /// mpmanager server sees the close and cancels a call still waiting
    /// there: a queue `get` takes no item, a lock `acquire` takes nothing,
    /// a blocked `put` adds nothing. A call that had already completed when
    /// the deadline passed did take effect (its reply is lost), and
    /// CPython's server cancels nothing: a `get` still waiting there takes
    /// the next item put.
    #[error("deadline exceeded while waiting for the reply to {method}")]
    DeadlineExceeded {
        /// The method called.
        method: String,
    },

    /// The referent raised a Python exception (`#ERROR` reply): `KeyError`,
    /// `IndexError`, `AttributeError`, `StopIteration`, ….
    #[error("remote exception: {0}")]
    Exception(RemoteException),

    /// `queue.Empty` (`_queue.Empty`) raised by a queue's `get`.
    #[error("queue.Empty")]
    Empty,

    /// `queue.Full` raised by a queue's `put`.
    #[error("queue.Full")]
    Full,

    /// The server could not run the request (`#TRACEBACK`: unknown method
    /// or typeid, bad arguments to `create`, …) or could not pickle the
    /// reply (`#UNSERIALIZABLE`). CPython's client raises `RemoteError`
    /// with this text.
    #[error("remote error:\n{0}")]
    RemoteError(String),

    /// The server sent something that is not a well-formed reply.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// A request could not be pickled (e.g. a value nested too deep); the
    /// source says why. Nothing was sent.
    #[error("cannot pickle the request")]
    Encode(#[source] Box<mpmanager_pickle::EncodeError>),

    /// A reply could not be unpickled; the source says why. The connection
    /// is dropped.
    #[error("cannot unpickle the reply")]
    Decode(#[source] Box<mpmanager_pickle::DecodeError>),

    /// A Rust value could not be converted to or from a Python value
    /// (e.g. asking for an `i64` where the server holds a `str`).
    #[error(transparent)]
    Convert(#[from] mpmanager_pickle::SerdeError),

    /// A Namespace attribute whose name starts with `_`: CPython's
    /// `NamespaceProxy` keeps those on the proxy object and never sends
    /// them, so this client refuses them.
    #[error("namespace attribute {0:?} starts with '_': such names are local to a Python proxy and never reach the server")]
    PrivateName(String),

    /// A proxy string (from [`Proxy::to_proxy_string`](crate::Proxy::to_proxy_string))
    /// or a value that should hold a pickled proxy could not be read.
    #[error("not a proxy: {0}")]
    NotAProxy(String),

    /// The in-process server of [`Manager::start_in_background`](crate::Manager::start_in_background)
    /// could not start.
    #[cfg(feature = "server")]
    #[error("cannot start the server")]
    Server(#[from] mpmanager_server::ServerError),

    /// The server process of [`Manager::start_server_process`](crate::Manager::start_server_process)
    /// could not be started, or exited or hung before listening; the
    /// message includes its stderr. Check the binary path and the address.
    #[error("cannot start the server process: {0}")]
    ServerProcess(String),

    /// The manager was shut down (by [`Manager::shutdown`](crate::Manager::shutdown)
    /// or by dropping the manager that ran the server).
    #[error("the manager has been shut down")]
    ManagerShutDown,
}

impl ClientError {
    /// The Python exception, for [`Exception`](Self::Exception),
    /// [`Empty`](Self::Empty) and [`Full`](Self::Full) (the latter two
    /// rebuilt as `_queue.Empty()` / `queue.Full()`).
    pub fn exception(&self) -> Option<RemoteException> {
        match self {
            ClientError::Exception(e) => Some(e.clone()),
            ClientError::Empty => {
                Some(PyErr::with_args(queue_exc("_queue", "Empty"), vec![]).into())
            }
            ClientError::Full => Some(PyErr::with_args(queue_exc("queue", "Full"), vec![]).into()),
            _ => None,
        }
    }

    /// True if the referent raised an exception of class `name`
    /// (see [`RemoteException::is`]).
    pub fn is_exception(&self, name: &str) -> bool {
        self.exception().is_some_and(|e| e.is(name))
    }

    /// True for failures of the transport (connection, deadline), as
    /// opposed to answers from the server.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ClientError::Connection(_) | ClientError::DeadlineExceeded { .. }
        )
    }

    /// Could trying again, on a new connection, succeed? True when the
    /// server was unreachable or slow (connection refused, no socket file
    /// yet, timed out, connection reset or closed mid-call), false for a
    /// wrong authkey, a bad address, an oversized or malformed frame, a
    /// shut-down manager, and any answer of the server (exceptions, remote
    /// errors).
    ///
    /// A call that failed mid-way may or may not have run on the server:
    /// retry only what is safe to repeat.
    pub fn reconnect_may_help(&self) -> bool {
        match self {
            ClientError::Connection(e) => match e {
                ConnectionError::Connect { .. } => e.is_retryable(),
                ConnectionError::Io(_)
                | ConnectionError::Closed
                | ConnectionError::Truncated { .. }
                | ConnectionError::Timeout { .. }
                | ConnectionError::Poisoned => true,
                _ => false,
            },
            ClientError::DeadlineExceeded { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn from_remote(err: PyErr) -> ClientError {
        let (m, n) = err.ty.path();
        match (m, n) {
            ("_queue" | "queue", "Empty") => ClientError::Empty,
            ("queue", "Full") => ClientError::Full,
            _ => ClientError::Exception(err.into()),
        }
    }
}

fn queue_exc(module: &str, name: &str) -> ExcType {
    ExcType::Other(std::sync::Arc::new(mpmanager_pickle::Global::new(
        module, name,
    )))
}

pub(crate) fn encode_err(e: mpmanager_pickle::EncodeError) -> ClientError {
    ClientError::Encode(Box::new(e))
}

pub(crate) fn decode_err(e: mpmanager_pickle::DecodeError) -> ClientError {
    ClientError::Decode(Box::new(e))
}

/// `repr()` of a value, for error texts.
pub(crate) fn py_repr(v: &Value) -> String {
    repr(v)
}

/// `Result<T, ClientError>`.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
