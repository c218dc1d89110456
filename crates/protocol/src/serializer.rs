//! [`Serializer`]: how messages are turned into bytes on a connection.

use std::fmt;
use std::str::FromStr;

/// The `serializer` of a CPython manager (`BaseManager(serializer=…)`,
/// §3.1): which codec every message after authentication uses. Both ends
/// must agree; a server is started with one.
///
/// * [`Serializer::Pickle`]: `pickle` (the default).
/// * [`Serializer::XmlRpc`]: `xmlrpc.client.dumps((obj,), None, None,
///   None, 1)` text, as CPython's remote-manager tests use (tuples arrive as
///   lists, ints are limited to 32 bits, bytes arrive as
///   `xmlrpc.client.Binary`).
///
/// ```
/// use mpmanager_protocol::Serializer;
/// assert_eq!("xmlrpclib".parse::<Serializer>().unwrap(), Serializer::XmlRpc);
/// assert_eq!(Serializer::default(), Serializer::Pickle);
/// assert_eq!(Serializer::XmlRpc.to_string(), "xmlrpclib");
/// assert!("json".parse::<Serializer>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Serializer {
    /// `serializer='pickle'`.
    #[default]
    Pickle,
    /// `serializer='xmlrpclib'`.
    XmlRpc,
}

impl Serializer {
    /// Every serializer.
    pub const ALL: [Serializer; 2] = [Serializer::Pickle, Serializer::XmlRpc];

    /// CPython's name for it (`'pickle'`, `'xmlrpclib'`).
    pub fn name(self) -> &'static str {
        match self {
            Serializer::Pickle => "pickle",
            Serializer::XmlRpc => "xmlrpclib",
        }
    }
}

impl fmt::Display for Serializer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a serializer CPython knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown serializer {0:?} (expected 'pickle' or 'xmlrpclib')")]
#[non_exhaustive]
pub struct UnknownSerializer(pub String);

impl FromStr for Serializer {
    type Err = UnknownSerializer;

    fn from_str(s: &str) -> Result<Serializer, UnknownSerializer> {
        Serializer::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| UnknownSerializer(s.to_string()))
    }
}
