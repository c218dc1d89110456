//! [`Token`] (`multiprocessing.managers.Token`) and [`PyAddress`], the
//! address of a manager server as Python spells it.

use std::fmt;

use mpmanager_pickle::{Global, Object, Value};

use crate::pyrepr::{bytes_repr, describe, repr, str_repr};
use crate::{text, MessageError};

/// The module of every manager class.
pub const MANAGERS_MODULE: &str = "multiprocessing.managers";

/// The address of a manager server, as it appears in a [`Token`] (§1.1).
///
/// * `(host, port)` tuple ↔ [`PyAddress::Tcp`];
/// * `str` ↔ [`PyAddress::Path`] (a filesystem socket path; a `str` that
///   starts with `"\0"` names an abstract socket and is kept as sent);
/// * `bytes` starting with `b"\0"` ↔ [`PyAddress::Abstract`] (Linux reports
///   abstract socket names as `bytes`).
///
/// ```
/// use mpmanager_pickle::Value;
/// use mpmanager_protocol::PyAddress;
/// let a = PyAddress::tcp("127.0.0.1", 50011);
/// assert_eq!(a.to_string(), "('127.0.0.1', 50011)");
/// assert_eq!(PyAddress::from_value(&a.to_value()).unwrap(), a);
/// assert!(PyAddress::from_value(&Value::bytes(b"no-nul")).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PyAddress {
    /// An AF_INET address `(host, port)`.
    Tcp {
        /// The host, e.g. `'127.0.0.1'`.
        host: String,
        /// The port.
        port: u16,
    },
    /// An AF_UNIX socket given as a `str`.
    Path(String),
    /// An AF_UNIX abstract-namespace name given as `bytes`, including the
    /// leading NUL byte.
    Abstract(Vec<u8>),
}

impl PyAddress {
    /// The address in the tokens of a server listening at `address`, as
    /// CPython puts it there: `(host, port)` (IPv6 too, without flow info
    /// and scope), a path `str`, or an abstract name as `bytes`.
    ///
    /// ```
    /// use mpmanager_connection::Address;
    /// use mpmanager_protocol::PyAddress;
    /// let a: Address = "127.0.0.1:5000".parse().unwrap();
    /// assert_eq!(PyAddress::of(&a), PyAddress::tcp("127.0.0.1", 5000));
    /// assert_eq!(PyAddress::of(&a).to_address().unwrap(), a);
    /// ```
    pub fn of(address: &mpmanager_connection::Address) -> PyAddress {
        use mpmanager_connection::PythonAddress as P;
        match address.to_python() {
            P::Inet { host, port } | P::Inet6 { host, port, .. } => PyAddress::Tcp { host, port },
            P::Str(s) => PyAddress::Path(s),
            P::Bytes(b) => PyAddress::Abstract(b),
        }
    }

    /// The address to connect to for a token carrying this one (host names
    /// resolved as CPython's `AF_INET` does).
    pub fn to_address(
        &self,
    ) -> Result<mpmanager_connection::Address, mpmanager_connection::ConnectionError> {
        use mpmanager_connection::PythonAddress as P;
        let p = match self {
            PyAddress::Tcp { host, port } => P::Inet {
                host: host.clone(),
                port: *port,
            },
            PyAddress::Path(s) => P::Str(s.clone()),
            PyAddress::Abstract(b) => P::Bytes(b.clone()),
        };
        mpmanager_connection::Address::from_python(&p)
    }

    /// A TCP address.
    pub fn tcp(host: &str, port: u16) -> PyAddress {
        PyAddress::Tcp {
            host: host.to_string(),
            port,
        }
    }

    /// The Python value: a `(host, port)` tuple, a `str` or a `bytes`.
    pub fn to_value(&self) -> Value {
        match self {
            PyAddress::Tcp { host, port } => {
                Value::tuple(vec![Value::str(host), Value::Int(i64::from(*port))])
            }
            PyAddress::Path(p) => Value::str(p),
            PyAddress::Abstract(b) => Value::bytes(b),
        }
    }

    /// Reads an address value.
    pub fn from_value(v: &Value) -> Result<PyAddress, MessageError> {
        let bad = |reason: &str| MessageError::BadAddress {
            found: repr(v),
            reason: reason.into(),
        };
        match v {
            Value::Tuple(t) => {
                let [host, port] = t.as_slice() else {
                    return Err(bad("a TCP address must be a (host, port) tuple of 2 items"));
                };
                let Value::Str(host) = host else {
                    return Err(bad("the host must be a str"));
                };
                let host = host
                    .as_str()
                    .ok_or_else(|| bad("the host holds lone surrogates"))?;
                let port = match port {
                    Value::Int(p) => {
                        u16::try_from(*p).map_err(|_| bad("the port must be 0-65535"))?
                    }
                    _ => return Err(bad("the port must be an int")),
                };
                Ok(PyAddress::Tcp {
                    host: host.to_string(),
                    port,
                })
            }
            Value::Str(s) => s
                .as_str()
                .map(|s| PyAddress::Path(s.to_string()))
                .ok_or_else(|| bad("the path holds lone surrogates")),
            Value::Bytes(b) if b.first() == Some(&0) => Ok(PyAddress::Abstract(b.to_vec())),
            Value::Bytes(_) => Err(bad(
                "a bytes address must be an abstract socket name starting with b'\\x00'",
            )),
            other => Err(MessageError::BadAddress {
                found: describe(other),
                reason: "an address must be a (host, port) tuple, a str or a bytes".into(),
            }),
        }
    }

    /// Whether `self` and `other` name the same server, leniently, for "is
    /// this token pointing at me" (§3.9). The rule:
    ///
    /// 1. Equal addresses match.
    /// 2. TCP addresses match when the ports are equal and the hosts are
    ///    equal ignoring ASCII case, or both are loopback names
    ///    (`localhost`, `127.x.x.x`, `::1`), or **either** is a wildcard
    ///    (`0.0.0.0`, `''`, `::`): a server listening on every interface is
    ///    reachable under any of this machine's names, which it cannot list
    ///    here. A wildcard therefore also matches another machine's address
    ///    with the same port: the caller should also check that the token's
    ///    `id` is one of its own.
    /// 3. An abstract socket matches whether it is spelled as `bytes` or as a
    ///    `str` starting with `"\0"` (same UTF-8 bytes).
    /// 4. Paths must be equal as strings (no filesystem normalisation).
    ///
    /// ```
    /// use mpmanager_protocol::PyAddress;
    /// let me = PyAddress::tcp("127.0.0.1", 5000);
    /// assert!(me.same_endpoint(&PyAddress::tcp("localhost", 5000)));
    /// assert!(!me.same_endpoint(&PyAddress::tcp("localhost", 5001)));
    /// assert!(PyAddress::tcp("0.0.0.0", 5000).same_endpoint(&PyAddress::tcp("10.1.2.3", 5000)));
    /// assert!(!me.same_endpoint(&PyAddress::tcp("10.1.2.3", 5000)));
    /// assert!(PyAddress::Path("\0mgr".into()).same_endpoint(&PyAddress::Abstract(b"\0mgr".to_vec())));
    /// ```
    pub fn same_endpoint(&self, other: &PyAddress) -> bool {
        match (self, other) {
            (PyAddress::Tcp { host: h1, port: p1 }, PyAddress::Tcp { host: h2, port: p2 }) => {
                p1 == p2
                    && (h1.eq_ignore_ascii_case(h2)
                        || (is_loopback(h1) && is_loopback(h2))
                        || is_wildcard(h1)
                        || is_wildcard(h2))
            }
            (PyAddress::Path(a), PyAddress::Path(b)) => a == b,
            (PyAddress::Abstract(a), PyAddress::Abstract(b)) => a == b,
            (PyAddress::Path(p), PyAddress::Abstract(b))
            | (PyAddress::Abstract(b), PyAddress::Path(p)) => {
                p.starts_with('\0') && p.as_bytes() == b.as_slice()
            }
            _ => false,
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h == "::1"
        || h.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_wildcard(host: &str) -> bool {
    matches!(host, "" | "0.0.0.0" | "::" | "[::]")
}

impl fmt::Display for PyAddress {
    /// Python's `repr` of the address value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyAddress::Tcp { host, port } => write!(f, "({}, {port})", str_repr(host)),
            PyAddress::Path(p) => f.write_str(&str_repr(p)),
            PyAddress::Abstract(b) => f.write_str(&bytes_repr(b)),
        }
    }
}

/// A `multiprocessing.managers.Token`: which object of which server (§3.8).
///
/// On the wire it is `NEWOBJ` of the global `multiprocessing.managers.Token`
/// with empty arguments, then `BUILD` with the state tuple
/// `(typeid, address, id)`.
///
/// ```
/// use mpmanager_protocol::{PyAddress, Token};
/// let t = Token::new("list", PyAddress::tcp("127.0.0.1", 50011), "7f1c82a25580");
/// assert_eq!(
///     t.to_string(),
///     "Token(typeid='list', address=('127.0.0.1', 50011), id='7f1c82a25580')"
/// );
/// assert_eq!(Token::from_value(&t.to_value()).unwrap(), t);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Token {
    /// The registered type, e.g. `list`, `Queue`, `Iterator`.
    pub typeid: String,
    /// The address of the server holding the object.
    pub address: PyAddress,
    /// The object's ident on that server (lowercase hex in CPython).
    pub id: String,
}

impl Token {
    /// A token.
    pub fn new(typeid: &str, address: PyAddress, id: &str) -> Token {
        Token {
            typeid: typeid.to_string(),
            address,
            id: id.to_string(),
        }
    }

    /// The global `multiprocessing.managers.Token`.
    pub fn class() -> Global {
        Global::new(MANAGERS_MODULE, "Token")
    }

    /// The pickled form: `NEWOBJ(Token, ())` + `BUILD((typeid, address, id))`.
    pub fn to_value(&self) -> Value {
        let state = Value::tuple(vec![
            Value::str(&self.typeid),
            self.address.to_value(),
            Value::str(&self.id),
        ]);
        Value::object(Object::new_obj(Token::class(), vec![], Some(state)))
    }

    /// Reads a token. Accepts the protocol 2+ form (`NEWOBJ` of `Token`)
    /// and the protocol 0/1 form (`copyreg._reconstructor(Token, object,
    /// None)`), both with a `(typeid, address, id)` state.
    pub fn from_value(v: &Value) -> Result<Token, MessageError> {
        let bad = |reason: String| MessageError::BadToken { reason };
        let Value::Object(o) = v else {
            return Err(bad(format!("expected a Token object, got {}", describe(v))));
        };
        let o = o.read_recursive();
        let shape_ok = o
            .new_of()
            .is_some_and(|(cls, _)| cls.is(MANAGERS_MODULE, "Token"));
        if !shape_ok {
            let what = match o.global() {
                Some(g) => format!("{g:?}"),
                None => describe(&o.callable),
            };
            return Err(bad(format!(
                "built by {what}, not multiprocessing.managers.Token"
            )));
        }
        let state = o
            .state
            .as_ref()
            .ok_or_else(|| bad("the Token has no state".into()))?;
        let Value::Tuple(t) = state else {
            return Err(bad(format!(
                "the state must be a (typeid, address, id) tuple, got {}",
                describe(state)
            )));
        };
        let [typeid, address, id] = t.as_slice() else {
            return Err(bad(format!(
                "the state must be a (typeid, address, id) tuple, got {}",
                describe(state)
            )));
        };
        Ok(Token {
            typeid: text(typeid, "token typeid")?,
            address: PyAddress::from_value(address)?,
            id: text(id, "token id")?,
        })
    }
}

impl fmt::Display for Token {
    /// CPython's `repr(token)`:
    /// `Token(typeid='list', address=('127.0.0.1', 50011), id='7f…')`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Token(typeid={}, address={}, id={})",
            str_repr(&self.typeid),
            self.address,
            str_repr(&self.id)
        )
    }
}
