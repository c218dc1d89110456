//! [`ProxyRef`]: a pickled proxy, `RebuildProxy(func, token, serializer,
//! kwds)` (§3.9), and [`find_proxies`], which finds every one inside a value.

use std::collections::HashSet;

use mpmanager_pickle::{Construct, Global, Object, Value};

use crate::pyrepr::describe;
use crate::reply::names;
use crate::request::{kwargs_from_value, kwargs_value};
use crate::token::MANAGERS_MODULE;
use crate::{text, MessageError, Token};

/// A proxy as it is pickled: `REDUCE(multiprocessing.managers.RebuildProxy,
/// (func, token, serializer, kwds))`.
///
/// Parsing keeps what is needed to re-emit it the way CPython's
/// `BaseProxy.__reduce__` does: `func`, the token, the serializer and, for
/// auto proxies, `exposed`. The `authkey` (sent only while spawning a child
/// process), `incref` and `manager_owned` keywords are dropped, as are
/// unknown keywords (their names are kept in [`ProxyRef::dropped_kwds`]).
///
/// ```
/// use mpmanager_protocol::{ProxyRef, PyAddress, Token};
/// let token = Token::new("list", PyAddress::tcp("127.0.0.1", 50011), "7f1c82a25580");
/// let p = ProxyRef::class_proxy("ListProxy", token.clone());
/// let v = p.to_value();
/// let back = ProxyRef::from_value(&v).unwrap();
/// assert_eq!(back, p);
/// assert_eq!(back.class_name(), "ListProxy");
/// assert!(!back.is_auto());
///
/// let q = ProxyRef::auto(Token::new("Queue", token.address.clone(), "7f00"), vec!["get".into(), "put".into()]);
/// assert!(ProxyRef::from_value(&q.to_value()).unwrap().is_auto());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyRef {
    /// The proxy class (e.g. `multiprocessing.managers.ListProxy`) or the
    /// `multiprocessing.managers.AutoProxy` function. Any global is
    /// accepted: user-registered proxy classes live in other modules.
    pub func: Global,
    /// The referent's token.
    pub token: Token,
    /// The serializer, `'pickle'` (or `'xmlrpclib'`).
    pub serializer: String,
    /// The `exposed` keyword: the method names of an auto proxy. Always
    /// `None` for class proxies (which ignore it).
    pub exposed: Option<Vec<String>>,
    /// Names of the keywords that were received but are not re-emitted
    /// (`authkey`, `incref`, `manager_owned`, unknown ones, and `exposed`
    /// on a class proxy).
    pub dropped_kwds: Vec<String>,
}

/// The name of the `RebuildProxy` function.
pub const REBUILD_PROXY: &str = "RebuildProxy";
/// The name of the `AutoProxy` function.
pub const AUTO_PROXY: &str = "AutoProxy";

impl ProxyRef {
    /// A proxy of the registered class `multiprocessing.managers.<class>`
    /// (`ListProxy`, `DictProxy`, …); re-emitted with `{}` kwds.
    pub fn class_proxy(class: &str, token: Token) -> ProxyRef {
        ProxyRef {
            func: Global::new(MANAGERS_MODULE, class),
            token,
            serializer: "pickle".into(),
            exposed: None,
            dropped_kwds: Vec::new(),
        }
    }

    /// An auto proxy (`multiprocessing.managers.AutoProxy`) with the given
    /// exposed names; re-emitted with `{'exposed': (…)}`.
    pub fn auto(token: Token, exposed: Vec<String>) -> ProxyRef {
        ProxyRef {
            func: Global::new(MANAGERS_MODULE, AUTO_PROXY),
            token,
            serializer: "pickle".into(),
            exposed: Some(exposed),
            dropped_kwds: Vec::new(),
        }
    }

    /// True if `func` is `multiprocessing.managers.AutoProxy`.
    pub fn is_auto(&self) -> bool {
        self.func.is(MANAGERS_MODULE, AUTO_PROXY)
    }

    /// The class (or function) name, e.g. `ListProxy`, `AutoProxy`.
    pub fn class_name(&self) -> &str {
        &self.func.name
    }

    /// True if `v` is built by `multiprocessing.managers.RebuildProxy`
    /// (whether or not its arguments are well-formed).
    pub fn is_proxy_value(v: &Value) -> bool {
        match v {
            Value::Object(o) => {
                let o = o.read_recursive();
                o.construct == Construct::Reduce
                    && o.global()
                        .is_some_and(|g| g.is(MANAGERS_MODULE, REBUILD_PROXY))
            }
            _ => false,
        }
    }

    /// Reads a pickled proxy.
    pub fn from_value(v: &Value) -> Result<ProxyRef, MessageError> {
        let bad = |reason: String| MessageError::BadProxy { reason };
        let Value::Object(o) = v else {
            return Err(bad(format!(
                "expected a RebuildProxy object, got {}",
                describe(v)
            )));
        };
        let o = o.read_recursive();
        if o.construct != Construct::Reduce
            || !o
                .global()
                .is_some_and(|g| g.is(MANAGERS_MODULE, REBUILD_PROXY))
        {
            return Err(bad(format!(
                "built by {}, not multiprocessing.managers.RebuildProxy",
                describe(&o.callable)
            )));
        }
        let [func, token, serializer, kwds] = o.args_slice() else {
            return Err(bad(format!(
                "RebuildProxy takes (func, token, serializer, kwds), got {}",
                describe(&o.args)
            )));
        };
        let Value::Global(func) = func else {
            return Err(bad(format!(
                "func must be a proxy class or AutoProxy, got {}",
                describe(func)
            )));
        };
        let token = Token::from_value(token)?;
        let serializer = match serializer {
            Value::Str(_) => text(serializer, "proxy serializer")?,
            other => return Err(MessageError::wrong_type("proxy serializer", "a str", other)),
        };
        let mut p = ProxyRef {
            func: (**func).clone(),
            token,
            serializer,
            exposed: None,
            dropped_kwds: Vec::new(),
        };
        for (k, val) in kwargs_from_value(kwds, "proxy kwds")? {
            if k == "exposed" && p.is_auto() {
                p.exposed = match val {
                    Value::None => None,
                    other => Some(names(&other, "proxy exposed")?),
                };
            } else {
                p.dropped_kwds.push(k);
            }
        }
        Ok(p)
    }

    /// The value to re-emit, as CPython's `BaseProxy.__reduce__` pickles a
    /// proxy: `REDUCE(RebuildProxy, (func, token, serializer, kwds))`, with
    /// kwds `{}` for class proxies and `{'exposed': (…)}` for an auto
    /// proxy whose names are known.
    pub fn to_value(&self) -> Value {
        let mut kwds = Vec::new();
        if let Some(e) = &self.exposed {
            kwds.push((
                "exposed".to_string(),
                Value::tuple(e.iter().map(|s| Value::str(s)).collect()),
            ));
        }
        Value::object(Object::reduce(
            Value::global(MANAGERS_MODULE, REBUILD_PROXY),
            vec![
                Value::Global(std::sync::Arc::new(self.func.clone())),
                self.token.to_value(),
                Value::str(&self.serializer),
                kwargs_value(&kwds),
            ],
        ))
    }
}

/// Every well-formed pickled proxy inside `root` (including `root` itself),
/// in depth-first order: inside tuples, lists, dicts (keys and values),
/// sets, frozensets, slices and opaque objects (callable, args, kwargs,
/// state, appended and set items).
///
/// A server uses this to find the proxies to its own objects that a request
/// stores inside another object (§5.3). The walk uses an explicit stack (no
/// recursion, so any depth is fine) and visits each shared container once
/// (by [`Value::identity`]), so cycles terminate and a proxy object that
/// appears twice is reported once; two distinct proxy objects with the same
/// token are both reported. A proxy's own arguments are not searched.
/// Objects that look like proxies but are malformed are searched as
/// ordinary objects.
///
/// ```
/// use mpmanager_pickle::Value;
/// use mpmanager_protocol::{find_proxies, ProxyRef, PyAddress, Token};
/// let p = ProxyRef::class_proxy("ListProxy", Token::new("list", PyAddress::tcp("127.0.0.1", 1), "a1"));
/// let v = Value::list(vec![Value::Int(1), Value::tuple(vec![p.to_value()])]);
/// assert_eq!(find_proxies(&v), vec![p]);
/// ```
pub fn find_proxies(root: &Value) -> Vec<ProxyRef> {
    let mut found = Vec::new();
    let mut seen: HashSet<usize> = HashSet::new();
    // Visited containers are kept alive until the walk ends, so that their
    // addresses cannot be reused by another container (if another thread
    // mutates the graph meanwhile) and mistaken for already seen.
    let mut keep_alive: Vec<Value> = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(v) = stack.pop() {
        let holds = v.holds_values();
        if !holds {
            continue;
        }
        if let Some(id) = v.identity() {
            if !seen.insert(id) {
                continue;
            }
        }
        keep_alive.push(v.clone());
        // Children are pushed in reverse so that they pop in order.
        if ProxyRef::is_proxy_value(&v) {
            if let Ok(p) = ProxyRef::from_value(&v) {
                found.push(p);
                continue;
            }
        }
        let children = v.children();
        stack.extend(children.into_iter().rev());
    }
    found
}
