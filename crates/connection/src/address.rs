//! Listener/connection addresses, their string form, and their Python form.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{ConnectionError, Result};

/// Where a [`Listener`](crate::Listener) listens or a
/// [`Stream`](crate::Stream) connects.
///
/// String form ([`FromStr`] / [`Display`](fmt::Display)):
///
/// | form                         | meaning                                       |
/// |------------------------------|-----------------------------------------------|
/// | `127.0.0.1:50000`            | TCP over IPv4                                 |
/// | `[::1]:50000`                | TCP over IPv6                                 |
/// | `localhost:50000`            | TCP; the host is resolved, IPv4 preferred (like CPython's `AF_INET`) |
/// | `unix:/path/sock` (or `/path/sock`) | unix socket at a filesystem path       |
/// | `unix:@name`                 | Linux abstract unix socket `\0name`; in the name, `\\` is a backslash and `\xNN` any byte |
///
/// Port `0` asks the OS for a free port; [`Listener::local_address`](crate::Listener::local_address)
/// reports the real one.
///
/// ```
/// use mpmanager_connection::Address;
///
/// let a: Address = "127.0.0.1:50000".parse().unwrap();
/// assert_eq!(a.python_repr(), "('127.0.0.1', 50000)");
///
/// let b: Address = "unix:@mgr-x".parse().unwrap();
/// assert_eq!(b, Address::Abstract(b"mgr-x".to_vec()));
/// assert_eq!(b.python_repr(), r"b'\x00mgr-x'");
/// assert_eq!(b.to_string(), "unix:@mgr-x");
///
/// let c: Address = "unix:/tmp/pymp-1/listener-2".parse().unwrap();
/// assert_eq!(c.python_repr(), "'/tmp/pymp-1/listener-2'");
///
/// assert!("no-port-here".parse::<Address>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// TCP over IPv4 or IPv6.
    Tcp(SocketAddr),
    /// Unix socket bound to a filesystem path.
    Unix(PathBuf),
    /// Linux abstract-namespace unix socket; the name *without* the leading NUL.
    Abstract(Vec<u8>),
}

/// An address as a Python value, the way CPython's `multiprocessing` reports
/// and accepts it (the manager puts this in every `Token`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PythonAddress {
    /// `(host, port)`: `AF_INET`.
    Inet {
        /// Dotted-quad (or, when accepted from Python, a resolvable host name).
        host: String,
        /// Port.
        port: u16,
    },
    /// `(host, port, flowinfo, scope_id)`: what `getsockname()` gives for
    /// `AF_INET6`. CPython's `multiprocessing` itself cannot use IPv6.
    Inet6 {
        /// IPv6 address text, e.g. `::1`.
        host: String,
        /// Port.
        port: u16,
        /// IPv6 flow info.
        flowinfo: u32,
        /// IPv6 scope id.
        scope_id: u32,
    },
    /// `str`: a unix socket path (or, if it starts with `\0`, an abstract name).
    Str(String),
    /// `bytes`: an abstract unix name including the leading `\0`
    /// (Linux reports abstract names as bytes).
    Bytes(Vec<u8>),
}

impl PythonAddress {
    /// The Python `repr()` of this value, e.g. `('127.0.0.1', 50000)`.
    pub fn repr(&self) -> String {
        match self {
            PythonAddress::Inet { host, port } => format!("({}, {port})", py_str_repr(host)),
            PythonAddress::Inet6 {
                host,
                port,
                flowinfo,
                scope_id,
            } => {
                format!("({}, {port}, {flowinfo}, {scope_id})", py_str_repr(host))
            }
            PythonAddress::Str(s) => py_str_repr(s),
            PythonAddress::Bytes(b) => py_bytes_repr(b),
        }
    }
}

impl Address {
    /// The value CPython would report for a listener bound here
    /// (`getsockname()`): a `(host, port)` tuple, a path `str`, or `b'\x00name'`.
    ///
    /// Non-UTF-8 unix paths are converted lossily.
    pub fn to_python(&self) -> PythonAddress {
        match self {
            Address::Tcp(SocketAddr::V4(a)) => PythonAddress::Inet {
                host: a.ip().to_string(),
                port: a.port(),
            },
            Address::Tcp(SocketAddr::V6(a)) => PythonAddress::Inet6 {
                host: a.ip().to_string(),
                port: a.port(),
                flowinfo: a.flowinfo(),
                scope_id: a.scope_id(),
            },
            Address::Unix(p) => PythonAddress::Str(p.to_string_lossy().into_owned()),
            Address::Abstract(name) => {
                let mut b = Vec::with_capacity(name.len() + 1);
                b.push(0);
                b.extend_from_slice(name);
                PythonAddress::Bytes(b)
            }
        }
    }

    /// `repr()` of [`to_python`](Self::to_python).
    pub fn python_repr(&self) -> String {
        self.to_python().repr()
    }

    /// The address a Python address value designates (e.g. from a `Token`
    /// sent by a CPython manager). Host names in `(host, port)` are resolved
    /// to IPv4, as CPython's `AF_INET` does; `''` means `0.0.0.0`.
    ///
    /// ```
    /// use mpmanager_connection::{Address, PythonAddress};
    /// let a = Address::from_python(&PythonAddress::Bytes(b"\0mgr".to_vec())).unwrap();
    /// assert_eq!(a, Address::Abstract(b"mgr".to_vec()));
    /// assert!(Address::from_python(&PythonAddress::Bytes(b"/tmp/x".to_vec())).is_err());
    /// ```
    pub fn from_python(value: &PythonAddress) -> Result<Address> {
        let bad = |reason: &str| ConnectionError::BadAddress {
            input: value.repr(),
            reason: reason.to_string(),
        };
        match value {
            PythonAddress::Inet { host, port } => {
                let host = if host.is_empty() {
                    "0.0.0.0"
                } else {
                    host.as_str()
                };
                if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
                    return Ok(Address::Tcp(SocketAddr::from((ip, *port))));
                }
                let addrs = (host, *port)
                    .to_socket_addrs()
                    .map_err(|e| bad(&format!("cannot resolve: {e}")))?;
                addrs
                    .into_iter()
                    .find(SocketAddr::is_ipv4)
                    .map(Address::Tcp)
                    .ok_or_else(|| bad("host has no IPv4 address"))
            }
            PythonAddress::Inet6 {
                host,
                port,
                flowinfo,
                scope_id,
            } => {
                let ip: Ipv6Addr = host.parse().map_err(|_| bad("not an IPv6 address"))?;
                Ok(Address::Tcp(SocketAddr::V6(SocketAddrV6::new(
                    ip, *port, *flowinfo, *scope_id,
                ))))
            }
            PythonAddress::Str(s) => {
                if let Some(name) = s.strip_prefix('\0') {
                    Ok(Address::Abstract(name.as_bytes().to_vec()))
                } else if s.starts_with("\\\\") {
                    Err(bad("Windows named pipes are not supported"))
                } else if s.is_empty() {
                    Err(bad("empty path"))
                } else {
                    Ok(Address::Unix(PathBuf::from(s)))
                }
            }
            PythonAddress::Bytes(b) => match b.split_first() {
                Some((0, name)) => Ok(Address::Abstract(name.to_vec())),
                _ => Err(bad("address type unrecognized (bytes must start with \\0)")),
            },
        }
    }

    /// Is this a TCP address?
    pub fn is_tcp(&self) -> bool {
        matches!(self, Address::Tcp(_))
    }
}

impl FromStr for Address {
    type Err = ConnectionError;

    fn from_str(s: &str) -> Result<Address> {
        let bad = |reason: &str| ConnectionError::BadAddress {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = s.strip_prefix("unix:") {
            if let Some(name) = rest.strip_prefix('@') {
                return unescape(name).map(Address::Abstract).map_err(|r| bad(&r));
            }
            if rest.is_empty() {
                return Err(bad("empty unix socket path"));
            }
            return Ok(Address::Unix(PathBuf::from(rest)));
        }
        if s.starts_with('/') {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(Address::Tcp(sa));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT, [IPv6]:PORT, unix:/path or unix:@name"))?;
        let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Address::Tcp(SocketAddr::new(ip, port)));
        }
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| bad(&format!("cannot resolve host: {e}")))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .map(Address::Tcp)
            .ok_or_else(|| bad("host resolved to no address"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(sa) => write!(f, "{sa}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Abstract(name) => {
                f.write_str("unix:@")?;
                for &b in name {
                    if b == b'\\' {
                        f.write_str("\\\\")?;
                    } else if (0x21..0x7f).contains(&b) {
                        write!(f, "{}", b as char)?;
                    } else {
                        write!(f, "\\x{b:02x}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

fn unescape(s: &str) -> std::result::Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = s.get(i + 2..i + 4).ok_or("truncated \\x escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| "invalid \\x escape")?);
                i += 4;
            }
            _ => return Err("invalid escape (use \\\\ or \\xNN)".into()),
        }
    }
    Ok(out)
}

/// Python `repr()` of a `str`.
pub(crate) fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python `repr()` of a `bytes`.
pub(crate) fn py_bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::with_capacity(b.len() + 3);
    out.push('b');
    out.push(quote as char);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push(quote as char);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let cases = [
            ("127.0.0.1:50000", "127.0.0.1:50000"),
            ("[::1]:50000", "[::1]:50000"),
            ("unix:/tmp/a b", "unix:/tmp/a b"),
            ("/tmp/x", "unix:/tmp/x"),
            ("unix:@mgr", "unix:@mgr"),
            ("unix:@a\\\\b\\x00\\xff", "unix:@a\\\\b\\x00\\xff"),
        ];
        for (input, shown) in cases {
            let a: Address = input.parse().unwrap();
            assert_eq!(a.to_string(), shown, "{input}");
            assert_eq!(a.to_string().parse::<Address>().unwrap(), a, "{input}");
        }
        assert_eq!(
            "unix:@a\\x00".parse::<Address>().unwrap(),
            Address::Abstract(b"a\0".to_vec())
        );
        assert_eq!(
            "[::1]:7".parse::<Address>().unwrap(),
            Address::Tcp("[::1]:7".parse().unwrap())
        );
    }

    #[test]
    fn localhost_prefers_ipv4() {
        let a: Address = "localhost:5000".parse().unwrap();
        assert_eq!(a, Address::Tcp("127.0.0.1:5000".parse().unwrap()));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "unix:",
            "nohost",
            "1.2.3.4:notaport",
            "1.2.3.4:70000",
            ":5000",
            "unix:@\\q",
            "unix:@\\x4",
            "unix:@\\xzz",
        ] {
            let e = bad.parse::<Address>().unwrap_err();
            assert!(
                matches!(e, ConnectionError::BadAddress { .. }),
                "{bad}: {e:?}"
            );
            assert!(!e.must_reconnect() && !e.is_retryable());
        }
    }

    #[test]
    fn python_forms() {
        let v6: Address = "[::1]:80".parse().unwrap();
        assert_eq!(v6.python_repr(), "('::1', 80, 0, 0)");
        let p = Address::Unix("/tmp/it's".into());
        assert_eq!(p.python_repr(), "\"/tmp/it's\"");
        let ab = Address::Abstract(b"x'\\\n\x7f".to_vec());
        assert_eq!(ab.python_repr(), "b\"\\x00x'\\\\\\n\\x7f\"");
        for a in [
            "127.0.0.1:1".parse::<Address>().unwrap(),
            v6,
            p,
            Address::Abstract(b"mgr".to_vec()),
        ] {
            assert_eq!(Address::from_python(&a.to_python()).unwrap(), a);
        }
        assert_eq!(
            Address::from_python(&PythonAddress::Str("\0abs".into())).unwrap(),
            Address::Abstract(b"abs".to_vec())
        );
        assert_eq!(
            Address::from_python(&PythonAddress::Inet {
                host: "localhost".into(),
                port: 9
            })
            .unwrap(),
            Address::Tcp("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(
            Address::from_python(&PythonAddress::Inet {
                host: "".into(),
                port: 9
            })
            .unwrap(),
            Address::Tcp("0.0.0.0:9".parse().unwrap())
        );
        assert!(Address::from_python(&PythonAddress::Str("\\\\.\\pipe\\x".into())).is_err());
        assert!(Address::from_python(&PythonAddress::Bytes(b"/tmp".to_vec())).is_err());
    }
}
