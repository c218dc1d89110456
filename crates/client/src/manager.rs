//! [`Manager`]: a connection to a manager server, or a server of our own.

use std::sync::Arc;

use mpmanager_connection::Address;
use mpmanager_pickle::Value;
use mpmanager_protocol::{PublicOp, Token};
#[cfg(feature = "server")]
use mpmanager_server::{BackgroundServer, Server, ServerConfig};
use serde::Serialize;

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::proxy::{val, Proxy};
use crate::typed::{
    ArrayProxy, BarrierProxy, ConditionProxy, DictProxy, EventProxy, ListProxy, LockProxy,
    Namespace, QueueProxy, SemaphoreProxy, ValueProxy,
};
use crate::Pipeline;

/// A manager: CPython's `BaseManager`/`SyncManager` seen from Rust.
///
/// * [`Manager::connect`] to a running server, mpmanager's (`mpmanager
///   serve`) or CPython's (`SyncManager(address, authkey).start()` or
///   `get_server().serve_forever()`), using the `pickle` serializer;
/// * [`Manager::start_in_background`] / [`Manager::spawn_server`] run an
///   mpmanager server on a thread of this process; dropping the `Manager`
///   (or [`Manager::shutdown`]) stops it. Proxies that outlive it then fail
///   with [`ClientError::ManagerShutDown`] or a connection error, and stop
///   sending `decref`;
/// * [`Manager::start_server_process`] runs `mpmanager serve` as a separate
///   process (CPython's `SyncManager().start()`), stopped when the
///   `Manager` is dropped or shut down.
///
/// Dropping a *connected* manager does nothing to the server; its proxies
/// keep working.
///
/// ```
/// use mpmanager_client::Manager;
/// let m = Manager::start_in_background(b"secret").unwrap();
/// let before = m.number_of_objects().unwrap();
/// let d = m.dict::<String, i64>().unwrap();
/// d.insert(&"a".to_string(), &1).unwrap();
/// assert_eq!(d.get(&"a".to_string()).unwrap(), Some(1));
/// assert_eq!(m.number_of_objects().unwrap(), before + 1);
/// drop(d);                                   // decref
/// assert_eq!(m.number_of_objects().unwrap(), before);
/// ```
pub struct Manager {
    client: Arc<Client>,
    #[cfg(feature = "server")]
    server: Option<BackgroundServer>,
    process: Option<std::sync::Mutex<std::process::Child>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.client.address)
            .field("in_process_server", &self.in_process_server())
            .field("server_process", &self.process.is_some())
            .finish()
    }
}

impl Manager {
    /// Connects to the server at `address` (CPython's `BaseManager.connect`:
    /// one `dummy` request checks that it answers and that `authkey` is
    /// right).
    ///
    /// `address` accepts anything [`Address`] parses: `127.0.0.1:50000`,
    /// `unix:/path`, `unix:@abstract`.
    pub fn connect(address: &str, authkey: &[u8]) -> Result<Manager> {
        let address: Address = address.parse()?;
        Manager::connect_to(address, authkey)
    }

    /// [`connect`](Self::connect) with a parsed [`Address`].
    pub fn connect_to(address: Address, authkey: &[u8]) -> Result<Manager> {
        let client = Arc::new(Client::new(address, authkey));
        client.oneshot(PublicOp::Dummy, vec![], vec![])?;
        Ok(Manager {
            process: None,
            client,
            #[cfg(feature = "server")]
            server: None,
        })
    }

    /// Runs an mpmanager server on `127.0.0.1` (a free port) in a
    /// background thread of this process, with SyncManager's types, and
    /// connects to it.
    #[cfg(feature = "server")]
    pub fn start_in_background(authkey: &[u8]) -> Result<Manager> {
        let config = ServerConfig::new(
            "127.0.0.1:0".parse().expect("a valid address"),
            authkey.to_vec(),
        );
        Manager::spawn_server(config)
    }

    /// Runs an mpmanager server with `config` (any address, named shared
    /// objects, limits, a custom registry) in a background thread and
    /// connects to it. The `pickle` serializer is required.
    ///
    /// ```
    /// use mpmanager_client::Manager;
    /// use mpmanager_server::ServerConfig;
    /// let dir = std::env::temp_dir().join(format!("mpm-client-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let config = ServerConfig::new(mpmanager_server::Address::Unix(dir.join("s")), b"k".to_vec());
    /// let m = Manager::spawn_server(config).unwrap();
    /// assert!(m.address().to_string().starts_with("unix:"));
    /// drop(m);                                  // stops the server
    /// assert!(!dir.join("s").exists());
    /// std::fs::remove_dir(&dir).unwrap();
    /// ```
    #[cfg(feature = "server")]
    pub fn spawn_server(config: ServerConfig) -> Result<Manager> {
        let authkey = config.authkey.clone();
        let server = Server::bind(config)?.spawn()?;
        let client = Arc::new(Client::new(server.address().clone(), &authkey));
        Ok(Manager {
            process: None,
            client,
            server: Some(server),
        })
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.client.address
    }

    /// The in-process server, for [`spawn_server`](Self::spawn_server)ed
    /// managers (its registry, a shutdown handle).
    #[cfg(feature = "server")]
    pub fn server(&self) -> Option<&BackgroundServer> {
        self.server.as_ref()
    }

    /// True if this manager runs its server on a thread of this process.
    fn in_process_server(&self) -> bool {
        #[cfg(feature = "server")]
        return self.server.is_some();
        #[cfg(not(feature = "server"))]
        return false;
    }

    /// Creates a new shared object of type `typeid` (`'list'`, `'dict'`,
    /// `'Namespace'`, `'Queue'`, `'Value'`, `'Lock'`, … or a typeid
    /// registered on the server) with `typeid(*args, **kwargs)`, and
    /// returns a proxy that owns the one reference `create` makes.
    ///
    /// An unknown typeid or bad arguments give [`ClientError::RemoteError`]
    /// (CPython sends `#TRACEBACK` for failures of `create`).
    pub fn create(
        &self,
        typeid: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<Proxy> {
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(Value::str(typeid));
        all.extend(args);
        let v = self.client.oneshot(PublicOp::Create, all, kwargs)?;
        let bad = || {
            ClientError::Protocol(format!(
                "create reply is not (ident, exposed): {}",
                crate::error::py_repr(&v)
            ))
        };
        let items = match &v {
            Value::Tuple(t) => t.items.clone(),
            Value::List(l) => l.read_recursive().items.clone(),
            _ => return Err(bad()),
        };
        let [ident, exposed] = items.as_slice() else {
            return Err(bad());
        };
        let ident = ident.as_str().ok_or_else(bad)?.to_string();
        let exposed: Option<Vec<String>> = mpmanager_pickle::from_value(exposed).ok();
        let token = Token::new(typeid, self.client.py_address.clone(), &ident);
        Ok(Proxy::adopt(self.client.clone(), token, exposed))
    }

    /// How many objects the server holds references for
    /// (`number_of_objects()`).
    pub fn number_of_objects(&self) -> Result<usize> {
        let v = self
            .client
            .oneshot(PublicOp::NumberOfObjects, vec![], vec![])?;
        Ok(mpmanager_pickle::from_value(&v)?)
    }

    /// The server's text listing of its live objects (`debug_info()`).
    pub fn debug_info(&self) -> Result<String> {
        let v = self.client.oneshot(PublicOp::DebugInfo, vec![], vec![])?;
        Ok(mpmanager_pickle::from_value(&v)?)
    }

    /// Starts `mpmanager serve` (the executable `binary`) as a separate
    /// process listening on `address` (`127.0.0.1:0` for any free port,
    /// `unix:/path`, …) and connects to it, as CPython's
    /// `SyncManager().start()` starts a server process. The authkey goes
    /// to the server in a temporary file readable only by this user,
    /// removed as soon as the server is listening. Dropping the manager
    /// (or [`Manager::shutdown`]) stops the process; the server also stops
    /// by itself if this process dies (`--parent-pid`).
    ///
    /// Fails with [`ClientError::ServerProcess`] if the binary cannot be run or
    /// exits before listening (its stderr is in the message), or does not
    /// listen within 30 s.
    pub fn start_server_process(
        binary: impl AsRef<std::path::Path>,
        address: &str,
        authkey: &[u8],
    ) -> Result<Manager> {
        use std::io::{BufRead, BufReader, Read};
        use std::os::unix::fs::OpenOptionsExt;
        use std::process::{Command, Stdio};

        let binary = binary.as_ref();
        let server_err = ClientError::ServerProcess;
        let dir = std::env::temp_dir().join(format!(
            "mpmanager-key-{}-{}",
            std::process::id(),
            NEXT_KEY_FILE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| server_err(format!("{}: {e}", dir.display())))?;
        let key_path = dir.join("authkey");
        let write_key = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)?;
            f.write_all(authkey)
        };
        let cleanup = || {
            let _ = std::fs::remove_file(&key_path);
            let _ = std::fs::remove_dir(&dir);
        };
        if let Err(e) = write_key() {
            cleanup();
            return Err(server_err(format!("cannot write the authkey file: {e}")));
        }
        let spawned = Command::new(binary)
            .args(["serve", "--quiet", "--print-address", "--address", address])
            .arg("--authkey-file")
            .arg(&key_path)
            .args(["--parent-pid", &std::process::id().to_string()])
            .args(["--log-level", "warn"])
            .env_remove("MPMANAGER_AUTHKEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                cleanup();
                return Err(server_err(format!("cannot run {}: {e}", binary.display())));
            }
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_default();
        cleanup();
        // `error errno=N` instead of an address: it cannot listen.
        if line.trim().is_empty() || line.starts_with("error ") {
            if line.starts_with("error ") {
                // It says why on stderr as it exits.
                let _ = child.wait();
            }
            let _ = child.kill();
            let status = child.wait().ok();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(server_err(format!(
                "{} did not start listening on {address} ({}): {}",
                binary.display(),
                status.map_or("no status".into(), |s| s.to_string()),
                err.trim()
            )));
        }
        let addr: Address = match line.trim().parse() {
            Ok(a) => a,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(server_err(format!(
                    "bad address {line:?} from the server: {e}"
                )));
            }
        };
        // The server's later log lines (warnings) would fill the pipe:
        // drain them to our stderr.
        if let Some(mut e) = child.stderr.take() {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut e, &mut std::io::stderr());
            });
        }
        match Manager::connect_to(addr, authkey) {
            Ok(mut m) => {
                m.process = Some(std::sync::Mutex::new(child));
                Ok(m)
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Asks the server to stop (`shutdown()`), waits for an in-process
    /// server to finish, and marks this manager's proxies as orphaned
    /// (they no longer send `decref`).
    pub fn shutdown(&self) -> Result<()> {
        let r = if self.client.is_closed() {
            Ok(())
        } else {
            self.client
                .oneshot(PublicOp::Shutdown, vec![], vec![])
                .map(drop)
        };
        self.client.close();
        #[cfg(feature = "server")]
        if let Some(s) = &self.server {
            s.shutdown();
            s.handle().wait();
        }
        if let Some(p) = &self.process {
            stop_process(&mut p.lock().unwrap_or_else(|e| e.into_inner()));
        }
        r
    }

    /// Rebuilds a proxy from [`Proxy::to_proxy_string`] with this
    /// manager's authkey, taking a new reference.
    pub fn proxy_from_string(&self, s: &str) -> Result<Proxy> {
        Proxy::from_proxy_string(s, self.client.authkey())
    }

    /// Starts a [`Pipeline`]: several calls sent on one connection before
    /// their replies are read.
    pub fn batch(&self) -> Pipeline {
        Pipeline::new(self.client.clone())
    }

    /// A new `Namespace`.
    pub fn namespace(&self) -> Result<Namespace> {
        Ok(Namespace::from_proxy(self.create(
            "Namespace",
            vec![],
            vec![],
        )?))
    }

    /// A new `list` holding `items`.
    pub fn list<T: Serialize>(&self, items: &[T]) -> Result<ListProxy<T>> {
        let p = self.create("list", vec![val(items)?], vec![])?;
        Ok(ListProxy::from_proxy(p))
    }

    /// A new empty `dict`.
    pub fn dict<K: Serialize, V: Serialize>(&self) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::from_proxy(self.create(
            "dict",
            vec![],
            vec![],
        )?))
    }

    /// A new `Value(typecode, value)` (the typecode is stored, not
    /// checked, as in CPython).
    pub fn value<T: Serialize>(&self, typecode: &str, value: &T) -> Result<ValueProxy<T>> {
        let p = self.create("Value", vec![Value::str(typecode), val(value)?], vec![])?;
        Ok(ValueProxy::from_proxy(p))
    }

    /// A new `Queue(maxsize)` (0: unbounded).
    pub fn queue<T: Serialize>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        let p = self.create("Queue", vec![val(&maxsize)?], vec![])?;
        Ok(QueueProxy::from_proxy(p))
    }

    /// A new `JoinableQueue(maxsize)` (0: unbounded), for
    /// [`QueueProxy::task_done`] and [`QueueProxy::join`].
    pub fn joinable_queue<T: Serialize>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        let p = self.create("JoinableQueue", vec![val(&maxsize)?], vec![])?;
        Ok(QueueProxy::from_proxy(p))
    }

    /// A new `Lock`.
    pub fn lock(&self) -> Result<LockProxy> {
        Ok(LockProxy::from_proxy(self.create(
            "Lock",
            vec![],
            vec![],
        )?))
    }

    /// A new `Semaphore(value)`.
    pub fn semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        Ok(SemaphoreProxy::from_proxy(self.create(
            "Semaphore",
            vec![Value::Int(value as i64)],
            vec![],
        )?))
    }

    /// A new `BoundedSemaphore(value)`.
    pub fn bounded_semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        Ok(SemaphoreProxy::from_proxy(self.create(
            "BoundedSemaphore",
            vec![Value::Int(value as i64)],
            vec![],
        )?))
    }

    /// A new `Condition()` (over its own `RLock`).
    pub fn condition(&self) -> Result<ConditionProxy> {
        Ok(ConditionProxy::from_proxy(self.create(
            "Condition",
            vec![],
            vec![],
        )?))
    }

    /// A new `Barrier(parties)`.
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy> {
        Ok(BarrierProxy::from_proxy(self.create(
            "Barrier",
            vec![Value::Int(parties as i64)],
            vec![],
        )?))
    }

    /// A new `Array(typecode, items)`.
    pub fn array<T: Serialize>(&self, typecode: &str, items: &[T]) -> Result<ArrayProxy<T>> {
        Ok(ArrayProxy::from_proxy(self.create(
            "Array",
            vec![Value::str(typecode), val(items)?],
            vec![],
        )?))
    }

    /// A new `RLock`.
    pub fn rlock(&self) -> Result<LockProxy> {
        Ok(LockProxy::from_proxy(self.create(
            "RLock",
            vec![],
            vec![],
        )?))
    }

    /// A new `Event`.
    pub fn event(&self) -> Result<EventProxy> {
        Ok(EventProxy::from_proxy(self.create(
            "Event",
            vec![],
            vec![],
        )?))
    }
}

impl Drop for Manager {
    /// Stops an in-process server (as CPython's manager `__exit__` does).
    fn drop(&mut self) {
        #[cfg(feature = "server")]
        if let Some(s) = &self.server {
            self.client.close();
            s.shutdown();
        }
        if let Some(p) = &self.process {
            if !self.client.is_closed() {
                let _ = self.client.oneshot(PublicOp::Shutdown, vec![], vec![]);
                self.client.close();
            }
            stop_process(&mut p.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

/// Numbers the temporary authkey files of [`Manager::start_server_process`].
static NEXT_KEY_FILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Waits up to 5 s for a server process told to shut down, then kills it.
fn stop_process(child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
    }
}
