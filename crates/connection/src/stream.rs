//! Sockets: [`Listener`] and [`Stream`] over TCP and unix sockets.

use std::ffi::OsStr;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::address::Address;
use crate::error::{ConnectionError, Result};

/// A connected, blocking byte stream: TCP (with `TCP_NODELAY`) or a unix socket.
///
/// Usually wrapped in a [`Connection`](crate::Connection) for framing.
#[derive(Debug)]
pub struct Stream {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpStream),
    Unix(UnixStream),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match &$self.inner {
            Inner::Tcp($s) => $e,
            Inner::Unix($s) => $e,
        }
    };
}

impl Stream {
    /// Connects to `address`. With `timeout`, the connect attempt itself is
    /// bounded (expiry gives a retryable [`ConnectionError::Timeout`]); the
    /// returned stream has no read/write timeouts. A zero timeout is refused.
    pub fn connect(address: &Address, timeout: Option<Duration>) -> Result<Stream> {
        if timeout == Some(Duration::ZERO) {
            return Err(ConnectionError::InvalidTimeout(Duration::ZERO));
        }
        let fail = |source: io::Error| {
            if matches!(
                source.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) {
                ConnectionError::Timeout {
                    operation: "connect",
                    partial: false,
                }
            } else {
                ConnectionError::Connect {
                    address: address.to_string(),
                    source,
                }
            }
        };
        let stream = match address {
            Address::Tcp(sa) => {
                let s = match timeout {
                    Some(t) => TcpStream::connect_timeout(sa, t),
                    None => TcpStream::connect(sa),
                }
                .map_err(fail)?;
                Stream::from(s)
            }
            Address::Unix(_) | Address::Abstract(_) => {
                let sock_addr = unix_sockaddr(address).map_err(fail)?;
                let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
                    .map_err(fail)?;
                match timeout {
                    Some(t) => sock.connect_timeout(&sock_addr, t),
                    None => sock.connect(&sock_addr),
                }
                .map_err(fail)?;
                Stream::from(UnixStream::from(sock))
            }
        };
        tracing::trace!(%address, "connected");
        Ok(stream)
    }

    /// A connected pair of unix sockets (handy for tests and in-process use).
    pub fn pair() -> io::Result<(Stream, Stream)> {
        let (a, b) = UnixStream::pair()?;
        Ok((Stream::from(a), Stream::from(b)))
    }

    /// Another handle to the same socket (e.g. to `shutdown` it from another thread).
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(Stream {
            inner: match &self.inner {
                Inner::Tcp(s) => Inner::Tcp(s.try_clone()?),
                Inner::Unix(s) => Inner::Unix(s.try_clone()?),
            },
        })
    }

    /// Sets the timeout for each blocking read (`None`: block forever).
    /// A zero duration is an error, as in std.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        each!(self, s => s.set_read_timeout(t))
    }

    /// Sets the timeout for each blocking write (`None`: block forever).
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        each!(self, s => s.set_write_timeout(t))
    }

    /// The current read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        each!(self, s => s.read_timeout())
    }

    /// The current write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        each!(self, s => s.write_timeout())
    }

    /// Shuts down the read half, the write half or both (wakes a thread
    /// blocked reading on a clone of this stream).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        each!(self, s => s.shutdown(how))
    }

    /// Is this a TCP stream?
    pub fn is_tcp(&self) -> bool {
        matches!(self.inner, Inner::Tcp(_))
    }

    /// TCP: sends an ACK that the kernel is holding back (delayed ACK) now,
    /// and leaves delayed-ACK mode until the kernel re-enters it
    /// (`TCP_QUICKACK`). Does nothing on unix sockets.
    pub fn quickack(&self) {
        if let Inner::Tcp(s) = &self.inner {
            if let Err(e) = socket2::SockRef::from(s).set_quickack(true) {
                tracing::debug!("cannot set TCP_QUICKACK: {e}");
            }
        }
    }

    /// The peer's TCP address (`None` for unix sockets).
    pub fn peer_tcp_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            Inner::Tcp(s) => s.peer_addr().ok(),
            Inner::Unix(_) => None,
        }
    }
}

impl From<TcpStream> for Stream {
    /// Wraps a TCP stream, turning on `TCP_NODELAY` (best effort).
    fn from(s: TcpStream) -> Stream {
        if let Err(e) = s.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        Stream {
            inner: Inner::Tcp(s),
        }
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream {
            inner: Inner::Unix(s),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.inner {
            Inner::Tcp(s) => (&*s).read(buf),
            Inner::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.inner {
            Inner::Tcp(s) => (&*s).write(buf),
            Inner::Unix(s) => (&*s).write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.inner {
            Inner::Tcp(s) => (&*s).write_vectored(bufs),
            Inner::Unix(s) => (&*s).write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        each!(self, s => s.as_raw_fd())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        each!(self, s => s.as_fd())
    }
}

fn unix_sockaddr(address: &Address) -> io::Result<socket2::SockAddr> {
    match address {
        Address::Unix(p) => socket2::SockAddr::unix(p),
        Address::Abstract(name) => {
            let mut b = Vec::with_capacity(name.len() + 1);
            b.push(0);
            b.extend_from_slice(name);
            socket2::SockAddr::unix(OsStr::from_bytes(&b))
        }
        Address::Tcp(_) => unreachable!("tcp address"),
    }
}

/// A listening socket.
///
/// For a unix path, `bind` removes a *stale* socket file (nobody accepts on
/// it) but refuses to replace a live one or a non-socket file, and `Drop`
/// unlinks the socket file it created (only if it is still the same file).
/// (Detecting a live socket connects to it once; a CPython server sees that
/// as a client that hung up at once.)
///
/// ```
/// use mpmanager_connection::{Address, Connection, Listener, Stream};
///
/// let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
/// let addr = listener.local_address().clone();           // real port
/// let t = std::thread::spawn(move || {
///     let mut c = Connection::new(Stream::connect(&addr, None).unwrap());
///     c.send(b"hi").unwrap();
/// });
/// let mut server = Connection::new(listener.accept().unwrap());
/// assert_eq!(server.recv(1024).unwrap(), b"hi");
/// t.join().unwrap();
/// ```
#[derive(Debug)]
pub struct Listener {
    inner: ListenerInner,
    address: Address,
    /// Path socket file we created, with its (dev, ino).
    owned: Option<(PathBuf, u64, u64)>,
}

#[derive(Debug)]
enum ListenerInner {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds and listens. TCP listeners get `SO_REUSEADDR`.
    pub fn bind(address: &Address) -> Result<Listener> {
        let fail = |source: io::Error| ConnectionError::Bind {
            address: address.to_string(),
            source,
        };
        match address {
            Address::Tcp(sa) => {
                let l = TcpListener::bind(sa).map_err(fail)?;
                let local = l.local_addr().map_err(fail)?;
                Ok(Listener {
                    inner: ListenerInner::Tcp(l),
                    address: Address::Tcp(local),
                    owned: None,
                })
            }
            Address::Abstract(name) => {
                let sa = std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(fail)?;
                let l = UnixListener::bind_addr(&sa).map_err(fail)?;
                Ok(Listener {
                    inner: ListenerInner::Unix(l),
                    address: address.clone(),
                    owned: None,
                })
            }
            Address::Unix(path) => {
                let l = match UnixListener::bind(path) {
                    Ok(l) => l,
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                        remove_stale_socket(path).map_err(fail)?;
                        UnixListener::bind(path).map_err(fail)?
                    }
                    Err(e) => return Err(fail(e)),
                };
                let meta = std::fs::symlink_metadata(path).map_err(fail)?;
                Ok(Listener {
                    inner: ListenerInner::Unix(l),
                    address: address.clone(),
                    owned: Some((path.clone(), meta.dev(), meta.ino())),
                })
            }
        }
    }

    /// Waits for and returns the next connection (TCP ones with `TCP_NODELAY`).
    /// `EINTR` is retried.
    pub fn accept(&self) -> Result<Stream> {
        loop {
            let r = match &self.inner {
                ListenerInner::Tcp(l) => l.accept().map(|(s, _)| Stream::from(s)),
                ListenerInner::Unix(l) => l.accept().map(|(s, _)| Stream::from(s)),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r.map_err(ConnectionError::Io),
            }
        }
    }

    /// The bound address, with the real port when bound to port 0.
    pub fn local_address(&self) -> &Address {
        &self.address
    }

    /// Switches the listening socket's non-blocking mode (for a server that
    /// polls `accept` to notice shutdown).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match &self.inner {
            ListenerInner::Tcp(l) => l.set_nonblocking(nonblocking),
            ListenerInner::Unix(l) => l.set_nonblocking(nonblocking),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match &self.inner {
            ListenerInner::Tcp(l) => l.as_raw_fd(),
            ListenerInner::Unix(l) => l.as_raw_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((path, dev, ino)) = &self.owned {
            if let Ok(m) = std::fs::symlink_metadata(path) {
                if m.dev() == *dev && m.ino() == *ino {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

/// `path` exists: remove it if it is a socket nobody listens on, else explain.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "path exists and is not a socket",
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a live server is listening on this socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::debug!(path = %path.display(), "removing stale unix socket");
            std::fs::remove_file(path)
        }
        Err(e) => Err(e),
    }
}
