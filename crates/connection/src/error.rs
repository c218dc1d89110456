//! The crate's single error type.

use std::io;
use std::time::Duration;

/// Why an authentication handshake was refused (see [`ConnectionError::AuthenticationFailed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// We answered the peer's challenge and the peer did not reply `#WELCOME#`
    /// (CPython: `AuthenticationError('digest sent was rejected')`). Almost
    /// always a wrong authkey on one side.
    DigestRejected,
    /// The peer's answer to our challenge had the right form but the wrong MAC
    /// (CPython: `'digest received was wrong'`). We sent `#FAILURE#`.
    DigestWrong,
    /// The peer's answer had a MAC of the wrong length for its digest
    /// (e.g. a 20-byte unprefixed answer, which is taken as MD5). We sent `#FAILURE#`.
    DigestLength {
        /// Digest the answer was taken to use.
        digest: &'static str,
        /// MAC length that digest produces.
        expected: usize,
        /// MAC length received.
        got: usize,
    },
    /// The peer's answer carried no recognised `{digest}` prefix, or named a
    /// digest outside `md5, sha256, sha384, sha3_256, sha3_384`. We sent `#FAILURE#`.
    UnsupportedDigest,
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthFailure::DigestRejected => f.write_str("digest sent was rejected"),
            AuthFailure::DigestWrong => f.write_str("digest received was wrong"),
            AuthFailure::DigestLength {
                digest,
                expected,
                got,
            } => {
                write!(f, "expected '{digest}' of length {expected} got {got}")
            }
            AuthFailure::UnsupportedDigest => f.write_str(
                "unsupported message length, missing digest prefix, or unsupported digest",
            ),
        }
    }
}

/// Everything that can go wrong in this crate. Errors caused by the peer's
/// bytes never panic; they end up here.
///
/// Two questions cover most handling: [`is_retryable`](Self::is_retryable)
/// (may the *same operation* be tried again, on the same connection or, for
/// connects, the same address) and [`must_reconnect`](Self::must_reconnect)
/// (the connection is unusable and must be dropped).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// An I/O error on an established connection or a listener. The
    /// connection (if any) is unusable.
    #[error(transparent)]
    Io(#[from] io::Error),

    /// Connecting to `address` failed.
    #[error("cannot connect to {address}")]
    Connect {
        /// The address as displayed by [`Address`](crate::Address).
        address: String,
        /// The underlying error (`ConnectionRefused`, `NotFound`, `TimedOut`, ...).
        #[source]
        source: io::Error,
    },

    /// Binding a listener to `address` failed (including "a live socket
    /// already listens on this unix path").
    #[error("cannot listen on {address}")]
    Bind {
        /// The address as displayed by [`Address`](crate::Address).
        address: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The peer closed the connection cleanly before the first byte of a
    /// frame (CPython: `EOFError`).
    #[error("connection closed by peer")]
    Closed,

    /// The peer closed the connection in the middle of a frame (CPython:
    /// `OSError('got end of file during message')`).
    #[error("got end of file during message ({received} of {expected} bytes)")]
    Truncated {
        /// Bytes the frame (header or payload) should have had.
        expected: u64,
        /// Bytes that arrived before end of file.
        received: u64,
    },

    /// The peer announced a frame longer than the caller's limit. Nothing was
    /// allocated; the payload is still unread, so the connection is unusable.
    #[error("bad message length: frame of {len} bytes exceeds the limit of {max} bytes (connection is now unusable)")]
    FrameTooLarge {
        /// Declared length.
        len: u64,
        /// The limit in force.
        max: usize,
    },

    /// The 4-byte length header was negative and not `-1` (CPython would
    /// silently read an empty message; we treat it as a protocol error).
    #[error("invalid frame header {header} (negative length)")]
    BadHeader {
        /// The header as a signed integer.
        header: i32,
    },

    /// The mutual authentication handshake failed: wrong authkey on one side,
    /// or an answer we could not accept.
    #[error("authentication failed: {reason}")]
    AuthenticationFailed {
        /// What exactly failed.
        reason: AuthFailure,
    },

    /// The peer's challenge was malformed (missing `#CHALLENGE#`, shorter
    /// than 20 bytes, or an unknown `{digest}`), so we could not answer it.
    #[error("bad authentication challenge: {reason}")]
    BadChallenge {
        /// Human-readable detail.
        reason: String,
    },

    /// A socket timeout expired during `operation`.
    ///
    /// `partial == false` means nothing of the current frame was consumed or
    /// written, so the same call may be repeated on the same connection
    /// (for `connect`, reconnecting is the retry). `partial == true` leaves the
    /// connection mid-frame: it is unusable.
    #[error("timed out during {operation}")]
    Timeout {
        /// `"connect"`, `"recv"`, `"send"` or `"authentication handshake"`.
        operation: &'static str,
        /// Whether the connection was left in the middle of a frame.
        partial: bool,
    },

    /// An address string or Python address value could not be understood.
    #[error("bad address {input:?}: {reason}")]
    BadAddress {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// An earlier error left this connection mid-frame; it can only be dropped.
    #[error("connection unusable after an earlier error")]
    Poisoned,

    /// The handshake deadline was invalid (zero).
    #[error("invalid handshake timeout {0:?}")]
    InvalidTimeout(Duration),
}

impl ConnectionError {
    /// May the same operation be tried again?
    ///
    /// True for a connect that was refused, timed out or found no unix socket
    /// yet (a server may still be starting), and for a send/recv timeout that
    /// left the connection at a frame boundary.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectionError::Connect { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::NotFound
                    | io::ErrorKind::Interrupted
            ),
            ConnectionError::Timeout { operation, partial } => {
                !*partial && *operation != "authentication handshake"
            }
            _ => false,
        }
    }

    /// Is the connection this error came from unusable (drop it, and connect
    /// again if needed)?
    ///
    /// False only for errors that happen before a connection exists
    /// (`Connect`, `Bind`, `BadAddress`, `InvalidTimeout`) and for retryable
    /// timeouts.
    pub fn must_reconnect(&self) -> bool {
        match self {
            ConnectionError::Connect { .. }
            | ConnectionError::Bind { .. }
            | ConnectionError::BadAddress { .. }
            | ConnectionError::InvalidTimeout(_) => false,
            ConnectionError::Timeout { .. } => !self.is_retryable(),
            _ => true,
        }
    }

    /// Is this an authentication failure (wrong key or unacceptable answer
    /// or challenge)? CPython raises `AuthenticationError` in these cases.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            ConnectionError::AuthenticationFailed { .. } | ConnectionError::BadChallenge { .. }
        )
    }
}

/// `Result<T, ConnectionError>`.
pub type Result<T, E = ConnectionError> = std::result::Result<T, E>;
