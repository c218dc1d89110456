//! [`Proxy`]: a reference to one object on a manager server, and
//! [`Response`], what a call returns.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpmanager_pickle::{decode, encode, from_value, to_value, Value};
use mpmanager_protocol::{registry, ProxyRef, PublicOp, Reply, Request, Token};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::{encode_err, ClientError, Result};

/// The prefix of [`Proxy::to_proxy_string`].
pub const PROXY_STRING_PREFIX: &str = "mpproxy:";

struct State {
    client: Arc<Client>,
    token: Token,
    exposed: Option<Vec<String>>,
}

impl Drop for State {
    /// Gives the server reference back (`decref`), unless the manager is
    /// gone. Errors are ignored, as CPython's finalizer does.
    fn drop(&mut self) {
        if !self.client.is_closed() {
            let _ = self
                .client
                .oneshot(PublicOp::Decref, vec![Value::str(&self.token.id)], vec![]);
        }
    }
}

/// A reference to an object held by a manager server (CPython's
/// `BaseProxy`).
///
/// **Lifetime.** A `Proxy` owns one reference on the server (CPython's
/// refcount in `id_to_refcount`): taken when the proxy is made
/// ([`Manager::create`](crate::Manager::create), a `#PROXY` reply, a proxy
/// read out of a container or rebuilt from a string) and given back
/// (`decref`) when the last clone is dropped. `Clone` is cheap and never
/// touches the network: clones share the one reference (a `Proxy` is an
/// `Arc`). [`Proxy::new_reference`] takes a second, independent
/// reference, as constructing a second CPython proxy does.
///
/// **Connections.** Method calls go over a small pool of served
/// connections shared by every proxy of the same manager address and every
/// thread: a call takes an idle connection (or opens one: connect,
/// authenticate, `accept_connection`), sends its request, reads the reply
/// and puts the connection back (at most 8 idle ones are kept; one the
/// server has closed meanwhile is noticed and dropped before use). A call
/// that fails mid-way is not retried automatically: it may have run on
/// the server. So a call
/// blocked on the server (a queue `get`, a lock `acquire`) never holds up
/// the calls of other threads. `incref`/`decref` and the other public
/// operations use one-shot connections, as in CPython. Because a call may
/// run on any connection, the objects whose owner is "the calling thread"
/// on the server (`RLock`, `Condition`) are used through
/// [`LockProxy`](crate::LockProxy), whose guard keeps its connection.
///
/// ```
/// use mpmanager_client::Manager;
/// use mpmanager_pickle::Value;
///
/// let m = Manager::start_in_background(b"key").unwrap();
/// let l = m.create("list", vec![], vec![]).unwrap();
/// l.call("append", vec![Value::Int(7)], vec![]).unwrap();
/// let n: usize = l.call("__len__", vec![], vec![]).unwrap().get().unwrap();
/// assert_eq!(n, 1);
/// assert_eq!(l.to_string(), "[7]");
/// let err = l.call("index", vec![Value::Int(8)], vec![]).unwrap_err();
/// assert!(err.is_exception("ValueError"));
/// ```
#[derive(Clone)]
pub struct Proxy {
    state: Arc<State>,
}

impl Proxy {
    /// A proxy that adopts a reference the server already counts for us
    /// (the one `create` or a `#PROXY` reply made).
    pub(crate) fn adopt(client: Arc<Client>, token: Token, exposed: Option<Vec<String>>) -> Proxy {
        Proxy {
            state: Arc::new(State {
                client,
                token,
                exposed,
            }),
        }
    }

    /// A proxy that takes a new reference (`incref`) first.
    pub(crate) fn with_incref(
        client: Arc<Client>,
        token: Token,
        exposed: Option<Vec<String>>,
    ) -> Result<Proxy> {
        client.oneshot(PublicOp::Incref, vec![Value::str(&token.id)], vec![])?;
        Ok(Proxy::adopt(client, token, exposed))
    }

    /// Rebuilds a pickled proxy found in a reply (it takes a new reference).
    pub(crate) fn rebuild(client: &Arc<Client>, v: &Value) -> Result<Proxy> {
        let p = ProxyRef::from_value(v).map_err(|e| ClientError::NotAProxy(e.to_string()))?;
        let c = client.for_address(&p.token.address)?;
        Proxy::with_incref(c, p.token, p.exposed)
    }

    /// The object's token: typeid, server address, ident.
    pub fn token(&self) -> &Token {
        &self.state.token
    }

    /// The registered type (`list`, `Queue`, …).
    pub fn typeid(&self) -> &str {
        &self.state.token.typeid
    }

    /// The method names the server exposes for this object, when known
    /// (from `create` or a `#PROXY` reply).
    pub fn exposed(&self) -> Option<&[String]> {
        self.state.exposed.as_deref()
    }

    pub(crate) fn client(&self) -> &Arc<Client> {
        &self.state.client
    }

    pub(crate) fn request(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Request {
        Request::call(self.state.token.id.clone(), method, args, kwargs)
    }

    /// Calls `method(*args, **kwargs)` on the referent (CPython's
    /// `_callmethod`) and waits for the reply as long as it takes.
    ///
    /// Errors: the referent's exception ([`ClientError::Exception`],
    /// [`Empty`](ClientError::Empty), [`Full`](ClientError::Full)), a
    /// server-side failure ([`ClientError::RemoteError`]), or a transport
    /// failure.
    pub fn call(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<Response> {
        self.call_inner(method, args, kwargs, None)
    }

    /// [`call`](Self::call), giving up at `deadline` with
    /// [`ClientError::DeadlineExceeded`]. The call's connection is then
    /// closed, never reused: an mpmanager server cancels a call still
    /// waiting there (a queue `get` takes no item, an `acquire` takes
    /// nothing), while a call that had completed did take effect. CPython's
    /// server cancels nothing.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use mpmanager_client::Manager;
    /// use mpmanager_pickle::Value;
    /// let m = Manager::start_in_background(b"key").unwrap();
    /// let q = m.create("Queue", vec![], vec![]).unwrap();
    /// let deadline = Instant::now() + Duration::from_millis(100);
    /// let err = q.call_with_deadline("get", vec![], vec![], deadline).unwrap_err();
    /// assert!(matches!(err, mpmanager_client::ClientError::DeadlineExceeded { .. }));
    /// assert!(err.reconnect_may_help());
    /// ```
    pub fn call_with_deadline(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        deadline: Instant,
    ) -> Result<Response> {
        self.call_inner(method, args, kwargs, Some(deadline))
    }

    pub(crate) fn call_inner(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        deadline: Option<Instant>,
    ) -> Result<Response> {
        let req = self.request(method, args, kwargs);
        let reply = self.state.client.call(&req, deadline)?;
        Ok(self.response(reply))
    }

    /// A successful reply as a [`Response`]. A `#PROXY` token gets the
    /// address of this proxy (as CPython's `_callmethod` does) and the new
    /// proxy adopts the reference the server made for it.
    pub(crate) fn response(&self, reply: Reply) -> Response {
        match reply {
            Reply::Proxy { exposed, mut token } => {
                token.address = self.state.token.address.clone();
                Response::proxy(Proxy::adopt(
                    self.state.client.clone(),
                    token,
                    Some(exposed),
                ))
            }
            Reply::Return(v) => Response::value(v, self.state.client.clone()),
            // reply_result() let only these two through
            other => Response::value(other.to_value(), self.state.client.clone()),
        }
    }

    /// A copy of the referent (`#GETVALUE`, CPython's `_getvalue()`),
    /// converted to `T` (use [`Value`] for the raw Python value).
    ///
    /// ```
    /// use mpmanager_client::Manager;
    /// let m = Manager::start_in_background(b"key").unwrap();
    /// let l = m.list(&[1, 2, 3]).unwrap();
    /// assert_eq!(l.proxy().get_value::<Vec<i64>>().unwrap(), vec![1, 2, 3]);
    /// ```
    pub fn get_value<T: DeserializeOwned>(&self) -> Result<T> {
        self.call("#GETVALUE", vec![], vec![])?.get()
    }

    /// The referent's `repr()` as the server computes it (what `str(proxy)`
    /// prints in Python).
    pub fn repr(&self) -> Result<String> {
        self.call("__repr__", vec![], vec![])?.get()
    }

    /// Takes a second, independent reference on the server (`incref`):
    /// the object lives until both this proxy and the new one are dropped.
    pub fn new_reference(&self) -> Result<Proxy> {
        Proxy::with_incref(
            self.state.client.clone(),
            self.state.token.clone(),
            self.state.exposed.clone(),
        )
    }

    /// The pickled form CPython's `BaseProxy.__reduce__` produces:
    /// `RebuildProxy(ProxyClass, token, 'pickle', {})`, or `AutoProxy` with
    /// `{'exposed': …}` for types without a proxy class. Storing it in
    /// another object of the same manager (e.g. appending it to a list)
    /// makes a nested proxy, exactly as a Python client would.
    pub fn to_value(&self) -> Value {
        self.proxy_ref().to_value()
    }

    fn proxy_ref(&self) -> ProxyRef {
        let token = self.state.token.clone();
        match registry::lookup(&token.typeid) {
            Some(spec) if !spec.is_auto() => spec.proxy_ref(token),
            Some(spec) => ProxyRef::auto(
                token,
                self.state
                    .exposed
                    .clone()
                    .unwrap_or_else(|| spec.exposed().iter().map(|s| s.to_string()).collect()),
            ),
            None => ProxyRef::auto(token, self.state.exposed.clone().unwrap_or_default()),
        }
    }

    /// A string that names this object (server address and token; never
    /// the authkey): the hex form of the proxy's pickle, prefixed with
    /// `mpproxy:`. Hand it to another process (an argument, an environment
    /// variable) and rebuild it there with [`Manager::proxy_from_string`](crate::Manager::proxy_from_string)
    /// or [`Proxy::from_proxy_string`]; **the other process must know the
    /// authkey** to connect. A Python process can rebuild it with
    /// `pickle.loads(bytes.fromhex(s[8:]))` after setting
    /// `multiprocessing.current_process().authkey`.
    ///
    /// The string does not keep the object alive: keep this proxy until
    /// the other process has rebuilt its own.
    ///
    /// ```
    /// use mpmanager_client::{Manager, Proxy};
    /// let m = Manager::start_in_background(b"key").unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("x", &5).unwrap();
    /// let s = ns.proxy().to_proxy_string().unwrap();
    /// assert!(!s.contains("key"));
    /// let again = Proxy::from_proxy_string(&s, b"key").unwrap();
    /// assert_eq!(again.repr().unwrap(), "Namespace(x=5)");
    /// ```
    pub fn to_proxy_string(&self) -> Result<String> {
        let bytes = encode(&self.to_value()).map_err(encode_err)?;
        let mut s = String::with_capacity(PROXY_STRING_PREFIX.len() + 2 * bytes.len());
        s.push_str(PROXY_STRING_PREFIX);
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Ok(s)
    }

    /// Rebuilds a proxy from [`to_proxy_string`](Self::to_proxy_string),
    /// connecting to the address in it with `authkey`, and takes a new
    /// reference (`incref`).
    pub fn from_proxy_string(s: &str, authkey: &[u8]) -> Result<Proxy> {
        let v = parse_proxy_string(s)?;
        let p = ProxyRef::from_value(&v).map_err(|e| ClientError::NotAProxy(e.to_string()))?;
        let client = Arc::new(Client::new(
            crate::client::address_of(&p.token.address)?,
            authkey,
        ));
        Proxy::with_incref(client, p.token, p.exposed)
    }

    /// Rebuilds a pickled proxy (e.g. one found inside a returned value
    /// with [`mpmanager_protocol::find_proxies`]'s help) using this proxy's
    /// connection settings, taking a new reference.
    pub fn rebuild_value(&self, v: &Value) -> Result<Proxy> {
        Proxy::rebuild(&self.state.client, v)
    }

    /// Starts a [`Pipeline`](crate::Pipeline) of calls to this proxy's
    /// manager (other proxies of the same manager may be added too).
    pub fn pipeline(&self) -> crate::Pipeline {
        crate::Pipeline::new(self.state.client.clone())
    }

    /// True if both proxies refer to the same object of the same server.
    pub fn same_object(&self, other: &Proxy) -> bool {
        self.state.token.id == other.state.token.id
            && self
                .state
                .token
                .address
                .same_endpoint(&other.state.token.address)
    }
}

pub(crate) fn parse_proxy_string(s: &str) -> Result<Value> {
    let hex = s.trim().strip_prefix(PROXY_STRING_PREFIX).ok_or_else(|| {
        ClientError::NotAProxy(format!(
            "a proxy string starts with {PROXY_STRING_PREFIX:?}"
        ))
    })?;
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ClientError::NotAProxy("bad hex in the proxy string".into()));
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
        .collect();
    decode(&bytes).map_err(|e| ClientError::NotAProxy(e.to_string()))
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({})", self.state.token)
    }
}

impl fmt::Display for Proxy {
    /// The referent's `repr()` (as `str(proxy)` in Python); if that call
    /// fails, CPython's fallback `<Proxy object, typeid '…'; '__str__()' failed>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.repr() {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(
                f,
                "<Proxy object, typeid {:?} at {}; '__str__()' failed>",
                self.state.token.typeid, self.state.token.id
            ),
        }
    }
}

impl Serialize for Proxy {
    /// As the pickled proxy ([`Proxy::to_value`]), so proxies can be
    /// stored in other objects of the manager.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

thread_local! {
    static CONTEXT: RefCell<Vec<Arc<Client>>> = const { RefCell::new(Vec::new()) };
}

/// `from_value` with `client` available to [`Proxy`]'s `Deserialize`, so
/// that pickled proxies inside a reply become live proxies.
pub(crate) fn from_value_in<T: DeserializeOwned>(client: &Arc<Client>, v: &Value) -> Result<T> {
    CONTEXT.with(|c| c.borrow_mut().push(client.clone()));
    let r = from_value(v);
    CONTEXT.with(|c| c.borrow_mut().pop());
    Ok(r?)
}

impl<'de> Deserialize<'de> for Proxy {
    /// Only inside a reply ([`Response::get`] and the typed proxies'
    /// getters): a pickled proxy becomes a live proxy that takes its own
    /// reference. Elsewhere it fails (there is no server to ask).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Proxy, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        let client = CONTEXT
            .with(|c| c.borrow().last().cloned())
            .ok_or_else(|| D::Error::custom("a Proxy can only be read from a manager's reply"))?;
        Proxy::rebuild(&client, &v).map_err(D::Error::custom)
    }
}

/// What a call returned: a value (`#RETURN`) or a new object (`#PROXY`).
#[derive(Debug)]
pub struct Response {
    inner: Returned,
    client: Arc<Client>,
}

#[derive(Debug)]
enum Returned {
    Value(Value),
    Proxy(Proxy),
}

impl Response {
    pub(crate) fn value(value: Value, client: Arc<Client>) -> Response {
        Response {
            inner: Returned::Value(value),
            client,
        }
    }

    pub(crate) fn proxy(p: Proxy) -> Response {
        Response {
            client: p.client().clone(),
            inner: Returned::Proxy(p),
        }
    }

    /// True for a `#PROXY` reply.
    pub fn is_proxy(&self) -> bool {
        matches!(self.inner, Returned::Proxy(_))
    }

    /// Converts the returned value to `T` through serde. Pickled proxies
    /// inside it can be read as [`Proxy`] (each takes its own reference).
    /// A `#PROXY` result can be read only as a `Proxy` (or a [`Value`],
    /// its pickled form).
    pub fn get<T: DeserializeOwned>(self) -> Result<T> {
        match self.inner {
            Returned::Value(v) => from_value_in(&self.client, &v),
            // The pickled form, rebuilt: a second reference, then the
            // first is dropped.
            Returned::Proxy(p) => from_value_in(&self.client, &p.to_value()),
        }
    }

    /// The raw returned value (`#PROXY`: the pickled proxy).
    pub fn into_value(self) -> Value {
        match self.inner {
            Returned::Value(v) => v,
            Returned::Proxy(p) => p.to_value(),
        }
    }

    /// The result as a proxy: a `#PROXY` reply, or a returned pickled
    /// proxy (e.g. `outer[0]` where `outer` holds a proxy), which then
    /// takes its own reference.
    pub fn into_proxy(self) -> Result<Proxy> {
        match self.inner {
            Returned::Proxy(p) => Ok(p),
            Returned::Value(v) => Proxy::rebuild(&self.client, &v),
        }
    }

    /// Every pickled proxy inside the returned value, as live proxies
    /// (found with [`mpmanager_protocol::find_proxies`]); each takes its
    /// own reference.
    pub fn proxies(&self) -> Result<Vec<Proxy>> {
        match &self.inner {
            Returned::Proxy(p) => Ok(vec![p.clone()]),
            Returned::Value(v) => mpmanager_protocol::find_proxies(v)
                .into_iter()
                .map(|p| {
                    let c = self.client.for_address(&p.token.address)?;
                    Proxy::with_incref(c, p.token, p.exposed)
                })
                .collect(),
        }
    }
}

/// Converts a Rust value to a Python value (serde bridge).
pub(crate) fn val<T: Serialize + ?Sized>(v: &T) -> Result<Value> {
    Ok(to_value(v)?)
}

pub(crate) fn secs(d: Duration) -> Value {
    Value::Float(d.as_secs_f64())
}
