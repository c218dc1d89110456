//! Typed proxies for SyncManager's types. Values go in and out through
//! serde (the pickle crate's bridge); [`Value`] works for raw Python values.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use mpmanager_connection::Connection;
use mpmanager_pickle::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::proxy::{from_value_in, secs, val, Proxy};

/// `len(x)` and `len(x) == 0`, for the proxies of sized containers; `$v`
/// is the variable name the docs use.
macro_rules! len_methods {
    ($v:literal) => {
        #[doc = concat!("`len(", $v, ")`.")]
        pub fn len(&self) -> Result<usize> {
            call_get(&self.proxy, "__len__", vec![])
        }

        #[doc = concat!("`len(", $v, ") == 0`.")]
        pub fn is_empty(&self) -> Result<bool> {
            Ok(self.len()? == 0)
        }
    };
}

/// `x[index]` and `x[index] = value` with an integer index, for the list
/// and array proxies.
macro_rules! index_methods {
    ($v:literal) => {
        #[doc = concat!("`", $v, "[index]` (negative counts from the end; out of range: an `IndexError` exception).")]
        pub fn get(&self, index: isize) -> Result<T> {
            call_get(&self.proxy, "__getitem__", vec![Value::Int(index as i64)])
        }

        #[doc = concat!("`", $v, "[index] = value`.")]
        pub fn set(&self, index: isize, value: &T) -> Result<()> {
            self.proxy
                .call(
                    "__setitem__",
                    vec![Value::Int(index as i64), val(value)?],
                    vec![],
                )
                .map(drop)
        }
    };
}

macro_rules! typed_common {
    ($name:ident $(<$($g:ident),*>)?, $what:literal) => {
        impl$(<$($g),*>)? $name$(<$($g),*>)? {
            #[doc = concat!("Wraps a proxy to ", $what, " (the type is not checked).")]
            pub fn from_proxy(proxy: Proxy) -> Self {
                $name { proxy $(, _t: PhantomData::<fn() -> ($($g,)*)>)? }
            }

            /// The untyped proxy (for [`Proxy::call`] and the token).
            pub fn proxy(&self) -> &Proxy {
                &self.proxy
            }

            /// The untyped proxy.
            pub fn into_proxy(self) -> Proxy {
                self.proxy
            }
        }

        impl$(<$($g),*>)? Clone for $name$(<$($g),*>)? {
            /// Shares the server reference (see [`Proxy`]).
            fn clone(&self) -> Self {
                Self::from_proxy(self.proxy.clone())
            }
        }

        impl$(<$($g),*>)? fmt::Debug for $name$(<$($g),*>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.proxy.token())
            }
        }

        impl$(<$($g),*>)? fmt::Display for $name$(<$($g),*>)? {
            /// The referent's `repr()`, as `str(proxy)` in Python.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.proxy, f)
            }
        }

        impl$(<$($g),*>)? Serialize for $name$(<$($g),*>)? {
            /// As the pickled proxy (to nest it in another object).
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.proxy.serialize(s)
            }
        }

        impl<'de $(, $($g),*)?> Deserialize<'de> for $name$(<$($g),*>)? {
            /// From a pickled proxy inside a reply (see [`Proxy`]'s `Deserialize`).
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Proxy::deserialize(d).map(Self::from_proxy)
            }
        }
    };
}

fn call_get<T: DeserializeOwned>(p: &Proxy, method: &str, args: Vec<Value>) -> Result<T> {
    p.call(method, args, vec![])?.get()
}

/// Sends `method(args)` for `proxy` on `conn` and returns the result.
fn call_on(proxy: &Proxy, conn: &mut Connection, method: &str, args: Vec<Value>) -> Result<Value> {
    let req = proxy.request(method, args, vec![]);
    let bytes = crate::client::encode_request(&req)?;
    let reply = Client::exchange(conn, &bytes, method, None)?;
    Ok(match crate::client::reply_result(reply)? {
        mpmanager_protocol::Reply::Return(v) => v,
        other => other.to_value(),
    })
}

/// A proxy to a `Namespace` (CPython's `NamespaceProxy`): attributes
/// read, set and deleted on the server.
///
/// Names starting with `_` are refused ([`ClientError::PrivateName`]):
/// CPython's proxy keeps them on the local proxy object, so they never
/// reach the server and other processes never see them.
///
/// ```
/// use mpmanager_client::Manager;
/// let m = Manager::start_in_background(b"key").unwrap();
/// let ns = m.namespace().unwrap();
/// ns.set("x", &10).unwrap();
/// ns.set("y", &"hello").unwrap();
/// assert_eq!(ns.get::<i64>("x").unwrap(), 10);
/// assert_eq!(ns.to_string(), "Namespace(x=10, y='hello')");
/// assert!(ns.get::<i64>("nope").unwrap_err().is_exception("AttributeError"));
/// assert!(ns.set("_z", &1).is_err());
/// ns.del("x").unwrap();
/// assert!(!ns.contains("x").unwrap());
/// ```
pub struct Namespace {
    proxy: Proxy,
}
typed_common!(Namespace, "a `Namespace`");

fn public_name(name: &str) -> Result<()> {
    if name.starts_with('_') {
        Err(ClientError::PrivateName(name.to_string()))
    } else {
        Ok(())
    }
}

impl Namespace {
    /// `ns.name`, converted to `T` (missing: an `AttributeError` exception).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        public_name(name)?;
        call_get(&self.proxy, "__getattribute__", vec![Value::str(name)])
    }

    /// `ns.name = value`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        public_name(name)?;
        self.proxy
            .call("__setattr__", vec![Value::str(name), val(value)?], vec![])
            .map(drop)
    }

    /// `del ns.name` (missing: an `AttributeError` exception).
    pub fn del(&self, name: &str) -> Result<()> {
        public_name(name)?;
        self.proxy
            .call("__delattr__", vec![Value::str(name)], vec![])
            .map(drop)
    }

    /// `hasattr(ns, name)`.
    pub fn contains(&self, name: &str) -> Result<bool> {
        match self.get::<Value>(name) {
            Ok(_) => Ok(true),
            Err(e) if e.is_exception("AttributeError") => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A proxy to a `list` (CPython's `ListProxy`) whose items are `T`.
///
/// Indices are Python's: negative ones count from the end.
///
/// ```
/// use mpmanager_client::Manager;
/// let m = Manager::start_in_background(b"key").unwrap();
/// let l = m.list(&["a".to_string()]).unwrap();
/// l.push(&"b".to_string()).unwrap();
/// assert_eq!(l.len().unwrap(), 2);
/// assert_eq!(l.get(-1).unwrap(), "b");
/// assert!(l.get(5).unwrap_err().is_exception("IndexError"));
/// assert_eq!(l.to_vec().unwrap(), ["a", "b"]);
/// ```
pub struct ListProxy<T> {
    proxy: Proxy,
    _t: PhantomData<fn() -> (T,)>,
}
typed_common!(ListProxy<T>, "a `list`");

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    len_methods!("l");
    index_methods!("l");

    /// `l.append(value)`.
    pub fn push(&self, value: &T) -> Result<()> {
        self.proxy
            .call("append", vec![val(value)?], vec![])
            .map(drop)
    }

    /// `l.extend(values)`.
    pub fn extend(&self, values: &[T]) -> Result<()> {
        self.proxy
            .call("extend", vec![val(values)?], vec![])
            .map(drop)
    }

    /// `l.insert(index, value)`.
    pub fn insert(&self, index: isize, value: &T) -> Result<()> {
        self.proxy
            .call(
                "insert",
                vec![Value::Int(index as i64), val(value)?],
                vec![],
            )
            .map(drop)
    }

    /// `l.pop(index)` (`-1` for the last item).
    pub fn pop(&self, index: isize) -> Result<T> {
        call_get(&self.proxy, "pop", vec![Value::Int(index as i64)])
    }

    /// `del l[index]`.
    pub fn remove_at(&self, index: isize) -> Result<()> {
        self.proxy
            .call("__delitem__", vec![Value::Int(index as i64)], vec![])
            .map(drop)
    }

    /// `l.index(value)` (absent: a `ValueError` exception).
    pub fn index(&self, value: &T) -> Result<usize> {
        call_get(&self.proxy, "index", vec![val(value)?])
    }

    /// `value in l`.
    pub fn contains(&self, value: &T) -> Result<bool> {
        call_get(&self.proxy, "__contains__", vec![val(value)?])
    }

    /// `l.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", vec![], vec![]).map(drop)
    }

    /// A copy of the whole list (`#GETVALUE`). Proxies stored in it come
    /// back as live proxies when `T` is a proxy type.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        call_get(&self.proxy, "#GETVALUE", vec![])
    }
}

/// A proxy to a `dict` (CPython's `DictProxy`) mapping `K` to `V`.
///
/// ```
/// use mpmanager_client::{DictProxy, Manager};
/// let m = Manager::start_in_background(b"key").unwrap();
/// let d: DictProxy<String, Vec<i64>> = m.dict().unwrap();
/// d.insert(&"a".into(), &vec![1, 2]).unwrap();
/// assert_eq!(d.get(&"a".into()).unwrap(), Some(vec![1, 2]));
/// assert_eq!(d.get(&"b".into()).unwrap(), None);
/// assert!(d.get_item(&"b".into()).unwrap_err().is_exception("KeyError"));
/// assert_eq!(d.items().unwrap(), vec![("a".to_string(), vec![1, 2])]);
/// ```
pub struct DictProxy<K, V> {
    proxy: Proxy,
    _t: PhantomData<fn() -> (K, V)>,
}
typed_common!(DictProxy<K, V>, "a `dict`");

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    len_methods!("d");

    /// `d[key]`, or `None` if the key is absent (a `KeyError` on the
    /// server).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.get_item(key) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_exception("KeyError") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `d[key]` (absent: a `KeyError` exception).
    pub fn get_item(&self, key: &K) -> Result<V> {
        call_get(&self.proxy, "__getitem__", vec![val(key)?])
    }

    /// `d[key] = value`.
    pub fn insert(&self, key: &K, value: &V) -> Result<()> {
        self.proxy
            .call("__setitem__", vec![val(key)?, val(value)?], vec![])
            .map(drop)
    }

    /// `d.pop(key)` (absent: a `KeyError` exception).
    pub fn remove(&self, key: &K) -> Result<V> {
        call_get(&self.proxy, "pop", vec![val(key)?])
    }

    /// `key in d`.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        call_get(&self.proxy, "__contains__", vec![val(key)?])
    }

    /// `list(d.keys())`.
    pub fn keys(&self) -> Result<Vec<K>> {
        call_get(&self.proxy, "keys", vec![])
    }

    /// `list(d.values())`.
    pub fn values(&self) -> Result<Vec<V>> {
        call_get(&self.proxy, "values", vec![])
    }

    /// `list(d.items())`, in the dict's order.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        call_get(&self.proxy, "items", vec![])
    }

    /// `d.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", vec![], vec![]).map(drop)
    }

    /// `iter(d)`: a live iterator over the keys, held by the server (the
    /// `Iterator` object a `#PROXY` reply gives). Changing the dict's size
    /// meanwhile makes the next step fail with a `RuntimeError` exception.
    ///
    /// ```
    /// use mpmanager_client::{DictProxy, Manager};
    /// let m = Manager::start_in_background(b"key").unwrap();
    /// let d: DictProxy<String, i64> = m.dict().unwrap();
    /// d.insert(&"a".into(), &1).unwrap();
    /// d.insert(&"b".into(), &2).unwrap();
    /// let keys: Vec<String> = d.iter().unwrap().collect::<Result<_, _>>().unwrap();
    /// assert_eq!(keys, ["a", "b"]);
    /// ```
    pub fn iter(&self) -> Result<KeyIter<K>> {
        let it = self.proxy.call("__iter__", vec![], vec![])?.into_proxy()?;
        Ok(KeyIter {
            proxy: Some(it),
            _t: PhantomData,
        })
    }
}

/// The keys of a [`DictProxy`], fetched one `__next__` call at a time
/// from an `Iterator` object on the server (dropped with the iterator).
pub struct KeyIter<K> {
    proxy: Option<Proxy>,
    _t: PhantomData<fn() -> K>,
}

impl<K> fmt::Debug for KeyIter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyIter")
            .field("proxy", &self.proxy)
            .finish()
    }
}

impl<K: DeserializeOwned> Iterator for KeyIter<K> {
    type Item = Result<K>;

    /// The next key; `None` after `StopIteration` or an error.
    fn next(&mut self) -> Option<Result<K>> {
        let p = self.proxy.as_ref()?;
        match p.call("__next__", vec![], vec![]).and_then(|r| r.get()) {
            Ok(k) => Some(Ok(k)),
            Err(e) => {
                self.proxy = None;
                if e.is_exception("StopIteration") {
                    None
                } else {
                    Some(Err(e))
                }
            }
        }
    }
}

/// A proxy to a `Value` (CPython's `ValueProxy`).
///
/// ```
/// use mpmanager_client::Manager;
/// let m = Manager::start_in_background(b"key").unwrap();
/// let v = m.value("d", &1.5).unwrap();
/// v.set(&2.5).unwrap();
/// assert_eq!(v.get().unwrap(), 2.5);
/// assert_eq!(v.to_string(), "Value('d', 2.5)");
/// ```
pub struct ValueProxy<T> {
    proxy: Proxy,
    _t: PhantomData<fn() -> (T,)>,
}
typed_common!(ValueProxy<T>, "a `Value`");

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// `v.value`.
    pub fn get(&self) -> Result<T> {
        call_get(&self.proxy, "get", vec![])
    }

    /// `v.value = value`.
    pub fn set(&self, value: &T) -> Result<()> {
        self.proxy.call("set", vec![val(value)?], vec![]).map(drop)
    }
}

/// A proxy to a `Queue` / `JoinableQueue` (an `AutoProxy[Queue]` in
/// CPython). `queue.Empty` and `queue.Full` come back as
/// [`ClientError::Empty`] and [`ClientError::Full`].
///
/// A blocking `get`/`put` waits on the server; its connection is busy
/// meanwhile, other calls use other connections.
///
/// ```
/// use std::time::Duration;
/// use mpmanager_client::{ClientError, Manager};
/// let m = Manager::start_in_background(b"key").unwrap();
/// let q = m.queue::<String>(1).unwrap();
/// q.put(&"job".into()).unwrap();
/// assert!(matches!(q.put_nowait(&"two".into()), Err(ClientError::Full)));
/// assert_eq!(q.qsize().unwrap(), 1);
/// assert_eq!(q.get().unwrap(), "job");
/// assert!(matches!(q.get_timeout(Duration::from_millis(20)), Err(ClientError::Empty)));
/// ```
pub struct QueueProxy<T> {
    proxy: Proxy,
    _t: PhantomData<fn() -> (T,)>,
}
typed_common!(QueueProxy<T>, "a `Queue`");

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// `q.put(item)`, waiting while the queue is full.
    pub fn put(&self, item: &T) -> Result<()> {
        self.proxy.call("put", vec![val(item)?], vec![]).map(drop)
    }

    /// `q.put(item, True, timeout)`: [`ClientError::Full`] if still full
    /// after `timeout`.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.proxy
            .call(
                "put",
                vec![val(item)?, Value::Bool(true), secs(timeout)],
                vec![],
            )
            .map(drop)
    }

    /// `q.put_nowait(item)`: [`ClientError::Full`] at once if full.
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.proxy
            .call("put_nowait", vec![val(item)?], vec![])
            .map(drop)
    }

    /// `q.get()`, waiting for an item.
    pub fn get(&self) -> Result<T> {
        call_get(&self.proxy, "get", vec![])
    }

    /// `q.get(True, timeout)`: [`ClientError::Empty`] if nothing came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        call_get(&self.proxy, "get", vec![Value::Bool(true), secs(timeout)])
    }

    /// `q.get_nowait()`: [`ClientError::Empty`] at once if empty.
    pub fn get_nowait(&self) -> Result<T> {
        call_get(&self.proxy, "get_nowait", vec![])
    }

    /// `q.qsize()`.
    pub fn qsize(&self) -> Result<usize> {
        call_get(&self.proxy, "qsize", vec![])
    }

    /// `q.empty()`.
    pub fn is_empty(&self) -> Result<bool> {
        call_get(&self.proxy, "empty", vec![])
    }

    /// `q.full()`.
    pub fn is_full(&self) -> Result<bool> {
        call_get(&self.proxy, "full", vec![])
    }

    /// `q.task_done()` (a `ValueError` exception if called more times
    /// than there were items).
    pub fn task_done(&self) -> Result<()> {
        self.proxy.call("task_done", vec![], vec![]).map(drop)
    }

    /// `q.join()`: waits until every item put has been marked done with
    /// [`task_done`](Self::task_done).
    pub fn join(&self) -> Result<()> {
        self.proxy.call("join", vec![], vec![]).map(drop)
    }
}

/// A proxy to a `Lock` or `RLock` (CPython's `AcquirerProxy`), with an
/// RAII guard.
///
/// The guard keeps the served connection it acquired on, and releases on
/// that same connection: the server sees acquire and release from the
/// same "thread", as `RLock` requires.
///
/// ```
/// use std::time::Duration;
/// use mpmanager_client::Manager;
/// let m = Manager::start_in_background(b"key").unwrap();
/// let lock = m.lock().unwrap();
/// {
///     let _guard = lock.acquire().unwrap();
///     assert!(lock.try_acquire_for(Duration::from_millis(10)).unwrap().is_none());
/// }                                          // released here
/// assert!(lock.try_acquire_for(Duration::ZERO).unwrap().is_some());
/// ```
pub struct LockProxy {
    proxy: Proxy,
}
typed_common!(LockProxy, "a `Lock` or `RLock`");

/// A served connection on which a lock-like object was acquired: the
/// holder's calls and the release go over it, so the server sees one owner
/// (as with a Python thread). Dropping it releases (errors ignored).
struct Held<'a> {
    proxy: &'a Proxy,
    conn: Option<Connection>,
}

impl<'a> Held<'a> {
    /// `acquire(*args)` on a connection of the pool: the held connection
    /// if it returned true, else `None` (the connection goes back).
    fn acquire(proxy: &'a Proxy, args: Vec<Value>) -> Result<Option<Held<'a>>> {
        let client: &Client = proxy.client();
        let mut conn = client.served()?;
        let got: bool =
            from_value_in(proxy.client(), &call_on(proxy, &mut conn, "acquire", args)?)?;
        if got {
            Ok(Some(Held {
                proxy,
                conn: Some(conn),
            }))
        } else {
            client.put_back(conn);
            Ok(None)
        }
    }

    fn call(&mut self, method: &str, args: Vec<Value>) -> Result<Value> {
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| ClientError::Protocol("the guard was released".into()))?;
        call_on(self.proxy, conn, method, args)
    }

    /// `release()` on the held connection, which then goes back to the
    /// pool; nothing if already released.
    fn release(&mut self) -> Result<()> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        call_on(self.proxy, &mut conn, "release", vec![])?;
        self.proxy.client().put_back(conn);
        Ok(())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// Holds a [`LockProxy`]'s lock; dropping it releases the lock (errors
/// are ignored: use [`LockGuard::release`] to see them).
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    held: Held<'a>,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockGuard({})", self.held.proxy.token())
    }
}

impl LockProxy {
    fn acquire_on(&self, args: Vec<Value>) -> Result<Option<LockGuard<'_>>> {
        Ok(Held::acquire(&self.proxy, args)?.map(|held| LockGuard { held }))
    }

    /// `lock.acquire()`, waiting as long as it takes.
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        self.acquire_on(vec![Value::Bool(true)])?
            .ok_or_else(|| ClientError::Protocol("acquire() without timeout returned False".into()))
    }

    /// `lock.acquire(True, timeout)`: `None` if not acquired in time
    /// (`Duration::ZERO` tries once, as `acquire(False)`).
    pub fn try_acquire_for(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>> {
        if timeout.is_zero() {
            self.acquire_on(vec![Value::Bool(false)])
        } else {
            self.acquire_on(vec![Value::Bool(true), secs(timeout)])
        }
    }
}

impl LockGuard<'_> {
    /// Releases the lock now, reporting errors (e.g. a `RuntimeError` if
    /// someone else released it meanwhile).
    pub fn release(mut self) -> Result<()> {
        self.held.release()
    }
}

/// A proxy to an `Event` (CPython's `EventProxy`).
///
/// ```
/// use std::time::Duration;
/// use mpmanager_client::Manager;
/// let m = Manager::start_in_background(b"key").unwrap();
/// let e = m.event().unwrap();
/// assert!(!e.wait(Some(Duration::from_millis(10))).unwrap());
/// e.set().unwrap();
/// assert!(e.is_set().unwrap());
/// assert!(e.wait(None).unwrap());
/// e.clear().unwrap();
/// assert!(!e.is_set().unwrap());
/// ```
pub struct EventProxy {
    proxy: Proxy,
}
typed_common!(EventProxy, "an `Event`");

impl EventProxy {
    /// `e.is_set()`.
    pub fn is_set(&self) -> Result<bool> {
        call_get(&self.proxy, "is_set", vec![])
    }

    /// `e.set()`.
    pub fn set(&self) -> Result<()> {
        self.proxy.call("set", vec![], vec![]).map(drop)
    }

    /// `e.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", vec![], vec![]).map(drop)
    }

    /// `e.wait(timeout)`: true if the event is set (`None`: wait forever).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let t = timeout.map_or(Value::None, secs);
        call_get(&self.proxy, "wait", vec![t])
    }
}

/// A proxy to a `Semaphore` or `BoundedSemaphore` (CPython's
/// `AcquirerProxy`). Unlike a lock, a semaphore has no owner: any
/// connection may release it, so no guard ties a release to a connection.
///
/// ```
/// use std::time::Duration;
/// use mpmanager_client::Manager;
/// let m = Manager::start_in_background(b"key").unwrap();
/// let s = m.bounded_semaphore(2).unwrap();
/// s.acquire().unwrap();
/// assert!(s.try_acquire_for(Duration::ZERO).unwrap());
/// assert!(!s.try_acquire_for(Duration::from_millis(10)).unwrap());
/// s.release().unwrap();
/// s.release().unwrap();
/// let err = s.release().unwrap_err();          // BoundedSemaphore: ValueError
/// assert!(matches!(err, mpmanager_client::ClientError::Exception(ref e) if e.is("ValueError")));
/// ```
pub struct SemaphoreProxy {
    proxy: Proxy,
}
typed_common!(SemaphoreProxy, "a `Semaphore` or `BoundedSemaphore`");

impl SemaphoreProxy {
    /// `s.acquire()`, waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        let got: bool = call_get(&self.proxy, "acquire", vec![Value::Bool(true)])?;
        if got {
            Ok(())
        } else {
            Err(ClientError::Protocol(
                "acquire() without timeout returned False".into(),
            ))
        }
    }

    /// `s.acquire(True, timeout)` (`Duration::ZERO`: `acquire(False)`):
    /// true if acquired.
    pub fn try_acquire_for(&self, timeout: Duration) -> Result<bool> {
        let args = if timeout.is_zero() {
            vec![Value::Bool(false)]
        } else {
            vec![Value::Bool(true), secs(timeout)]
        };
        call_get(&self.proxy, "acquire", args)
    }

    /// `s.release()`.
    pub fn release(&self) -> Result<()> {
        self.proxy.call("release", vec![], vec![]).map(drop)
    }
}

/// A proxy to a `Condition` (CPython's `ConditionProxy`).
///
/// [`acquire`](ConditionProxy::acquire) returns a [`ConditionGuard`] that
/// keeps the served connection it acquired on: `wait`, `notify` and the
/// release go over that same connection, so the server sees one owner of
/// the condition's lock, as with a Python thread.
///
/// ```
/// use std::time::Duration;
/// use mpmanager_client::Manager;
/// let m = Manager::start_in_background(b"key").unwrap();
/// let cond = m.condition().unwrap();
/// let ready = m.value("i", &0).unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let g = cond.acquire().unwrap();
///         ready.set(&1).unwrap();
///         g.notify_all().unwrap();
///     });
///     let g = cond.acquire().unwrap();
///     let ok = g.wait_for(|| ready.get().map(|v| v == 1).unwrap_or(false),
///                         Some(Duration::from_secs(10))).unwrap();
///     assert!(ok);
/// });
/// ```
pub struct ConditionProxy {
    proxy: Proxy,
}
typed_common!(ConditionProxy, "a `Condition`");

/// Holds a [`ConditionProxy`]'s lock; dropping it releases the lock.
///
/// Not `Sync`: the guard's calls go one at a time over its connection.
#[must_use = "the condition's lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    held: std::cell::RefCell<Held<'a>>,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConditionGuard({})", self.held.borrow().proxy.token())
    }
}

impl ConditionProxy {
    /// `cond.acquire()`, waiting as long as it takes.
    pub fn acquire(&self) -> Result<ConditionGuard<'_>> {
        let held = Held::acquire(&self.proxy, vec![Value::Bool(true)])?.ok_or_else(|| {
            ClientError::Protocol("acquire() without timeout did not return True".into())
        })?;
        Ok(ConditionGuard {
            held: std::cell::RefCell::new(held),
        })
    }
}

impl ConditionGuard<'_> {
    fn call(&self, method: &str, args: Vec<Value>) -> Result<Value> {
        self.held.borrow_mut().call(method, args)
    }

    /// `cond.wait(timeout)`: releases the lock until notified (or the
    /// timeout passes; `None` waits forever), then re-acquires it. True
    /// unless it timed out.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let t = timeout.map_or(Value::None, secs);
        Ok(matches!(self.call("wait", vec![t])?, Value::Bool(true)))
    }

    /// `cond.wait_for(predicate, timeout)`: waits until `predicate()` is
    /// true (checked with the lock held), as CPython's `ConditionProxy`
    /// does on the client side. Returns the last value of the predicate.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut result = predicate();
        while !result {
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    Some(left)
                }
                None => None,
            };
            self.wait(wait)?;
            result = predicate();
        }
        Ok(result)
    }

    /// `cond.notify(n)`: wakes up to `n` waiters.
    pub fn notify(&self, n: usize) -> Result<()> {
        self.call("notify", vec![Value::Int(n as i64)]).map(drop)
    }

    /// `cond.notify_all()`.
    pub fn notify_all(&self) -> Result<()> {
        self.call("notify_all", vec![]).map(drop)
    }

    /// Releases the lock now, reporting errors.
    pub fn release(mut self) -> Result<()> {
        self.held.get_mut().release()
    }
}

/// A proxy to a `Barrier` (CPython's `BarrierProxy`).
/// `threading.BrokenBarrierError` comes back as a
/// [`ClientError::Exception`] whose type is `BrokenBarrierError`.
///
/// ```
/// use std::time::Duration;
/// use mpmanager_client::Manager;
/// let m = Manager::start_in_background(b"key").unwrap();
/// let b = m.barrier(2).unwrap();
/// assert_eq!(b.parties().unwrap(), 2);
/// let indices: Vec<usize> = std::thread::scope(|s| {
///     let h = s.spawn(|| b.wait(None).unwrap());
///     let mine = b.wait(None).unwrap();
///     vec![mine, h.join().unwrap()]
/// });
/// assert_eq!(indices.iter().sum::<usize>(), 1);   // arrival indices 0 and 1
/// let err = b.wait(Some(Duration::from_millis(20))).unwrap_err(); // alone: times out
/// assert!(matches!(err, mpmanager_client::ClientError::Exception(ref e) if e.is("BrokenBarrierError")));
/// assert!(b.broken().unwrap());
/// b.reset().unwrap();
/// assert!(!b.broken().unwrap());
/// ```
pub struct BarrierProxy {
    proxy: Proxy,
}
typed_common!(BarrierProxy, "a `Barrier`");

impl BarrierProxy {
    /// `b.wait(timeout)`: the arrival index (0 … parties-1).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<usize> {
        let t = timeout.map_or(Value::None, secs);
        call_get(&self.proxy, "wait", vec![t])
    }

    /// `b.abort()`: breaks the barrier.
    pub fn abort(&self) -> Result<()> {
        self.proxy.call("abort", vec![], vec![]).map(drop)
    }

    /// `b.reset()`: back to the initial state.
    pub fn reset(&self) -> Result<()> {
        self.proxy.call("reset", vec![], vec![]).map(drop)
    }

    fn attr<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        call_get(&self.proxy, "__getattribute__", vec![Value::str(name)])
    }

    /// `b.parties`.
    pub fn parties(&self) -> Result<usize> {
        self.attr("parties")
    }

    /// `b.n_waiting`.
    pub fn n_waiting(&self) -> Result<usize> {
        self.attr("n_waiting")
    }

    /// `b.broken`.
    pub fn broken(&self) -> Result<bool> {
        self.attr("broken")
    }
}

/// A proxy to an `Array` (CPython's `ArrayProxy`).
///
/// ```
/// use mpmanager_client::Manager;
/// let m = Manager::start_in_background(b"key").unwrap();
/// let a = m.array::<f64>("d", &[0.5, 1.5]).unwrap();
/// a.set(1, &2.5).unwrap();
/// assert_eq!(a.len().unwrap(), 2);
/// assert_eq!(a.to_vec().unwrap(), [0.5, 2.5]);
/// assert_eq!(a.to_string(), "array('d', [0.5, 2.5])");
/// ```
pub struct ArrayProxy<T> {
    proxy: Proxy,
    _t: PhantomData<fn() -> (T,)>,
}
typed_common!(ArrayProxy<T>, "an `Array`");

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    len_methods!("a");
    index_methods!("a");

    /// Every item, as a `Vec`: `a[i]` for each index, pipelined on one
    /// connection (`a[:]` would return an `array.array`, packed bytes).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let n = self.len()?;
        let mut p = self.proxy.pipeline();
        for i in 0..n {
            p.call(
                &self.proxy,
                "__getitem__",
                vec![Value::Int(i as i64)],
                vec![],
            );
        }
        p.run()?.into_iter().map(|r| r?.get()).collect()
    }
}
