//! # mpmanager-protocol
//!
//! Typed Rust forms of every message a `multiprocessing.managers` server
//! and its clients exchange, converted to and from the Python value model of
//! [`mpmanager_pickle`] (turning values into bytes is the pickle codec's
//! job, not this crate's). Section numbers (§) refer to the repository's
//! `docs/PROTOCOL.md`.
//!
//! * [`Request`]: `(ident, method, args, kwds)`; [`PublicOp`]: the one-shot
//!   operations (`create`, `incref`, …).
//! * [`Reply`]: `('#RETURN', v)`, `('#ERROR', exc)`, `('#TRACEBACK', text)`,
//!   `('#UNSERIALIZABLE', text)`, `('#PROXY', (exposed, token))`.
//! * [`Token`] and [`PyAddress`]: `multiprocessing.managers.Token`.
//! * [`ProxyRef`]: a pickled proxy (`RebuildProxy(...)`), and
//!   [`find_proxies`] to find the proxies inside a value.
//! * [`registry`]: the `SyncManager` type table ([`TypeSpec`]).
//! * [`traceback`]: `RemoteError` text and `#TRACEBACK` texts.
//! * [`Serializer`]: `pickle` or `xmlrpclib`, the codec of a connection.
//! * [`MessageError`]: why a value is not a well-formed message.
//!
//! ```
//! use mpmanager_pickle::Value;
//! use mpmanager_protocol::{registry, PyAddress, Reply, Request, Token};
//! // A server answers `iter(dict_proxy)` with a new Iterator proxy:
//! let req = Request::from_value(&Value::tuple(vec![
//!     Value::str("7f1c829a8a00"),
//!     Value::str("__iter__"),
//!     Value::tuple(vec![]),
//!     Value::dict(vec![]).unwrap(),
//! ]))
//! .unwrap();
//! let dict = registry::lookup("dict").unwrap();
//! let typeid = dict.typeid_for_method(&req.method).unwrap();
//! let spec = registry::lookup(typeid).unwrap();
//! let reply = Reply::Proxy {
//!     exposed: spec.exposed().iter().map(|s| s.to_string()).collect(),
//!     token: Token::new(typeid, PyAddress::tcp("127.0.0.1", 50011), "7f1c82a1c1d0"),
//! };
//! assert_eq!(Reply::from_value(&reply.to_value()).unwrap(), reply);
//! ```
#![warn(missing_docs)]

mod error;
pub mod proxy;
mod pyrepr;
pub mod registry;
pub mod reply;
pub mod request;
pub mod serializer;
pub mod token;
pub mod traceback;

pub use error::MessageError;
pub use proxy::{find_proxies, ProxyRef};
pub use registry::{builtin_typeids, TypeSpec};
pub use reply::Reply;
pub use request::{PublicOp, Request};
pub use serializer::{Serializer, UnknownSerializer};
pub use token::{PyAddress, Token};

use mpmanager_pickle::Value;

/// The text of a `str` value that must be plain text (no lone surrogates).
/// The caller has checked that `v` is a `str`.
pub(crate) fn text(v: &Value, field: &'static str) -> Result<String, MessageError> {
    match v {
        Value::Str(s) => s
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| MessageError::Surrogates {
                field,
                repr: mpmanager_pickle::repr::str_repr(s),
            }),
        other => Err(MessageError::wrong_type(field, "a str", other)),
    }
}
