//! [`Server`], [`ServerHandle`], [`BackgroundServer`]: the listener, the
//! accept loop and shutdown.

use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mpmanager_connection::{Address, ConnectionError, Listener, SpinBudget, Stream};
use mpmanager_objects::Registry;
use mpmanager_protocol::PyAddress;

use crate::admission::Admission;
use crate::watch::HangupWatcher;
use crate::{conn, ServerConfig, ServerError};
use mpmanager_protocol::Serializer;

/// State shared by the accept loop, the connection threads and handles.
pub(crate) struct Shared {
    pub(crate) authkey: Vec<u8>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_frame: usize,
    /// [`ServerConfig::decode_factor`].
    pub(crate) decode_factor: usize,
    /// [`ServerConfig::request_memory`], shared by all connections.
    pub(crate) request_memory: crate::budget::RequestMemory,
    pub(crate) serializer: Serializer,
    /// [`ServerConfig::busy_poll`] and the server-wide cap on pollers;
    /// `None` when polling is off.
    pub(crate) busy_poll: Option<(Duration, Arc<SpinBudget>)>,
    /// [`ServerConfig::release_on_disconnect`].
    pub(crate) release_on_disconnect: bool,
    /// Cancels the calls of connections whose peer hangs up (`None` if it
    /// could not be started: calls then wait as with CPython's server).
    pub(crate) watcher: Option<Arc<HangupWatcher>>,
    /// Pending handshakes and authenticated connections (`admission.rs`).
    pub(crate) admission: Arc<Admission>,
    thread_stack_size: usize,
    pub(crate) registry: Arc<Registry>,
    address: Address,
    /// The address in tokens (`#PROXY` replies).
    pub(crate) py_address: PyAddress,
    stop: AtomicBool,
    /// The listener while the accept loop runs; taken (and dropped) when it
    /// ends, so that a handle never touches a closed descriptor.
    listener: Mutex<Option<Arc<Listener>>>,
    /// Authenticated connections, to wake them at shutdown.
    conns: Mutex<HashMap<u64, Stream>>,
    /// Connection threads alive (pending, authenticated, or closing).
    active: AtomicUsize,
    next_conn: AtomicU64,
    /// Set when the accept loop has ended and the listener is closed.
    finished: Mutex<bool>,
    finished_cv: Condvar,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Starts shutting down: no new connections, the listener is woken
    /// (its `accept` fails), and authenticated connections are shut down.
    pub(crate) fn shutdown(&self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!("shutting down");
        if let Some(w) = &self.watcher {
            w.stop();
        }
        if let Some(l) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            // On Linux, shutdown(2) on a listening socket makes a blocked
            // accept(2) return EINVAL at once (TCP and unix alike).
            // SAFETY: the descriptor is open: the Arc in the slot keeps the
            // listener alive while we hold the lock.
            unsafe {
                libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        for s in conns.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Tracks an authenticated connection until the guard drops.
    pub(crate) fn track(self: &Arc<Self>, id: u64, stream: &Stream) -> Option<TrackGuard> {
        let clone = stream.try_clone().ok()?;
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if self.stopping() {
            let _ = clone.shutdown(Shutdown::Both);
        }
        conns.insert(id, clone);
        Some(TrackGuard {
            shared: self.clone(),
            id,
        })
    }

    fn wait_finished(&self) {
        let mut f = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        while !*f {
            f = self.finished_cv.wait(f).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Removes a connection from the shutdown list when it ends.
pub(crate) struct TrackGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        self.shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Counts a connection thread (including its handshake) while alive.
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A bound manager server.
///
/// [`Server::bind`] creates the listening socket and the object registry;
/// [`Server::serve`] runs the accept loop on the calling thread until a
/// client sends `shutdown` or a [`ServerHandle`] calls
/// [`shutdown`](ServerHandle::shutdown); [`Server::spawn`] runs it on a
/// background thread. Each connection is served by its own thread with
/// blocking I/O, as in CPython.
///
/// An in-process server and a raw client speaking the wire protocol:
///
/// ```
/// use mpmanager_connection::{auth, Connection};
/// use mpmanager_pickle::{decode, encode, Value};
/// use mpmanager_protocol::{PublicOp, Reply, Request};
/// use mpmanager_server::{Server, ServerConfig};
///
/// let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), b"secret".to_vec());
/// let server = Server::bind(config).unwrap().spawn().unwrap();
///
/// // One-shot `create`, as `manager.list([1, 2])` sends it.
/// let mut c = Connection::connect(server.address(), None).unwrap();
/// auth::client_handshake(&mut c, b"secret").unwrap();
/// let req = Request::public(PublicOp::Create, vec![
///     Value::str("list"), Value::list(vec![Value::Int(1), Value::Int(2)]),
/// ]);
/// c.send(&encode(&req.to_value()).unwrap()).unwrap();
/// let Reply::Return(r) = Reply::from_value(&decode(&c.recv(1 << 20).unwrap()).unwrap()).unwrap()
///     else { panic!() };
/// let Value::Tuple(t) = &r else { panic!() };
/// let ident = t[0].as_str().unwrap().to_string();
/// assert_eq!(server.registry().number_of_objects(), 1);
///
/// // A served connection: `accept_connection`, then method calls.
/// let mut c = Connection::connect(server.address(), None).unwrap();
/// auth::client_handshake(&mut c, b"secret").unwrap();
/// let hello = Request::public(PublicOp::AcceptConnection, vec![Value::str("MainProcess")]);
/// c.send(&encode(&hello.to_value()).unwrap()).unwrap();
/// assert_eq!(Reply::from_value(&decode(&c.recv(1 << 20).unwrap()).unwrap()).unwrap(), Reply::none());
/// let call = Request::call(ident.as_str(), "__repr__", vec![], vec![]);
/// c.send(&encode(&call.to_value()).unwrap()).unwrap();
/// let reply = Reply::from_value(&decode(&c.recv(1 << 20).unwrap()).unwrap()).unwrap();
/// assert_eq!(reply, Reply::Return(Value::str("[1, 2]")));
///
/// server.shutdown();
/// server.join().unwrap();
/// ```
pub struct Server {
    shared: Arc<Shared>,
    listener: Arc<Listener>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.shared.address)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Validates `config`, registers its named shared objects and binds the
    /// listening socket (TCP listeners get `SO_REUSEADDR`; a stale unix
    /// socket file is replaced, a live one refused).
    ///
    /// Errors: [`ServerError::EmptyAuthkey`] for an empty key on a
    /// non-loopback TCP address, [`ServerError::EmptyAuthkeyNotAllowed`]
    /// for an empty key without [`ServerConfig::allow_empty_authkey`],
    /// [`ServerError::InvalidObject`] for a named object whose typeid is
    /// taken, [`ServerError::Listen`] if binding fails.
    pub fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        if config.authkey.is_empty() {
            if let Address::Tcp(sa) = &config.address {
                if !sa.ip().is_loopback() {
                    return Err(ServerError::EmptyAuthkey {
                        address: config.address.to_string(),
                    });
                }
            }
            if !config.allow_empty_authkey {
                return Err(ServerError::EmptyAuthkeyNotAllowed);
            }
        }
        let registry = config
            .registry
            .clone()
            .unwrap_or_else(|| Arc::new(Registry::with_builtin_types()));
        let mut seen = std::collections::HashSet::new();
        for o in &config.objects {
            if !seen.insert(o.name.clone()) {
                return Err(ServerError::InvalidObject {
                    spec: o.to_string(),
                    reason: format!("the name {:?} is given twice", o.name),
                });
            }
            o.register(&registry)?;
        }
        let listener = Listener::bind(&config.address).map_err(ServerError::Listen)?;
        let address = listener.local_address().clone();
        let py_address = PyAddress::of(&address);
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared {
            authkey: config.authkey,
            handshake_timeout: config.handshake_timeout,
            max_frame: config.max_frame,
            decode_factor: config.decode_factor,
            request_memory: crate::budget::RequestMemory::new(
                config.request_memory,
                config.request_memory_wait,
            ),
            serializer: config.serializer,
            busy_poll: (!config.busy_poll.is_zero())
                .then(|| (config.busy_poll, Arc::new(SpinBudget::for_this_machine()))),
            release_on_disconnect: config.release_on_disconnect,
            watcher: match HangupWatcher::start() {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(
                        "cannot watch connections for hang-ups ({e}): a dead client's \
                         blocked call will wait until it completes"
                    );
                    None
                }
            },
            admission: Arc::new(Admission::new(
                config.max_connections,
                config.max_pending_handshakes,
                config.handshake_timeout,
            )),
            thread_stack_size: config.thread_stack_size.max(64 << 10),
            registry,
            address,
            py_address,
            stop: AtomicBool::new(false),
            listener: Mutex::new(Some(listener.clone())),
            conns: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
            finished: Mutex::new(false),
            finished_cv: Condvar::new(),
        });
        Ok(Server { shared, listener })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// The address as CPython clients see it and as it appears in tokens,
    /// e.g. `('127.0.0.1', 50000)`, `'/tmp/mgr.sock'`, `b'\x00name'`.
    pub fn python_address(&self) -> &PyAddress {
        &self.shared.py_address
    }

    /// The object registry being served.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.shared.registry
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Runs the accept loop on this thread until shutdown (a client's
    /// `shutdown` request or [`ServerHandle::shutdown`]). When it returns,
    /// the listening socket is closed (a unix socket file removed), so the
    /// address can be bound again at once, and every authenticated
    /// connection has been shut down; connection threads still inside a
    /// call finish on their own.
    pub fn serve(self) -> Result<(), ServerError> {
        let Server { shared, listener } = self;
        tracing::info!(address = %shared.address, python = %shared.py_address, "serving");
        let mut emfile_logged = false;
        while !shared.stopping() {
            match listener.accept() {
                Ok(stream) => {
                    if shared.stopping() {
                        break;
                    }
                    emfile_logged = false;
                    start_connection(&shared, stream);
                }
                Err(_) if shared.stopping() => break,
                Err(ConnectionError::Io(e)) => {
                    match e.raw_os_error() {
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                            if !emfile_logged {
                                tracing::error!("accept failed, retrying: {e}");
                                emfile_logged = true;
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        // The peer gave up before we accepted it, and the like.
                        _ if e.kind() != io::ErrorKind::InvalidInput => {
                            tracing::debug!("accept failed: {e}");
                        }
                        _ => {
                            tracing::error!("accept failed: {e}");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
                Err(e) => tracing::debug!("accept failed: {e}"),
            }
        }
        // Close the listener: take it out of the slot (under the lock, so a
        // concurrent shutdown() is done with the descriptor), then drop.
        let slot = shared
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(slot);
        drop(listener);
        shared.shutdown();
        shared.admission.close_unauthenticated();
        *shared.finished.lock().unwrap_or_else(|p| p.into_inner()) = true;
        shared.finished_cv.notify_all();
        tracing::info!("server stopped");
        Ok(())
    }

    /// Runs [`serve`](Server::serve) on a new thread.
    pub fn spawn(self) -> Result<BackgroundServer, ServerError> {
        let handle = self.handle();
        let registry = self.shared.registry.clone();
        let address = self.shared.address.clone();
        let py_address = self.shared.py_address.clone();
        let thread = std::thread::Builder::new()
            .name("mpmanager-accept".into())
            .spawn(move || self.serve())?;
        Ok(BackgroundServer {
            handle,
            registry,
            address,
            py_address,
            thread: Some(thread),
        })
    }
}

/// Starts the thread serving one accepted connection. It is pending (see
/// `admission.rs`) until its handshake ends: at the limit of pending
/// handshakes the oldest pending connection is closed to make room.
fn start_connection(shared: &Arc<Shared>, stream: Stream) {
    shared.active.fetch_add(1, Ordering::SeqCst);
    let guard = ActiveGuard(shared.clone());
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let pending = shared.admission.enter_pending(id, &stream);
    let sh = shared.clone();
    let r = std::thread::Builder::new()
        .name(format!("mpm-conn-{id}"))
        .stack_size(shared.thread_stack_size)
        .spawn(move || {
            let _guard = guard;
            let r = catch_unwind(AssertUnwindSafe(|| conn::handle(&sh, id, stream, pending)));
            if r.is_err() {
                tracing::error!(
                    conn = id,
                    "bug: connection handler panicked; connection closed"
                );
            }
        });
    if let Err(e) = r {
        tracing::error!("cannot start a connection thread: {e}");
    }
}

/// A cloneable handle to a running [`Server`].
///
/// ```
/// use mpmanager_server::{Server, ServerConfig};
/// let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap(), b"k".to_vec())).unwrap();
/// let handle = server.handle();
/// let t = std::thread::spawn(move || server.serve());
/// handle.shutdown();
/// t.join().unwrap().unwrap();
/// assert!(handle.is_shutdown());
/// ```
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("address", &self.shared.address)
            .field("stopping", &self.shared.stopping())
            .finish()
    }
}

impl ServerHandle {
    /// Asks the server to stop: [`Server::serve`] returns promptly. Calling
    /// it again does nothing.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// True once shutdown has been requested (by a handle or a client).
    pub fn is_shutdown(&self) -> bool {
        self.shared.stopping()
    }

    /// Blocks until the accept loop has ended and the listener is closed.
    pub fn wait(&self) {
        self.shared.wait_finished();
    }

    /// The bound address.
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// Connections currently open (including ones still authenticating,
    /// and ones being closed).
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Authenticated connections, the ones counted toward
    /// [`ServerConfig::max_connections`].
    pub fn authenticated_connections(&self) -> usize {
        self.shared.admission.authenticated()
    }

    /// Connections in the authentication handshake (at most
    /// [`ServerConfig::max_pending_handshakes`]).
    pub fn pending_handshakes(&self) -> usize {
        self.shared.admission.pending()
    }
}

/// A server running on a background thread ([`Server::spawn`]).
/// Dropping it shuts the server down and waits for the accept loop.
#[derive(Debug)]
pub struct BackgroundServer {
    handle: ServerHandle,
    registry: Arc<Registry>,
    address: Address,
    py_address: PyAddress,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl BackgroundServer {
    /// The bound address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The address as CPython clients see it.
    pub fn python_address(&self) -> &PyAddress {
        &self.py_address
    }

    /// The object registry being served.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// A handle (cloneable, e.g. for a signal handler thread).
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Requests shutdown (see [`ServerHandle::shutdown`]).
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }

    /// Waits until the server has stopped (after a shutdown request from a
    /// handle or a client) and returns how it ended.
    pub fn join(mut self) -> Result<(), ServerError> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(Err(ServerError::Panicked)),
            None => Ok(()),
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shutdown();
            let _ = t.join();
        }
    }
}
