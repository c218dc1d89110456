//! [`ServerError`]: why a server could not be set up or run.

use mpmanager_connection::ConnectionError;

/// Why a [`Server`](crate::Server) could not be bound, spawned or run.
///
/// Errors of individual connections or requests never surface here: they
/// fail that request or that connection, are logged, and the server goes on
/// serving everyone else.
///
/// ```
/// use mpmanager_server::{Server, ServerConfig, ServerError, SharedObject};
/// let config = ServerConfig::new("0.0.0.0:0".parse().unwrap(), Vec::new());
/// let err = Server::bind(config).unwrap_err();
/// assert!(matches!(err, ServerError::EmptyAuthkey { .. }));
/// let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), Vec::new());
/// let err = Server::bind(config).unwrap_err();
/// assert!(matches!(err, ServerError::EmptyAuthkeyNotAllowed));
///
/// let err = "q=Queue:many".parse::<SharedObject>().unwrap_err();
/// assert!(matches!(err, ServerError::InvalidObject { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening socket could not be created (address in use, no
    /// permission, a live server already on that unix path, …).
    #[error(transparent)]
    Listen(ConnectionError),

    /// An empty authkey was given for a TCP address that is not loopback:
    /// anyone on the network could use the server. Use a key, or listen on
    /// `127.0.0.1`, `[::1]` or a unix socket.
    #[error(
        "refusing an empty authkey on the non-loopback address {address}: \
         anyone who can reach it could use the server"
    )]
    EmptyAuthkey {
        /// The address, as given.
        address: String,
    },

    /// The authkey is empty and [`ServerConfig::allow_empty_authkey`](crate::ServerConfig::allow_empty_authkey) is not
    /// set. An empty key usually comes from a variable that was never set
    /// (`MPMANAGER_AUTHKEY="$UNSET_VAR"`) or an empty key file.
    #[error(
        "refusing an empty authkey: anyone who can connect could use the server \
         (allow it explicitly with ServerConfig::allow_empty_authkey)"
    )]
    EmptyAuthkeyNotAllowed,

    /// A named shared object (`NAME=TYPE`) is malformed, names an unknown or
    /// not yet supported type, or clashes with another typeid.
    #[error("invalid shared object {spec:?}: {reason}")]
    InvalidObject {
        /// The specification as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An operating system error while starting the server (e.g. a thread
    /// could not be spawned).
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// The server's background thread panicked (a bug; reported by
    /// [`BackgroundServer::join`](crate::BackgroundServer::join)).
    #[error("the server thread panicked")]
    Panicked,
}
