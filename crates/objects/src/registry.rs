//! The object registry: typeids, idents, reference counts and the lifetime
//! of nested proxies.
//!
//! # Tables and locking
//!
//! * Type specs live in a `RwLock<HashMap>` that is only written by
//!   [`Registry::register`] (at start-up).
//! * Objects live in 16 shards of `RwLock<HashMap<u64, Arc<Entry>>>` keyed by
//!   the ident's number. A method call takes one shard's **read** lock just
//!   long enough to clone the entry's `Arc`, then calls the referent with no
//!   registry lock held: there is no global lock on the call path, and one
//!   object's slow (or blocking) method never delays calls on another.
//! * `create`/`incref`/`decref` take one shard's write lock. Objects are
//!   always dropped *after* the lock is released (a referent may hold large
//!   values; dropping never calls back into the registry).
//! * Lock order: an object's own lock is never held while taking a shard
//!   lock in a way that can wait on the object (the collector gathers
//!   proxy idents from an object first, looks them up afterwards).
//!
//! # Nested proxies (docs/PROTOCOL.md §5.3)
//!
//! When call or create arguments contain a pickled proxy to one of our
//! objects, that object is **stashed**: it stays alive when its client
//! refcount drops to 0, method calls on it keep working, and `incref`
//! revives it (refcount 1). Unlike CPython, which never forgets stashed
//! objects (gh-103136), a mark-and-sweep collector frees stashed objects
//! that no longer have client references and are not reachable through the
//! proxies stored in externally referenced objects:
//!
//! * **Roots**: objects with a refcount > 0, named shared objects, and
//!   stashed objects whose proxy was just sent to a client (a *lease* of
//!   [`RegistryConfig::revive_grace`], so the client's `incref` that follows
//!   unpickling finds it).
//! * **Mark**: only objects known to hold proxies are scanned (an object is
//!   flagged when a proxy arrives in its call arguments or its create
//!   arguments); other objects are never read by the collector.
//! * **Sweep**: stashed, unreferenced, unmarked objects are removed.
//! * **Trigger** (amortisation): a collection runs when a stashed object's
//!   refcount reaches 0 and the number of such pending candidates is at
//!   least half of all stashed objects (so at most ~2 collections per
//!   candidate freed), or when [`Registry::collect`] is called. A
//!   collection costs O(objects) for the root scan plus O(total size of the
//!   values of reachable proxy-holding objects); objects that never
//!   received a proxy cost one flag check.
//! * **Safety against concurrent calls**: a call on a proxy-holding object
//!   (or a create with proxy arguments) may move proxies around while the
//!   collector marks; the collector counts such calls and, if one overlapped
//!   its mark phase, frees nothing and leaves the candidates pending for the
//!   next run (it retries a few times at once). A long *blocking* call on a
//!   proxy-holding object therefore postpones collection until it returns.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpmanager_pickle::{ExcType, PyErr, Value};
use parking_lot::{Mutex, RwLock};

use crate::proxy::for_each_proxy;
use crate::referent::{CallContext, CallError, Kwargs, Outcome, Referent};
use mpmanager_protocol::traceback::{self, format_chain, TbEntry};

/// Builds a new referent from `create` arguments; a `PyErr` becomes the
/// `#TRACEBACK` CPython sends for a failing constructor.
pub type Constructor =
    Arc<dyn Fn(&[Value], &Kwargs) -> Result<Arc<dyn Referent>, PyErr> + Send + Sync>;

/// A [`Constructor`] that also gets the registry the object is created in,
/// to look up the shared objects whose proxies it was passed (CPython's
/// server rebuilds such a proxy as a connection to itself; e.g.
/// `Condition(lock=<a Lock proxy>)`). It must not register objects.
pub type RegistryConstructor =
    Arc<dyn Fn(&Registry, &[Value], &Kwargs) -> Result<Arc<dyn Referent>, PyErr> + Send + Sync>;

#[derive(Clone)]
enum Ctor {
    Plain(Constructor),
    WithRegistry(RegistryConstructor),
}

/// How one typeid is served: CPython's registry entry `(callable, exposed,
/// method_to_typeid, proxytype)` minus the client-only proxy type.
///
/// ```
/// use std::sync::Arc;
/// use mpmanager_objects::{TypeSpec, types::ListObject, Referent};
/// let spec = TypeSpec::new("mylist", Arc::new(|a, k| {
///         Ok(Arc::new(ListObject::construct(a, k)?) as Arc<dyn Referent>)
///     }))
///     .exposed(&["append", "__len__"]);
/// assert_eq!(spec.exposed_list(), ["append", "__len__"]);
/// ```
#[derive(Clone)]
pub struct TypeSpec {
    typeid: String,
    constructor: Option<Ctor>,
    exposed: Vec<String>,
    exposed_set: HashSet<String>,
    method_to_typeid: Vec<(String, String)>,
    shared: Option<Arc<dyn Referent>>,
}

impl TypeSpec {
    /// A typeid whose `create` calls `constructor(args, kwargs)`.
    pub fn new(typeid: &str, constructor: Constructor) -> TypeSpec {
        TypeSpec {
            typeid: typeid.to_string(),
            constructor: Some(Ctor::Plain(constructor)),
            exposed: Vec::new(),
            exposed_set: HashSet::new(),
            method_to_typeid: Vec::new(),
            shared: None,
        }
    }

    /// A typeid whose `create` calls `constructor(registry, args, kwargs)`
    /// (see [`RegistryConstructor`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mpmanager_objects::{Kwargs, Referent, Registry, TypeSpec, types::ListObject};
    /// use mpmanager_pickle::Value;
    /// let reg = Registry::with_builtin_types();
    /// // A list of the typeids of the objects it was given idents of.
    /// reg.register(TypeSpec::with_registry("typeids", Arc::new(|reg, a, _| {
    ///     let names = a.iter()
    ///         .map(|v| Value::str(&reg.typeid_of(v.as_str().unwrap_or("")).unwrap_or_default()))
    ///         .collect();
    ///     Ok(Arc::new(ListObject::new(names)) as Arc<dyn Referent>)
    /// })).exposed(&["__len__"]));
    /// let (d, _) = reg.create("dict", &[], &Kwargs::new()).unwrap();
    /// let (t, _) = reg.create("typeids", &[Value::str(&d)], &Kwargs::new()).unwrap();
    /// assert_eq!(reg.get(&t).unwrap().repr().unwrap(), "['dict']");
    /// ```
    pub fn with_registry(typeid: &str, constructor: RegistryConstructor) -> TypeSpec {
        TypeSpec {
            constructor: Some(Ctor::WithRegistry(constructor)),
            ..TypeSpec::without_constructor(typeid)
        }
    }

    /// A typeid whose objects only come from method results
    /// ([`Outcome::NewObject`] or `method_to_typeid`), like CPython's
    /// `Iterator` (registered with `callable=None`). Clients cannot create
    /// it directly.
    pub fn without_constructor(typeid: &str) -> TypeSpec {
        TypeSpec {
            constructor: None,
            ..TypeSpec::new(typeid, Arc::new(|_, _| unreachable!()))
        }
    }

    /// A named shared object, like `register('get_queue', callable=lambda:
    /// queue)`: every `create` returns this one object under the same ident,
    /// and its refcount carries over between creates.
    pub fn shared(typeid: &str, object: Arc<dyn Referent>) -> TypeSpec {
        TypeSpec {
            shared: Some(object),
            ..TypeSpec::without_constructor(typeid)
        }
    }

    /// Sets the exposed method names, in the order `create` reports them.
    pub fn exposed(mut self, names: &[&str]) -> TypeSpec {
        self.exposed = names.iter().map(|s| s.to_string()).collect();
        self.exposed_set = self.exposed.iter().cloned().collect();
        self
    }

    /// Exposed list and `method_to_typeid` of a SyncManager built-in type,
    /// from the protocol crate's table (wire order, duplicates kept).
    ///
    /// ```
    /// use mpmanager_objects::TypeSpec;
    /// let dict = mpmanager_protocol::registry::lookup("dict").unwrap();
    /// let spec = TypeSpec::without_constructor("dict").builtin(dict);
    /// assert_eq!(spec.exposed_list().iter().filter(|m| *m == "__iter__").count(), 2);
    /// ```
    pub fn builtin(mut self, spec: &mpmanager_protocol::registry::TypeSpec) -> TypeSpec {
        self = self.exposed(spec.exposed());
        self.method_to_typeid = spec
            .method_to_typeid()
            .iter()
            .map(|(m, t)| (m.to_string(), t.to_string()))
            .collect();
        self
    }

    /// Declares that method `method` returns a new object of `typeid`
    /// (CPython's `method_to_typeid`). As in CPython, the method name is
    /// appended to the exposed list again (so `dict` reports `'__iter__'`
    /// twice).
    pub fn method_to_typeid(mut self, method: &str, typeid: &str) -> TypeSpec {
        self.method_to_typeid
            .push((method.to_string(), typeid.to_string()));
        self.exposed.push(method.to_string());
        self.exposed_set.insert(method.to_string());
        self
    }

    /// The typeid.
    pub fn typeid(&self) -> &str {
        &self.typeid
    }

    /// The exposed list as `create` sends it (duplicates kept).
    pub fn exposed_list(&self) -> &[String] {
        &self.exposed
    }

    /// True if `method` may be called.
    pub fn is_exposed(&self, method: &str) -> bool {
        self.exposed_set.contains(method)
    }

    fn typeid_for(&self, method: &str) -> Option<&str> {
        self.method_to_typeid
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, t)| t.as_str())
    }
}

/// Tuning knobs of a [`Registry`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// How long a stashed object whose proxy was just sent to a client is
    /// kept alive even if nothing references it, so that the client's
    /// `incref` (sent right after it unpickles the proxy) can revive it.
    /// Default 10 s.
    pub revive_grace: Duration,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            revive_grace: Duration::from_secs(10),
        }
    }
}

/// The result of a successful [`Registry::call`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Reply {
    /// `('#RETURN', value)`.
    Return(Value),
    /// `('#PROXY', (exposed, Token(typeid, <server address>, ident)))`: a
    /// new object was registered with refcount 1.
    Proxy {
        /// The new object's typeid.
        typeid: String,
        /// Its ident.
        ident: String,
        /// Its exposed list (wire order).
        exposed: Vec<String>,
    },
    /// `('#UNSERIALIZABLE', traceback)`: the result could not be pickled
    /// (a `#GETVALUE` of an object holding locks); the exception is the
    /// pickling error, e.g. `TypeError: cannot pickle '_thread.lock'
    /// object`.
    Unserializable(PyErr),
}

/// What [`Registry::collect`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CollectStats {
    /// Objects freed.
    pub freed: usize,
    /// Objects whose values were scanned.
    pub scanned: usize,
    /// True if a concurrent call on a proxy-holding object overlapped the
    /// collection, so nothing was freed.
    pub deferred: bool,
}

struct Entry {
    object: Arc<dyn Referent>,
    spec: Arc<TypeSpec>,
    /// Client references. Changed only under the shard's write lock.
    refcount: AtomicI64,
    /// Referenced from inside another object at some point (§5.3).
    stashed: AtomicBool,
    /// A named shared object: never removed.
    pinned: bool,
    /// The object may hold proxies (shared with iterators over it).
    holds_proxies: Arc<AtomicBool>,
    /// Lease deadline (nanoseconds since the registry's epoch; 0 = none).
    lease_until: AtomicU64,
}

const SHARDS: usize = 16;

/// The object registry of one manager server.
///
/// ```
/// use mpmanager_objects::{Registry, CallContext, Kwargs, Reply};
/// use mpmanager_pickle::Value;
/// let reg = Registry::with_builtin_types();
/// let (ident, exposed) = reg.create("list", &[Value::list(vec![Value::Int(1)])], &Kwargs::new()).unwrap();
/// assert!(exposed.iter().any(|m| m == "append"));
/// let cx = CallContext::new(1);
/// reg.call(&cx, &ident, "append", &[Value::Int(2)], &Kwargs::new()).unwrap();
/// let Reply::Return(r) = reg.call(&cx, &ident, "__len__", &[], &Kwargs::new()).unwrap() else { panic!() };
/// assert_eq!(r.as_i64(), Some(2));
/// assert_eq!(reg.number_of_objects(), 1);
/// reg.decref(&ident).unwrap();
/// assert_eq!(reg.number_of_objects(), 0);
/// ```
pub struct Registry {
    config: RegistryConfig,
    types: RwLock<HashMap<String, Arc<TypeSpec>>>,
    /// Ident of each named shared object, by typeid.
    shared_idents: RwLock<HashMap<String, u64>>,
    shards: Vec<RwLock<HashMap<u64, Arc<Entry>>>>,
    next_ident: AtomicU64,
    ident_base: u64,
    clock: Instant,
    stashed_count: AtomicUsize,
    pending: AtomicUsize,
    gc_lock: Mutex<()>,
    proxy_calls_started: AtomicU64,
    proxy_calls_done: AtomicU64,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("objects", &self.len())
            .finish()
    }
}

fn key_error_tb(key: &str, location: &str) -> CallError {
    CallError::Traceback(traceback::for_error(
        &PyErr::key_error(Value::str(key)),
        location,
    ))
}

impl Registry {
    /// An empty registry (no typeids).
    pub fn new() -> Registry {
        Registry::with_config(RegistryConfig::default())
    }

    /// An empty registry with the given configuration.
    pub fn with_config(config: RegistryConfig) -> Registry {
        // Idents look like CPython's (`'7f1c829a8a00'`): a random-ish
        // 48-bit base in the 0x7f.. range, then steps of 16. They are never
        // reused.
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            h.finish()
        };
        let base = 0x7f00_0000_0000u64 | ((seed & 0x00ff_ffff) << 16);
        Registry {
            config,
            types: RwLock::new(HashMap::new()),
            shared_idents: RwLock::new(HashMap::new()),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            next_ident: AtomicU64::new(base),
            ident_base: base,
            clock: Instant::now(),
            stashed_count: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            gc_lock: Mutex::new(()),
            proxy_calls_started: AtomicU64::new(0),
            proxy_calls_done: AtomicU64::new(0),
        }
    }

    /// A registry with SyncManager's types registered: `list`, `dict`,
    /// `Namespace`, `Value`, `Array`, `set`, `Iterator`, `Queue`,
    /// `JoinableQueue`, `Event`, `Lock`, `RLock`, `Semaphore`,
    /// `BoundedSemaphore`, `Condition` and `Barrier`, plus `Pool`, which is
    /// refused with the reason (see [`crate::types::register_builtin_types`]).
    pub fn with_builtin_types() -> Registry {
        let r = Registry::new();
        crate::types::register_builtin_types(&r);
        r
    }

    /// Registers (or replaces) a typeid.
    pub fn register(&self, spec: TypeSpec) {
        let spec = Arc::new(spec);
        if let Some(obj) = &spec.shared {
            let n = self.alloc_ident();
            let entry = Arc::new(Entry {
                object: obj.clone(),
                spec: spec.clone(),
                refcount: AtomicI64::new(0),
                stashed: AtomicBool::new(false),
                pinned: true,
                holds_proxies: Arc::new(AtomicBool::new(false)),
                lease_until: AtomicU64::new(0),
            });
            self.shard(n).write().insert(n, entry);
            self.shared_idents.write().insert(spec.typeid.clone(), n);
        }
        self.types.write().insert(spec.typeid.clone(), spec);
    }

    /// The spec of `typeid`.
    pub fn type_spec(&self, typeid: &str) -> Option<Arc<TypeSpec>> {
        self.types.read().get(typeid).cloned()
    }

    fn alloc_ident(&self) -> u64 {
        self.next_ident.fetch_add(16, Ordering::Relaxed)
    }

    fn shard(&self, n: u64) -> &RwLock<HashMap<u64, Arc<Entry>>> {
        &self.shards[((n >> 4) as usize) % SHARDS]
    }

    /// The number an ident string stands for, if it is one of ours in
    /// canonical form.
    fn parse_ident(ident: &str) -> Option<u64> {
        if ident.is_empty() || ident.len() > 16 || ident.starts_with('0') {
            return None;
        }
        if !ident
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        u64::from_str_radix(ident, 16).ok()
    }

    fn format_ident(n: u64) -> String {
        format!("{n:x}")
    }

    fn get_entry(&self, ident: &str) -> Option<Arc<Entry>> {
        let n = Self::parse_ident(ident)?;
        self.shard(n).read().get(&n).cloned()
    }

    fn now_nanos(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64 + 1
    }

    /// `create(typeid, *args, **kwds)` (§3.4): builds the object, gives it
    /// a new ident with refcount 1 and returns `(ident, exposed)`. A named
    /// shared typeid returns its one object's ident and adds 1 to its
    /// refcount. Every failure is a `#TRACEBACK` (`KeyError: 'typeid'` for
    /// an unknown typeid, the constructor's exception otherwise), as create
    /// is a one-shot operation.
    pub fn create(
        &self,
        typeid: &str,
        args: &[Value],
        kwargs: &Kwargs,
    ) -> Result<(String, Vec<String>), CallError> {
        let spec = self
            .type_spec(typeid)
            .ok_or_else(|| CallError::Traceback(traceback::unknown_typeid(typeid)))?;
        if spec.shared.is_some() {
            let n = *self.shared_idents.read().get(typeid).expect("shared ident");
            let entry = self.shard(n).read().get(&n).cloned().expect("pinned entry");
            entry.refcount.fetch_add(1, Ordering::SeqCst);
            return Ok((Self::format_ident(n), spec.exposed.clone()));
        }
        let Some(ctor) = &spec.constructor else {
            let e = PyErr::type_error(format!(
                "typeid '{typeid}' has no constructor: its objects are only returned by methods"
            ));
            return Err(CallError::traceback(&e, "create"));
        };
        let has_proxies = self.stash_proxies_in(args, kwargs, "create")?;
        if has_proxies {
            self.proxy_calls_started.fetch_add(1, Ordering::SeqCst);
        }
        let result = match ctor {
            Ctor::Plain(f) => f(args, kwargs),
            Ctor::WithRegistry(f) => f(self, args, kwargs),
        }
        .map_err(|e| CallError::traceback(&e, "create"));
        let out = result.map(|object| {
            let ident = self.insert(object, spec.clone(), Arc::new(AtomicBool::new(has_proxies)));
            (ident, spec.exposed.clone())
        });
        if has_proxies {
            self.proxy_calls_done.fetch_add(1, Ordering::SeqCst);
        }
        out
    }

    /// Registers `object` under a new ident with refcount 1.
    fn insert(
        &self,
        object: Arc<dyn Referent>,
        spec: Arc<TypeSpec>,
        holds_proxies: Arc<AtomicBool>,
    ) -> String {
        let n = self.alloc_ident();
        let entry = Arc::new(Entry {
            object,
            spec,
            refcount: AtomicI64::new(1),
            stashed: AtomicBool::new(false),
            pinned: false,
            holds_proxies,
            lease_until: AtomicU64::new(0),
        });
        self.shard(n).write().insert(n, entry);
        Self::format_ident(n)
    }

    /// Registers an object made outside `create` (refcount 1) and returns
    /// its ident. `typeid` must be registered.
    pub fn adopt(&self, typeid: &str, object: Arc<dyn Referent>) -> Result<String, CallError> {
        let spec = self
            .type_spec(typeid)
            .ok_or_else(|| key_error_tb(typeid, "create"))?;
        Ok(self.insert(object, spec, Arc::new(AtomicBool::new(false))))
    }

    /// Marks every object whose proxy appears in `args`/`kwargs` as
    /// stashed. Returns whether any proxy to one of ours was found; an
    /// unknown ident fails the whole request (`#TRACEBACK` KeyError, as
    /// CPython's unpickling does).
    fn stash_proxies_in(
        &self,
        args: &[Value],
        kwargs: &Kwargs,
        location: &str,
    ) -> Result<bool, CallError> {
        let mut found: Vec<mpmanager_protocol::ProxyRef> = Vec::new();
        for a in args.iter().chain(kwargs.iter().map(|(_, v)| v)) {
            for_each_proxy(a, &mut |t| found.push(t));
        }
        let mut any = false;
        for t in found {
            let Some(n) = Self::parse_ident(&t.token.id) else {
                continue;
            };
            let entry = self.shard(n).read().get(&n).cloned();
            match entry {
                // A proxy with one of our idents but another typeid belongs
                // to another manager: an opaque value.
                Some(e) if e.spec.typeid == t.token.typeid => {
                    any = true;
                    if !e.stashed.swap(true, Ordering::SeqCst) {
                        self.stashed_count.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Some(_) => {}
                None => {
                    // Looks like ours (our ident range) but is gone.
                    let ours = n >= self.ident_base && n < self.next_ident.load(Ordering::SeqCst);
                    if ours {
                        return Err(key_error_tb(&t.token.id, location));
                    }
                }
            }
        }
        Ok(any)
    }

    /// Sets a revive lease on every stashed object whose proxy is in `v`.
    fn lease_proxies_in(&self, v: &Value) {
        let until = self.now_nanos() + self.config.revive_grace.as_nanos() as u64;
        for_each_proxy(v, &mut |t| {
            if let Some(e) = self.get_entry(&t.token.id) {
                if e.spec.typeid == t.token.typeid {
                    e.lease_until.fetch_max(until, Ordering::SeqCst);
                }
            }
        });
    }

    /// `incref(ident)` (§5.2): +1, or revive a stashed object whose count
    /// had dropped to 0. Unknown → `#TRACEBACK` `KeyError: 'ident'`.
    pub fn incref(&self, ident: &str) -> Result<(), CallError> {
        let n = Self::parse_ident(ident).ok_or_else(|| key_error_tb(ident, "incref"))?;
        let shard = self.shard(n).write();
        let e = shard.get(&n).ok_or_else(|| key_error_tb(ident, "incref"))?;
        e.refcount.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// `decref(ident)` (§5.2): −1; at 0 the object is freed unless it is
    /// stashed (then a collection may be due) or a named shared object.
    /// Decref of a stashed object whose count is already 0 is a no-op, as
    /// in CPython; of an unknown ident, `#TRACEBACK` `KeyError`.
    pub fn decref(&self, ident: &str) -> Result<(), CallError> {
        let n = Self::parse_ident(ident).ok_or_else(|| key_error_tb(ident, "decref"))?;
        let removed;
        {
            let mut shard = self.shard(n).write();
            let e = shard.get(&n).ok_or_else(|| key_error_tb(ident, "decref"))?;
            let rc = e.refcount.load(Ordering::SeqCst);
            if rc <= 0 {
                if e.stashed.load(Ordering::SeqCst) {
                    return Ok(());
                }
                return Err(key_error_tb(ident, "decref"));
            }
            e.refcount.store(rc - 1, Ordering::SeqCst);
            if rc - 1 > 0 || e.pinned {
                return Ok(());
            }
            if e.stashed.load(Ordering::SeqCst) {
                removed = None;
            } else {
                removed = shard.remove(&n);
            }
        }
        if removed.is_some() {
            drop(removed);
            return Ok(());
        }
        // A stashed object lost its last client reference.
        let pending = self.pending.fetch_add(1, Ordering::SeqCst) + 1;
        let stashed = self.stashed_count.load(Ordering::SeqCst);
        if pending * 2 >= stashed.max(1) {
            if let Some(_g) = self.gc_lock.try_lock() {
                self.collect_locked(3);
            }
        }
        Ok(())
    }

    /// `number_of_objects()`: objects with a positive refcount.
    pub fn number_of_objects(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .values()
                    .filter(|e| e.refcount.load(Ordering::SeqCst) > 0)
                    .count()
            })
            .sum()
    }

    /// All objects held, including stashed ones without client references.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// True if no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The refcount of `ident`, if it is held.
    pub fn refcount(&self, ident: &str) -> Option<i64> {
        self.get_entry(ident)
            .map(|e| e.refcount.load(Ordering::SeqCst))
    }

    /// True if `ident` is held and stashed (referenced from a container).
    pub fn is_stashed(&self, ident: &str) -> bool {
        self.get_entry(ident)
            .is_some_and(|e| e.stashed.load(Ordering::SeqCst))
    }

    /// The object `ident`, if held.
    pub fn get(&self, ident: &str) -> Option<Arc<dyn Referent>> {
        self.get_entry(ident).map(|e| e.object.clone())
    }

    /// The typeid of `ident`, if held.
    pub fn typeid_of(&self, ident: &str) -> Option<String> {
        self.get_entry(ident).map(|e| e.spec.typeid.clone())
    }

    /// `debug_info()` (§3.3): for each ident with a positive refcount, in
    /// sorted order, `'  %s:       refcount=%s\n    %s' % (ident, rc,
    /// str(obj)[:75])`, joined with `'\n'`.
    pub fn debug_info(&self) -> String {
        let mut items: Vec<(String, i64, Arc<dyn Referent>)> = Vec::new();
        for s in &self.shards {
            for (n, e) in s.read().iter() {
                let rc = e.refcount.load(Ordering::SeqCst);
                if rc > 0 {
                    items.push((Self::format_ident(*n), rc, e.object.clone()));
                }
            }
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items
            .iter()
            .map(|(ident, rc, obj)| {
                let s = obj
                    .str()
                    .unwrap_or_else(|e| format!("<{}: {e}>", obj.class_name()));
                let s: String = s.chars().take(75).collect();
                format!("  {ident}:       refcount={rc}\n    {s}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `get_methods(token)` (§3.3): the exposed names of `ident`, without
    /// duplicates.
    pub fn get_methods(&self, ident: &str) -> Result<Vec<String>, CallError> {
        let e = self
            .get_entry(ident)
            .ok_or_else(|| key_error_tb(ident, "get_methods"))?;
        let mut seen = HashSet::new();
        Ok(e.spec
            .exposed
            .iter()
            .filter(|m| seen.insert(m.as_str()))
            .cloned()
            .collect())
    }

    /// A method call on a served connection (§3.5 steps 3–8): finds the
    /// object (client-referenced or stashed), checks `exposed`, runs the
    /// method, registers a returned object (`#PROXY`), and answers the
    /// fallbacks `#GETVALUE`, `__str__` and `__repr__`.
    ///
    /// Errors: a Python exception from the method is `CallError::Python`
    /// (`#ERROR`); an unknown ident, a non-exposed name or a missing method
    /// is `CallError::Traceback` with CPython's last lines.
    pub fn call(
        &self,
        cx: &CallContext,
        ident: &str,
        method: &str,
        args: &[Value],
        kwargs: &Kwargs,
    ) -> Result<Reply, CallError> {
        let entry = self
            .get_entry(ident)
            .ok_or_else(|| CallError::Traceback(traceback::unknown_ident(ident)))?;
        let got_proxies = self.stash_proxies_in(args, kwargs, "serve_client")?;
        if got_proxies {
            entry.holds_proxies.store(true, Ordering::SeqCst);
        }
        let tracked = entry.holds_proxies.load(Ordering::SeqCst);
        if tracked {
            self.proxy_calls_started.fetch_add(1, Ordering::SeqCst);
        }
        let result = self.dispatch(cx, &entry, method, args, kwargs);
        if cx.take_hold() {
            cx.record_held(&entry.object, || format!("{} {ident}", entry.spec.typeid));
        }
        if tracked {
            if let Ok(Reply::Return(v)) = &result {
                if self.stashed_count.load(Ordering::SeqCst) > 0 {
                    self.lease_proxies_in(v);
                }
            }
            self.proxy_calls_done.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    fn dispatch(
        &self,
        cx: &CallContext,
        entry: &Arc<Entry>,
        method: &str,
        args: &[Value],
        kwargs: &Kwargs,
    ) -> Result<Reply, CallError> {
        let obj = &entry.object;
        let fallback_err;
        if entry.spec.is_exposed(method) {
            match obj.call(cx, method, args, kwargs) {
                Ok(Outcome::Return(v)) => {
                    if let Some(typeid) = entry.spec.typeid_for(method) {
                        let (ident, exposed) = self.create(typeid, &[v], &Kwargs::new())?;
                        return Ok(Reply::Proxy {
                            typeid: typeid.to_string(),
                            ident,
                            exposed,
                        });
                    }
                    return Ok(Reply::Return(v));
                }
                Ok(Outcome::NewObject { typeid, object }) => {
                    let spec = self
                        .type_spec(&typeid)
                        .ok_or_else(|| key_error_tb(&typeid, "create"))?;
                    let exposed = spec.exposed.clone();
                    let ident = self.insert(object, spec, entry.holds_proxies.clone());
                    return Ok(Reply::Proxy {
                        typeid,
                        ident,
                        exposed,
                    });
                }
                Err(CallError::Python(e)) if is_missing_method(&e, obj.class_name(), method) => {
                    fallback_err = e;
                }
                Err(e) => return Err(e),
            }
        } else {
            if !matches!(method, "#GETVALUE" | "__str__" | "__repr__") {
                let mut names: Vec<&String> = entry.spec.exposed_set.iter().collect();
                names.sort();
                return Err(CallError::Traceback(traceback::not_exposed(
                    method,
                    obj.class_name(),
                    &names,
                )));
            }
            fallback_err = PyErr::new(ExcType::AttributeError, String::new());
        }
        match method {
            // CPython returns the referent itself and pickles it: its only
            // failure is a pickling error, sent as #UNSERIALIZABLE.
            "#GETVALUE" => Ok(match obj.get_value() {
                Ok(v) => Reply::Return(v),
                Err(e) => Reply::Unserializable(e),
            }),
            "__str__" => Ok(Reply::Return(Value::str(&obj.str()?))),
            "__repr__" => Ok(Reply::Return(Value::str(&obj.repr()?))),
            _ => Err(CallError::Traceback(format_chain(&[
                TbEntry::new("serve_client", &fallback_err),
                TbEntry::new("serve_client", &PyErr::key_error(Value::str(method))),
            ]))),
        }
    }

    /// True if calling `method` on `ident` may wait for another client
    /// ([`Referent::may_block`]); false for an unknown ident (the call
    /// fails at once).
    pub fn may_block(&self, ident: &str, method: &str) -> bool {
        self.get_entry(ident)
            .is_some_and(|e| e.object.may_block(method))
    }

    /// The reply of a successful call of `method` on `ident`, which returned
    /// `value`, could not be delivered: lets the object undo what it took
    /// ([`Referent::reply_lost`]) and returns its description of that.
    pub fn reply_lost(
        &self,
        cx: &CallContext,
        ident: &str,
        method: &str,
        value: &Value,
    ) -> Option<String> {
        let entry = self.get_entry(ident)?;
        let undone = entry.object.reply_lost(cx, method, value)?;
        Some(format!("{undone} ({} {ident})", entry.spec.typeid))
    }

    /// The connection of `cx` has closed: every object its calls said they
    /// [hold](CallContext::hold) something in releases it
    /// ([`Referent::connection_closed`]). Returns one description per
    /// release, for the server's log.
    pub fn connection_closed(&self, cx: &CallContext, release_unowned: bool) -> Vec<String> {
        let closed = crate::Closed::new(cx.connection, release_unowned);
        cx.take_held()
            .iter()
            .flat_map(|(o, name)| {
                o.connection_closed(&closed)
                    .into_iter()
                    .map(move |what| format!("{what} ({name})"))
            })
            .collect()
    }

    /// Runs a collection now (see the module docs) and reports what it did.
    /// Waits for a collection already running on another thread.
    pub fn collect(&self) -> CollectStats {
        let _g = self.gc_lock.lock();
        self.collect_locked(3)
    }

    fn collect_locked(&self, attempts: usize) -> CollectStats {
        let mut stats = CollectStats::default();
        for _ in 0..attempts {
            stats = self.collect_once();
            if !stats.deferred {
                break;
            }
            std::thread::yield_now();
        }
        stats
    }

    fn collect_once(&self) -> CollectStats {
        let mut stats = CollectStats::default();
        let started0 = self.proxy_calls_started.load(Ordering::SeqCst);
        let done0 = self.proxy_calls_done.load(Ordering::SeqCst);
        if started0 != done0 {
            stats.deferred = true;
            return stats;
        }
        let now = self.now_nanos();
        // Roots.
        let mut marked: HashSet<u64> = HashSet::new();
        let mut work: Vec<Arc<Entry>> = Vec::new();
        for s in &self.shards {
            for (n, e) in s.read().iter() {
                let root = e.refcount.load(Ordering::SeqCst) > 0
                    || e.pinned
                    || !e.stashed.load(Ordering::SeqCst)
                    || e.lease_until.load(Ordering::SeqCst) > now;
                if root {
                    marked.insert(*n);
                    if e.holds_proxies.load(Ordering::SeqCst) {
                        work.push(e.clone());
                    }
                }
            }
        }
        // Mark.
        while let Some(e) = work.pop() {
            stats.scanned += 1;
            let mut found: Vec<mpmanager_protocol::ProxyRef> = Vec::new();
            e.object
                .visit_values(&mut |v| for_each_proxy(v, &mut |t| found.push(t)));
            for t in found {
                let Some(n) = Self::parse_ident(&t.token.id) else {
                    continue;
                };
                if marked.contains(&n) {
                    continue;
                }
                let target = self.shard(n).read().get(&n).cloned();
                if let Some(te) = target {
                    if te.spec.typeid == t.token.typeid {
                        marked.insert(n);
                        if te.holds_proxies.load(Ordering::SeqCst) {
                            work.push(te);
                        }
                    }
                }
            }
        }
        if self.proxy_calls_started.load(Ordering::SeqCst) != started0 {
            stats.deferred = true;
            return stats;
        }
        // Sweep.
        let mut dropped: Vec<Arc<Entry>> = Vec::new();
        let mut spared = 0usize;
        for s in &self.shards {
            let mut s = s.write();
            let doomed: Vec<u64> = s
                .iter()
                .filter(|(n, e)| {
                    !marked.contains(n)
                        && !e.pinned
                        && e.stashed.load(Ordering::SeqCst)
                        && e.refcount.load(Ordering::SeqCst) == 0
                })
                .map(|(n, _)| *n)
                .collect();
            for n in doomed {
                let e = s.get(&n).expect("present");
                if e.lease_until.load(Ordering::SeqCst) > self.now_nanos() {
                    spared += 1;
                    continue;
                }
                dropped.push(s.remove(&n).expect("present"));
            }
        }
        stats.freed = dropped.len();
        self.stashed_count
            .fetch_sub(dropped.len(), Ordering::SeqCst);
        self.pending.store(spared, Ordering::SeqCst);
        drop(dropped);
        stats
    }
}

/// True if `e` is the `AttributeError` a referent returns for a method it
/// does not have (see [`crate::args::no_attribute`]).
fn is_missing_method(e: &PyErr, class: &str, method: &str) -> bool {
    e.ty == ExcType::AttributeError
        && e.message() == crate::args::no_attribute(class, method).message()
}
