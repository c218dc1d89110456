//! The transport shared by a manager and its proxies: one-shot connections
//! for public operations, and a small pool of served connections for
//! method calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpmanager_connection::{auth, Address, Connection, ConnectionError};
use mpmanager_pickle::{decode, encode, Value};
use mpmanager_protocol::{PublicOp, PyAddress, Reply, Request};
use parking_lot::Mutex;

use crate::error::{decode_err, encode_err, ClientError, Result};

/// Largest reply frame accepted (1 GiB).
pub(crate) const MAX_REPLY: usize = 1 << 30;
/// Idle served connections kept per client; more are closed when returned.
pub(crate) const MAX_IDLE: usize = 8;

/// The state every proxy of one manager address shares.
pub(crate) struct Client {
    pub(crate) address: Address,
    pub(crate) py_address: PyAddress,
    authkey: Vec<u8>,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
    pub(crate) connect_timeout: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .field("authkey", &"<hidden>")
            .finish()
    }
}

/// `Address` → the Python address CPython would put in a token.
pub(crate) fn py_address_of(a: &Address) -> PyAddress {
    PyAddress::of(a)
}

/// A token's Python address → an address to connect to.
pub(crate) fn address_of(a: &PyAddress) -> Result<Address> {
    Ok(a.to_address()?)
}

/// Turns a reply into the result of the call (without `#PROXY` handling).
pub(crate) fn reply_result(reply: Reply) -> Result<Reply> {
    match reply {
        Reply::Return(_) | Reply::Proxy { .. } => Ok(reply),
        Reply::Error(v) => match mpmanager_pickle::PyErr::from_value(&v) {
            Some(e) => Err(ClientError::from_remote(e)),
            None => Err(ClientError::Protocol(format!(
                "#ERROR reply without an exception: {}",
                crate::error::py_repr(&v)
            ))),
        },
        other => match other.remote_error_text() {
            Some(t) => Err(ClientError::RemoteError(t)),
            None => Err(ClientError::Protocol(format!(
                "unexpected reply kind {}",
                other.kind()
            ))),
        },
    }
}

pub(crate) fn encode_request(req: &Request) -> Result<Vec<u8>> {
    encode(&req.to_value()).map_err(encode_err)
}

pub(crate) fn decode_reply(bytes: &[u8]) -> Result<Reply> {
    let v = decode(bytes).map_err(decode_err)?;
    Reply::from_value(&v).map_err(|e| ClientError::Protocol(e.to_string()))
}

impl Client {
    pub(crate) fn new(address: Address, authkey: &[u8]) -> Client {
        Client {
            py_address: py_address_of(&address),
            address,
            authkey: authkey.to_vec(),
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            connect_timeout: Some(Duration::from_secs(10)),
        }
    }

    pub(crate) fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Marks the manager as gone: proxies stop sending `decref`, idle
    /// connections are closed.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.idle.lock().clear();
    }

    /// A new authenticated connection.
    pub(crate) fn open(&self) -> Result<Connection> {
        self.open_by(None, "connect")
    }

    /// A new authenticated connection, connecting and authenticating
    /// within `deadline` too.
    fn open_by(&self, deadline: Option<Instant>, method: &str) -> Result<Connection> {
        let left = time_left(deadline, method)?;
        let connect_timeout = match (left, self.connect_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut c = Connection::connect(&self.address, connect_timeout)?;
        let hs = match left {
            Some(_) => deadline.map(|d| d.saturating_duration_since(Instant::now())),
            None => Some(auth::DEFAULT_HANDSHAKE_TIMEOUT),
        };
        match hs {
            Some(t) if t.is_zero() => {
                return Err(ClientError::DeadlineExceeded {
                    method: method.to_string(),
                })
            }
            _ => auth::client_handshake_timeout(&mut c, &self.authkey, hs)?,
        }
        Ok(c)
    }

    /// A public one-shot operation on a new connection.
    pub(crate) fn oneshot(
        &self,
        op: PublicOp,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<Value> {
        let mut req = Request::public(op, args);
        req.kwargs = kwargs;
        let bytes = encode_request(&req)?;
        let mut c = self.open()?;
        c.send(&bytes)?;
        let reply = decode_reply(&c.recv(MAX_REPLY)?)?;
        match reply_result(reply)? {
            Reply::Return(v) => Ok(v),
            other => Err(ClientError::Protocol(format!(
                "unexpected {} reply to {op}",
                other.kind()
            ))),
        }
    }

    /// An idle served connection, or a new one (`accept_connection`).
    pub(crate) fn served(&self) -> Result<Connection> {
        self.served_by(None, "accept_connection")
    }

    /// [`served`](Self::served), opening a new connection within `deadline`.
    pub(crate) fn served_by(&self, deadline: Option<Instant>, method: &str) -> Result<Connection> {
        if self.is_closed() {
            return Err(ClientError::ManagerShutDown);
        }
        loop {
            let Some(c) = self.idle.lock().pop() else {
                break;
            };
            if !is_stale(&c) {
                return Ok(c);
            }
        }
        let mut c = self.open_by(deadline, method).map_err(|e| match e {
            ClientError::Connection(ConnectionError::Timeout { .. }) if deadline.is_some() => {
                ClientError::DeadlineExceeded {
                    method: method.to_string(),
                }
            }
            e => e,
        })?;
        let name = format!("mpmanager-client-{}", std::process::id());
        let req = Request::public(PublicOp::AcceptConnection, vec![Value::str(&name)]);
        reply_result(Self::exchange(
            &mut c,
            &encode_request(&req)?,
            method,
            deadline,
        )?)?;
        Ok(c)
    }

    /// Returns a healthy served connection to the pool.
    pub(crate) fn put_back(&self, c: Connection) {
        if c.is_poisoned() || c.buffered_len() != 0 || self.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Sends one request on `c` and reads its reply, within `deadline`.
    /// On a transport error the connection must not be reused (the caller
    /// drops it).
    pub(crate) fn exchange(
        c: &mut Connection,
        bytes: &[u8],
        method: &str,
        deadline: Option<Instant>,
    ) -> Result<Reply> {
        if let Some(left) = time_left(deadline, method)? {
            c.stream()
                .set_write_timeout(Some(left))
                .map_err(ConnectionError::Io)?;
        }
        c.send(bytes).map_err(|e| deadline_err(e, method))?;
        let frame = Self::recv_by(c, method, deadline)?;
        if deadline.is_some() {
            c.stream()
                .set_read_timeout(None)
                .map_err(ConnectionError::Io)?;
            c.stream()
                .set_write_timeout(None)
                .map_err(ConnectionError::Io)?;
        }
        decode_reply(&frame)
    }

    pub(crate) fn recv_by(
        c: &mut Connection,
        method: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>> {
        if let Some(left) = time_left(deadline, method)? {
            c.stream()
                .set_read_timeout(Some(left))
                .map_err(ConnectionError::Io)?;
        }
        c.recv(MAX_REPLY).map_err(|e| deadline_err(e, method))
    }

    /// One method call on a pooled served connection.
    pub(crate) fn call(&self, req: &Request, deadline: Option<Instant>) -> Result<Reply> {
        let bytes = encode_request(req)?;
        let mut c = self.served_by(deadline, &req.method)?;
        match Self::exchange(&mut c, &bytes, &req.method, deadline) {
            Ok(r) => {
                self.put_back(c);
                reply_result(r)
            }
            Err(e) => Err(e), // the connection is dropped
        }
    }

    /// The client for a token's address: this one if it is the same
    /// server, otherwise a new client with the same authkey.
    pub(crate) fn for_address(self: &Arc<Self>, a: &PyAddress) -> Result<Arc<Client>> {
        if a.same_endpoint(&self.py_address) || *a == self.py_address {
            return Ok(self.clone());
        }
        Ok(Arc::new(Client::new(address_of(a)?, &self.authkey)))
    }
}

/// An idle served connection is stale if anything can be read from it: the
/// server closed it (end of file) or sent something unasked. Such a
/// connection is dropped before use, so a request is never sent on a
/// connection the server has already closed (e.g. after a restart).
fn is_stale(c: &Connection) -> bool {
    use std::os::fd::AsRawFd;
    if c.is_poisoned() || c.buffered_len() != 0 {
        return true;
    }
    let mut pfd = libc::pollfd {
        fd: c.stream().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n != 0
}

/// The time left until `deadline` (`None`: no deadline); `DeadlineExceeded`
/// for `method` once it has passed.
fn time_left(deadline: Option<Instant>, method: &str) -> Result<Option<Duration>> {
    match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
        Some(left) if left.is_zero() => Err(ClientError::DeadlineExceeded {
            method: method.to_string(),
        }),
        left => Ok(left),
    }
}

fn deadline_err(e: ConnectionError, method: &str) -> ClientError {
    match e {
        ConnectionError::Timeout { .. } => ClientError::DeadlineExceeded {
            method: method.to_string(),
        },
        e => ClientError::Connection(e),
    }
}

/// A `Send + Sync` check for the public types, at compile time.
#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Client>();
}
