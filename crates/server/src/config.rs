//! [`ServerConfig`] and named shared objects ([`SharedObject`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mpmanager_connection::Address;
use mpmanager_objects::types::{
    ArrayObject, BarrierObject, ConditionObject, DictObject, EventObject, ListObject, LockObject,
    NamespaceObject, QueueObject, SemaphoreObject, SetObject, ValueObject,
};
use mpmanager_objects::{Kwargs, Referent, Registry, TypeSpec};
use mpmanager_pickle::Value;
use mpmanager_protocol::Serializer;

use crate::ServerError;

/// Default [`ServerConfig::handshake_timeout`]: 5 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`ServerConfig::max_connections`]: 4096.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default [`ServerConfig::max_pending_handshakes`]: 256.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 256;
/// Default [`ServerConfig::max_frame`]: 1 GiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 30;
/// Default [`ServerConfig::request_memory`]: 2 GiB + 256 MiB, enough for one
/// request of [`DEFAULT_MAX_FRAME`] holding one `bytes` (its frame and its
/// decoded copy).
pub const DEFAULT_REQUEST_MEMORY: usize = (2 << 30) + (256 << 20);
/// Default [`ServerConfig::request_memory_wait`]: 10 s.
pub const DEFAULT_REQUEST_MEMORY_WAIT: Duration = Duration::from_secs(10);
/// Default [`ServerConfig::decode_factor`]: 32.
pub const DEFAULT_DECODE_FACTOR: usize = mpmanager_pickle::decode::DEFAULT_ALLOC_FACTOR;
/// Default [`ServerConfig::thread_stack_size`]: 256 KiB.
pub const DEFAULT_THREAD_STACK: usize = 256 << 10;

/// Default [`ServerConfig::busy_poll`]: zero, no polling (see there).
pub const DEFAULT_BUSY_POLL: Duration = Duration::ZERO;

/// Everything a [`Server`](crate::Server) needs. Build it with
/// [`ServerConfig::new`], then adjust the public fields.
///
/// `Debug` never shows the authkey.
///
/// ```
/// use std::time::Duration;
/// use mpmanager_server::ServerConfig;
/// let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), b"secret".to_vec());
/// config.handshake_timeout = Duration::from_secs(2);
/// config.objects.push("board=Namespace".parse().unwrap());
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where to listen: TCP (IPv4/IPv6, port 0 for any free port), a unix
    /// socket path or a Linux abstract socket.
    pub address: Address,
    /// The shared secret of the HMAC handshake every connection performs
    /// (CPython's `authkey`). An empty key is refused unless
    /// [`allow_empty_authkey`](Self::allow_empty_authkey) is set, and always
    /// on a TCP address that is not loopback.
    pub authkey: Vec<u8>,
    /// Accept an empty [`authkey`](Self::authkey) (default false: an empty
    /// key, such as `MPMANAGER_AUTHKEY="$UNSET_VAR"`, is an error, since
    /// anyone who can connect could use the server). Even when set, an
    /// empty key is refused on a non-loopback TCP address.
    pub allow_empty_authkey: bool,
    /// The longest a new connection may take to complete the mutual
    /// authentication handshake before it is dropped (default 5 s).
    pub handshake_timeout: Duration,
    /// The most authenticated connections open at once (default 4096).
    /// Connections still in the handshake do not count (see
    /// [`max_pending_handshakes`](Self::max_pending_handshakes)). A client
    /// that authenticates while the limit is reached has its first request
    /// answered with `ConnectionRefusedError` naming the limit, and is
    /// closed.
    pub max_connections: usize,
    /// The most connections in the authentication handshake at once
    /// (default 256), each for at most
    /// [`handshake_timeout`](Self::handshake_timeout); a connection stops
    /// being pending as soon as the peer has proven it has the key. When a
    /// new connection arrives at the limit, the *oldest* pending one is
    /// evicted: its handshake ends, and its socket is held open without a
    /// thread until its deadline (up to a quarter of the open-files limit,
    /// at most 16384 such sockets, then the oldest is closed). A client
    /// with the key answers within a round trip and is done long before it
    /// becomes the oldest, so a peer without the key that holds sockets
    /// open (re-opening each it loses) cannot keep it out as long as it
    /// holds fewer than this many plus the held ones.
    pub max_pending_handshakes: usize,
    /// The largest request frame accepted, in bytes (default 1 GiB). A
    /// larger frame is read and thrown away (nothing is allocated for it)
    /// and its client gets `MemoryError: request of N bytes exceeds the
    /// server's frame limit …` (a `RemoteError` in Python); the connection
    /// and its proxy stay usable.
    pub max_frame: usize,
    /// The memory that requests being received and decoded at once may
    /// hold together, in bytes (default 2.25 GiB): each request's frame,
    /// reserved when its header arrives, and what decoding it allocates, as
    /// counted by the decoder. A request that would go over it waits up to
    /// [`request_memory_wait`](Self::request_memory_wait) for others to
    /// finish, then fails with a `MemoryError` naming the limit; so does a
    /// request that needs more than all of it (a frame of more than half of
    /// it holding a `bytes`: its frame and its decoded copy). Values once
    /// decoded and stored are not counted (as in CPython, stored data is
    /// the program's business).
    pub request_memory: usize,
    /// How long a request may wait for [`request_memory`](Self::request_memory)
    /// (default 10 s).
    pub request_memory_wait: Duration,
    /// Decoding one request may allocate at most this many times its frame
    /// plus 64 MiB (default 32); more fails that request with a
    /// `MemoryError`. Bytes and text cost about 1× their size, containers
    /// of small items 10–30× (a list of empty lists ~60× at worst); the
    /// fixed 64 MiB lets small requests of any shape through.
    pub decode_factor: usize,
    /// Stack size of each connection thread (default 256 KiB; deep values
    /// are handled on heap-allocated stack segments).
    pub thread_stack_size: usize,
    /// Named shared objects to register (`--object NAME=TYPE`).
    pub objects: Vec<SharedObject>,
    /// The registry to serve; `None` for a new one with SyncManager's data
    /// types ([`Registry::with_builtin_types`]). Pass your own to serve
    /// custom [`Referent`] types.
    pub registry: Option<Arc<Registry>>,
    /// The codec of every message after authentication (CPython's
    /// `serializer`): [`Serializer::Pickle`] (default) or
    /// [`Serializer::XmlRpc`] for clients made with
    /// `serializer='xmlrpclib'`.
    pub serializer: Serializer,
    /// The longest a connection thread busy-polls its socket for the next
    /// request before it sleeps in `recv` (default zero: never poll; 50 µs
    /// is a good value). Each connection measures its client's round trip
    /// with polling and with sleeping and polls only where that is
    /// measurably faster, at most one thread fewer than the CPUs poll at
    /// once, and nobody while the machine has more runnable tasks than CPUs
    /// (see [`mpmanager_connection::BusyPoll`]). On VMs whose idle vCPUs
    /// halt it makes Python clients in tight loops 1.4–2× faster; it costs
    /// CPU time, and a client the kernel would have run on the server
    /// thread's CPU can become slower (the measurement does not always
    /// catch it), hence off by default (docs/BENCHMARKS.md).
    pub busy_poll: Duration,
    /// Release what a closing connection acquired and did not release of
    /// the primitives CPython gives no owner: a plain `Lock` and the
    /// permits of a `Semaphore`/`BoundedSemaphore` (default `false`).
    ///
    /// An `RLock`, and a `Condition`'s lock, are always released when the
    /// connection holding them closes: nobody else could release them. A
    /// plain `Lock` may legitimately be released by another process (a
    /// client can acquire it in one process and release it in another, and
    /// each thread of a process has a connection of its own), so releasing
    /// it when its acquirer's connection closes is a policy to opt in to:
    /// right for the usual "acquire, work, release" pattern, where a killed
    /// worker would otherwise keep the lock forever.
    pub release_on_disconnect: bool,
}

impl ServerConfig {
    /// A configuration with the defaults above.
    pub fn new(address: Address, authkey: Vec<u8>) -> ServerConfig {
        ServerConfig {
            address,
            authkey,
            allow_empty_authkey: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            max_frame: DEFAULT_MAX_FRAME,
            request_memory: DEFAULT_REQUEST_MEMORY,
            request_memory_wait: DEFAULT_REQUEST_MEMORY_WAIT,
            decode_factor: DEFAULT_DECODE_FACTOR,
            thread_stack_size: DEFAULT_THREAD_STACK,
            objects: Vec::new(),
            registry: None,
            serializer: Serializer::Pickle,
            busy_poll: DEFAULT_BUSY_POLL,
            release_on_disconnect: false,
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("address", &self.address)
            .field(
                "authkey",
                &format_args!("<{} bytes, hidden>", self.authkey.len()),
            )
            .field("allow_empty_authkey", &self.allow_empty_authkey)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_pending_handshakes", &self.max_pending_handshakes)
            .field("max_frame", &self.max_frame)
            .field("request_memory", &self.request_memory)
            .field("request_memory_wait", &self.request_memory_wait)
            .field("decode_factor", &self.decode_factor)
            .field("thread_stack_size", &self.thread_stack_size)
            .field("objects", &self.objects)
            .field("registry", &self.registry.as_ref().map(|_| "custom"))
            .field("serializer", &self.serializer)
            .field("busy_poll", &self.busy_poll)
            .field("release_on_disconnect", &self.release_on_disconnect)
            .finish()
    }
}

/// The type of a named shared object.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharedKind {
    /// An empty `list`.
    List,
    /// An empty `dict`.
    Dict,
    /// An empty `set`.
    Set,
    /// An empty `Namespace`.
    Namespace,
    /// `Value(typecode, 0)` (`0.0` for `f`/`d`, `''` for `u`/`w`, `b''`
    /// for `c`).
    Value {
        /// The typecode (default `i`).
        typecode: String,
    },
    /// `Array(typecode, [0] * len)`.
    Array {
        /// The typecode (default `i`).
        typecode: String,
        /// The length (default 0).
        len: usize,
    },
    /// An empty `queue.Queue(maxsize)` (`maxsize` 0, the default, is
    /// unbounded), with `Queue`'s exposed list.
    Queue {
        /// The bound (default 0: none).
        maxsize: usize,
    },
    /// The same as [`SharedKind::Queue`], with `JoinableQueue`'s typeid
    /// for the exposed list (identical in CPython).
    JoinableQueue {
        /// The bound (default 0: none).
        maxsize: usize,
    },
    /// A `threading.Event()`, not set.
    Event,
    /// A `threading.Lock()`.
    Lock,
    /// A `threading.RLock()`.
    RLock,
    /// `threading.Semaphore(value)` (default 1).
    Semaphore {
        /// The initial value.
        value: i64,
    },
    /// `threading.BoundedSemaphore(value)` (default 1).
    BoundedSemaphore {
        /// The initial (and largest) value.
        value: i64,
    },
    /// A `threading.Condition()` (over its own `RLock`).
    Condition,
    /// `threading.Barrier(parties)`.
    Barrier {
        /// The number of parties (at least 1).
        parties: i64,
    },
}

/// Types CPython's `SyncManager` has whose objects are Python code: refused.
const PYTHON_ONLY: &[&str] = &["Pool"];

const AVAILABLE: &str = "list, dict, set, Namespace, Value[:TYPECODE], Array[:TYPECODE[:LEN]], \
                         Queue[:MAXSIZE], JoinableQueue[:MAXSIZE], Event, Lock, RLock, Semaphore[:VALUE], BoundedSemaphore[:VALUE], Condition, \
                         Barrier:PARTIES";

/// A named shared object: a typeid `name` whose `create` always returns one
/// and the same object, like CPython's `register('get_queue', callable=lambda:
/// queue)`. Parsed from `NAME=TYPE`:
///
/// | `TYPE`                    | object                                   |
/// |---------------------------|------------------------------------------|
/// | `list`, `dict`, `set`     | an empty one                             |
/// | `Namespace`               | an empty `Namespace`                     |
/// | `Value[:TYPECODE]`        | `Value(TYPECODE, 0)`, typecode `i` by default |
/// | `Array[:TYPECODE[:LEN]]`  | `Array(TYPECODE, [0] * LEN)`             |
/// | `Queue[:MAXSIZE]`         | `queue.Queue(MAXSIZE)`, unbounded by default |
/// | `JoinableQueue[:MAXSIZE]` | the same (CPython's class is the same)   |
/// | `Event`                   | `threading.Event()`                      |
/// | `Lock`, `RLock`           | an unlocked lock                         |
/// | `Semaphore[:VALUE]`       | `Semaphore(VALUE)`, 1 by default         |
/// | `BoundedSemaphore[:VALUE]`| `BoundedSemaphore(VALUE)`, 1 by default  |
/// | `Condition`               | `Condition()` (over its own RLock)       |
/// | `Barrier:PARTIES`         | `Barrier(PARTIES)`                       |
///
/// `NAME` must be a Python identifier not starting with `_` (the client
/// calls it as a manager method) and not a built-in typeid. `Pool` is
/// refused: a pool runs Python code.
///
/// A queue named this way is the "Using a remote manager" example of the
/// `multiprocessing` docs, `QueueManager.register('get_queue', callable=lambda:
/// queue)`: with `--object get_queue=Queue` a client that declares
/// `QueueManager.register('get_queue')` gets an `AutoProxy` to the one queue.
///
/// A Python client declares the name on its manager class, with the proxy
/// type it wants:
///
/// ```python
/// from multiprocessing.managers import SyncManager, ListProxy, NamespaceProxy
/// from multiprocessing.managers import AcquirerProxy, BarrierProxy
/// SyncManager.register('shared', proxytype=ListProxy)
/// SyncManager.register('board', proxytype=NamespaceProxy)
/// SyncManager.register('mutex', proxytype=AcquirerProxy)   # --object mutex=Lock
/// SyncManager.register('start', proxytype=BarrierProxy)    # --object start=Barrier:3
/// m = SyncManager(address=('127.0.0.1', 50000), authkey=KEY); m.connect()
/// m.shared().append(1)      # the same list for every client
/// ```
///
/// ```
/// use mpmanager_server::{SharedKind, SharedObject};
/// let o: SharedObject = "board=Namespace".parse().unwrap();
/// assert_eq!((o.name.as_str(), &o.kind), ("board", &SharedKind::Namespace));
/// let a: SharedObject = "temps=Array:d:3".parse().unwrap();
/// assert_eq!(a.kind, SharedKind::Array { typecode: "d".into(), len: 3 });
/// let q: SharedObject = "get_queue=Queue:5".parse().unwrap();
/// assert_eq!(q.kind, SharedKind::Queue { maxsize: 5 });
/// assert_eq!(q.to_string(), "get_queue=Queue:5");
/// let s: SharedObject = "slots=BoundedSemaphore:4".parse().unwrap();
/// assert_eq!(s.kind, SharedKind::BoundedSemaphore { value: 4 });
/// let b: SharedObject = "start=Barrier:3".parse().unwrap();
/// assert_eq!(b.kind, SharedKind::Barrier { parties: 3 });
/// assert!("start=Barrier".parse::<SharedObject>().is_err());
/// assert!("start=Barrier:0".parse::<SharedObject>().is_err());
/// assert_eq!("mutex=Lock".parse::<SharedObject>().unwrap().to_string(), "mutex=Lock");
/// let e = "p=Pool".parse::<SharedObject>().unwrap_err();
/// assert!(e.to_string().contains("runs no Python code"), "{e}");
/// assert!("q=Queue:x".parse::<SharedObject>().is_err());
/// assert!("e=Event:1".parse::<SharedObject>().is_err());
/// assert!("list=list".parse::<SharedObject>().is_err());
/// assert!("1x=list".parse::<SharedObject>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedObject {
    /// The typeid (manager method name).
    pub name: String,
    /// What object it is.
    pub kind: SharedKind,
}

impl FromStr for SharedObject {
    type Err = ServerError;

    fn from_str(spec: &str) -> Result<SharedObject, ServerError> {
        let bad = |reason: String| ServerError::InvalidObject {
            spec: spec.to_string(),
            reason,
        };
        let (name, ty) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=TYPE".into()))?;
        check_name(name).map_err(bad)?;
        let mut parts = ty.split(':');
        let base = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        let typecode = |s: Option<&&str>| -> Result<String, ServerError> {
            match s {
                None => Ok("i".into()),
                Some(t) if t.chars().count() == 1 => Ok(t.to_string()),
                Some(t) => Err(bad(format!("bad typecode {t:?}: one character expected"))),
            }
        };
        let no_params = |kind: SharedKind| {
            if rest.is_empty() {
                Ok(kind)
            } else {
                Err(bad(format!("type {base} takes no parameters")))
            }
        };
        let kind = match base {
            "list" => no_params(SharedKind::List)?,
            "dict" => no_params(SharedKind::Dict)?,
            "set" => no_params(SharedKind::Set)?,
            "Namespace" => no_params(SharedKind::Namespace)?,
            "Event" => no_params(SharedKind::Event)?,
            "Queue" | "JoinableQueue" => {
                let maxsize = match rest.as_slice() {
                    [] => 0,
                    [n] => n
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n <= i64::MAX as usize)
                        .ok_or_else(|| bad(format!("bad queue maxsize {n:?}")))?,
                    _ => return Err(bad(format!("expected {base}[:MAXSIZE]"))),
                };
                if base == "Queue" {
                    SharedKind::Queue { maxsize }
                } else {
                    SharedKind::JoinableQueue { maxsize }
                }
            }
            "Value" => {
                if rest.len() > 1 {
                    return Err(bad("expected Value[:TYPECODE]".into()));
                }
                SharedKind::Value {
                    typecode: typecode(rest.first())?,
                }
            }
            "Array" => {
                if rest.len() > 2 {
                    return Err(bad("expected Array[:TYPECODE[:LEN]]".into()));
                }
                let len = match rest.get(1) {
                    None => 0,
                    Some(n) => n
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n <= 1 << 24)
                        .ok_or_else(|| bad(format!("bad array length {n:?}")))?,
                };
                SharedKind::Array {
                    typecode: typecode(rest.first())?,
                    len,
                }
            }
            "Lock" => no_params(SharedKind::Lock)?,
            "RLock" => no_params(SharedKind::RLock)?,
            "Condition" => no_params(SharedKind::Condition)?,
            "Semaphore" | "BoundedSemaphore" => {
                let value = match rest.as_slice() {
                    [] => 1,
                    [v] => v
                        .parse::<i64>()
                        .ok()
                        .filter(|v| *v >= 0)
                        .ok_or_else(|| bad(format!("bad semaphore value {v:?}")))?,
                    _ => return Err(bad(format!("expected {base}[:VALUE]"))),
                };
                if base == "Semaphore" {
                    SharedKind::Semaphore { value }
                } else {
                    SharedKind::BoundedSemaphore { value }
                }
            }
            "Barrier" => match rest.as_slice() {
                [p] => SharedKind::Barrier {
                    parties: p
                        .parse::<i64>()
                        .ok()
                        .filter(|p| *p >= 1)
                        .ok_or_else(|| bad(format!("bad number of parties {p:?}")))?,
                },
                _ => return Err(bad("expected Barrier:PARTIES".into())),
            },
            t if PYTHON_ONLY.contains(&t) => {
                return Err(bad(format!(
                    "type {t} cannot be hosted: its objects run Python code (a pool of \
                     Python worker processes), and this server runs no Python code \
                     (available: {AVAILABLE})"
                )))
            }
            t => return Err(bad(format!("unknown type {t:?} (available: {AVAILABLE})"))),
        };
        let obj = SharedObject {
            name: name.to_string(),
            kind,
        };
        // Validate the constructor arguments now (bad typecodes).
        obj.build().map_err(|e| bad(e.to_string()))?;
        Ok(obj)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !ok_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "the name {name:?} is not a Python identifier (letters, digits, '_')"
        ));
    }
    if name.starts_with('_') {
        return Err(format!(
            "the name {name:?} starts with '_' (proxies treat such names as private)"
        ));
    }
    let builtin = [
        "list",
        "dict",
        "set",
        "Namespace",
        "Value",
        "Array",
        "Iterator",
        "Lock",
        "RLock",
        "Semaphore",
        "BoundedSemaphore",
        "Condition",
        "Barrier",
    ];
    if builtin.contains(&name)
        || PYTHON_ONLY.contains(&name)
        || mpmanager_protocol::registry::lookup(name).is_some()
    {
        return Err(format!("the name {name:?} is a built-in typeid"));
    }
    Ok(())
}

impl SharedObject {
    /// A new object of this kind.
    fn build(&self) -> Result<Arc<dyn Referent>, mpmanager_pickle::PyErr> {
        let kw = Kwargs::new();
        Ok(match &self.kind {
            SharedKind::List => Arc::new(ListObject::new(Vec::new())),
            SharedKind::Dict => Arc::new(DictObject::construct(&[], &kw)?),
            SharedKind::Set => Arc::new(SetObject::construct(&[], &kw)?),
            SharedKind::Namespace => Arc::new(NamespaceObject::construct(&[], &kw)?),
            SharedKind::Value { typecode } => {
                let zero = match typecode.as_str() {
                    "f" | "d" => Value::Float(0.0),
                    "u" | "w" => Value::str(""),
                    "c" => Value::bytes(b""),
                    _ => Value::Int(0),
                };
                Arc::new(ValueObject::construct(&[Value::str(typecode), zero], &kw)?)
            }
            SharedKind::Array { typecode, len } => {
                let zero = match typecode.as_str() {
                    "f" | "d" => Value::Float(0.0),
                    "u" | "w" => Value::str("\0"),
                    _ => Value::Int(0),
                };
                let items = Value::list(vec![zero; *len]);
                Arc::new(ArrayObject::array(&Value::str(typecode), &items)?)
            }
            SharedKind::Queue { maxsize } | SharedKind::JoinableQueue { maxsize } => {
                Arc::new(QueueObject::with_maxsize(*maxsize as i64))
            }
            SharedKind::Event => Arc::new(EventObject::new()),
            SharedKind::Lock => Arc::new(LockObject::construct_lock(&[], &kw)?),
            SharedKind::RLock => Arc::new(LockObject::construct_rlock(&[], &kw)?),
            SharedKind::Semaphore { value } => Arc::new(SemaphoreObject::new(*value, false)),
            SharedKind::BoundedSemaphore { value } => Arc::new(SemaphoreObject::new(*value, true)),
            SharedKind::Condition => Arc::new(ConditionObject::new()),
            SharedKind::Barrier { parties } => Arc::new(BarrierObject::new(*parties, None)),
        })
    }

    /// Registers this object in `registry` under its name, with the exposed
    /// list (and `method_to_typeid`) of its type.
    pub(crate) fn register(&self, registry: &Registry) -> Result<(), ServerError> {
        if registry.type_spec(&self.name).is_some() {
            return Err(ServerError::InvalidObject {
                spec: self.to_string(),
                reason: format!("typeid {:?} is already registered", self.name),
            });
        }
        let object = self.build().map_err(|e| ServerError::InvalidObject {
            spec: self.to_string(),
            reason: e.to_string(),
        })?;
        let spec = TypeSpec::shared(&self.name, object);
        let typeid = match &self.kind {
            SharedKind::List => "list",
            SharedKind::Dict => "dict",
            SharedKind::Set => "set",
            SharedKind::Namespace => "Namespace",
            SharedKind::Value { .. } => "Value",
            SharedKind::Array { .. } => "Array",
            SharedKind::Queue { .. } => "Queue",
            SharedKind::JoinableQueue { .. } => "JoinableQueue",
            SharedKind::Event => "Event",
            SharedKind::Lock => "Lock",
            SharedKind::RLock => "RLock",
            SharedKind::Semaphore { .. } => "Semaphore",
            SharedKind::BoundedSemaphore { .. } => "BoundedSemaphore",
            SharedKind::Condition => "Condition",
            SharedKind::Barrier { .. } => "Barrier",
        };
        let table =
            mpmanager_protocol::registry::lookup(typeid).expect("a SyncManager built-in typeid");
        let spec = spec.builtin(table);
        registry.register(spec);
        Ok(())
    }
}

impl fmt::Display for SharedObject {
    /// The `NAME=TYPE` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SharedKind::List => write!(f, "{}=list", self.name),
            SharedKind::Dict => write!(f, "{}=dict", self.name),
            SharedKind::Set => write!(f, "{}=set", self.name),
            SharedKind::Namespace => write!(f, "{}=Namespace", self.name),
            SharedKind::Value { typecode } => write!(f, "{}=Value:{typecode}", self.name),
            SharedKind::Array { typecode, len } => {
                write!(f, "{}=Array:{typecode}:{len}", self.name)
            }
            SharedKind::Queue { maxsize: 0 } => write!(f, "{}=Queue", self.name),
            SharedKind::Queue { maxsize } => write!(f, "{}=Queue:{maxsize}", self.name),
            SharedKind::JoinableQueue { maxsize: 0 } => write!(f, "{}=JoinableQueue", self.name),
            SharedKind::JoinableQueue { maxsize } => {
                write!(f, "{}=JoinableQueue:{maxsize}", self.name)
            }
            SharedKind::Event => write!(f, "{}=Event", self.name),
            SharedKind::Lock => write!(f, "{}=Lock", self.name),
            SharedKind::RLock => write!(f, "{}=RLock", self.name),
            SharedKind::Semaphore { value } => write!(f, "{}=Semaphore:{value}", self.name),
            SharedKind::BoundedSemaphore { value } => {
                write!(f, "{}=BoundedSemaphore:{value}", self.name)
            }
            SharedKind::Condition => write!(f, "{}=Condition", self.name),
            SharedKind::Barrier { parties } => write!(f, "{}=Barrier:{parties}", self.name),
        }
    }
}
