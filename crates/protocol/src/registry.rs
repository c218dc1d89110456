//! The `SyncManager` type table (§4.1, §4.2) as data.
//!
//! Each [`TypeSpec`] gives, for one typeid, the proxy class a CPython client
//! builds, the `exposed` tuple the server returns from `create` and `#PROXY`
//! (in wire order), and `method_to_typeid`.
//!
//! Where CPython versions differ, the table holds the **union**, which is
//! harmless to older clients: registered proxy classes ignore the exposed
//! list, and an auto proxy merely gains methods (§4.2). The choices:
//!
//! * `Queue`, `JoinableQueue`: `shutdown` (a 3.13+ `queue.Queue` method) is
//!   included, in its sorted position between `qsize` and `task_done`.
//! * `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`: `locked` (3.14
//!   `AcquirerProxy`) is included after `release`, as in 3.14.
//! * `Condition`: `locked` likewise (3.14 `ConditionProxy` order).
//! * `list`: the 3.14 tuple (sorted, with `clear` and `copy`); 3.8–3.13
//!   send the same names minus those two with `__imul__` last.
//! * `dict`: the 3.14 tuple (adds `__ior__`, `__or__`, `__reversed__`,
//!   `__ror__`, `fromkeys`), then `__iter__` again from `method_to_typeid`,
//!   as CPython appends it (duplicates kept, §3.4 step 3).
//! * `set`: 3.14 only ([`TypeSpec::since`] is `(3, 14)`); its `__iter__` is
//!   not mapped to `Iterator`.
//! * `Pool`: the proxy's names, then the `method_to_typeid` keys appended
//!   (duplicates kept), as on every version.
//! * `Iterator` and `AsyncResult` have no creator (`create` takes the
//!   object itself); `AsyncResult` is an auto proxy whose names are computed
//!   from `multiprocessing.pool.ApplyResult`.

use mpmanager_pickle::Global;

use crate::token::MANAGERS_MODULE;
use crate::{ProxyRef, Token};

/// One registered typeid of `SyncManager`.
///
/// ```
/// use mpmanager_protocol::registry::{builtin_typeids, lookup};
/// let dict = lookup("dict").unwrap();
/// assert_eq!(dict.proxy_class(), "DictProxy");
/// assert_eq!(dict.typeid_for_method("__iter__"), Some("Iterator"));
/// assert_eq!(dict.exposed().last(), Some(&"__iter__"));
/// assert!(lookup("Queue").unwrap().is_auto());
/// assert_eq!(builtin_typeids().len(), 18);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeSpec {
    typeid: &'static str,
    proxy: &'static str,
    exposed: &'static [&'static str],
    method_to_typeid: &'static [(&'static str, &'static str)],
    creatable: bool,
    since: (u8, u8),
}

impl TypeSpec {
    /// The typeid, e.g. `list`.
    pub fn typeid(&self) -> &'static str {
        self.typeid
    }

    /// The client proxy class name (`ListProxy`, …) or `AutoProxy`.
    pub fn proxy_class(&self) -> &'static str {
        self.proxy
    }

    /// The global a pickled proxy of this type names as `func`.
    pub fn proxy_func(&self) -> Global {
        Global::new(MANAGERS_MODULE, self.proxy)
    }

    /// True if clients build an `AutoProxy` (its methods come from
    /// [`TypeSpec::exposed`]).
    pub fn is_auto(&self) -> bool {
        self.proxy == crate::proxy::AUTO_PROXY
    }

    /// The exposed tuple in wire order, as `create` and `#PROXY` return it
    /// (including names appended from `method_to_typeid`, duplicates kept).
    pub fn exposed(&self) -> &'static [&'static str] {
        self.exposed
    }

    /// True if `method` may be called on objects of this type.
    pub fn exposes(&self, method: &str) -> bool {
        self.exposed.contains(&method)
    }

    /// `method_to_typeid`: methods whose result is returned as a new proxy
    /// (`#PROXY`) of the given typeid.
    pub fn method_to_typeid(&self) -> &'static [(&'static str, &'static str)] {
        self.method_to_typeid
    }

    /// The typeid `method`'s result becomes, if any.
    pub fn typeid_for_method(&self, method: &str) -> Option<&'static str> {
        self.method_to_typeid
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, t)| *t)
    }

    /// False for `Iterator` and `AsyncResult`, which are only created from
    /// method results (their `create` takes the object itself).
    pub fn has_creator(&self) -> bool {
        self.creatable
    }

    /// The first CPython version (major, minor) that registers this typeid.
    pub fn since(&self) -> (u8, u8) {
        self.since
    }

    /// A pickled proxy for an object of this type, as a CPython client
    /// would pickle it (`{}` kwds, or `{'exposed': …}` for auto proxies).
    pub fn proxy_ref(&self, token: Token) -> ProxyRef {
        if self.is_auto() {
            ProxyRef::auto(token, self.exposed.iter().map(|s| s.to_string()).collect())
        } else {
            ProxyRef::class_proxy(self.proxy, token)
        }
    }
}

/// The exposed tuple of `Queue` and `JoinableQueue`.
const QUEUE: &[&str] = &[
    "empty",
    "full",
    "get",
    "get_nowait",
    "join",
    "put",
    "put_nowait",
    "qsize",
    "shutdown",
    "task_done",
];
const ACQUIRER: &[&str] = &["acquire", "release", "locked"];

const fn spec(
    typeid: &'static str,
    proxy: &'static str,
    exposed: &'static [&'static str],
) -> TypeSpec {
    TypeSpec {
        typeid,
        proxy,
        exposed,
        method_to_typeid: &[],
        creatable: true,
        since: (3, 8),
    }
}

static BUILTIN: [TypeSpec; 18] = [
    spec("Queue", "AutoProxy", QUEUE),
    spec("JoinableQueue", "AutoProxy", QUEUE),
    spec("Event", "EventProxy", &["is_set", "set", "clear", "wait"]),
    spec("Lock", "AcquirerProxy", ACQUIRER),
    spec("RLock", "AcquirerProxy", ACQUIRER),
    spec("Semaphore", "AcquirerProxy", ACQUIRER),
    spec("BoundedSemaphore", "AcquirerProxy", ACQUIRER),
    spec(
        "Condition",
        "ConditionProxy",
        &[
            "acquire",
            "release",
            "locked",
            "wait",
            "notify",
            "notify_all",
        ],
    ),
    spec(
        "Barrier",
        "BarrierProxy",
        &["__getattribute__", "wait", "abort", "reset"],
    ),
    TypeSpec {
        method_to_typeid: &[
            ("apply_async", "AsyncResult"),
            ("map_async", "AsyncResult"),
            ("starmap_async", "AsyncResult"),
            ("imap", "Iterator"),
            ("imap_unordered", "Iterator"),
        ],
        ..spec(
            "Pool",
            "PoolProxy",
            &[
                "apply",
                "apply_async",
                "close",
                "imap",
                "imap_unordered",
                "join",
                "map",
                "map_async",
                "starmap",
                "starmap_async",
                "terminate",
                "apply_async",
                "map_async",
                "starmap_async",
                "imap",
                "imap_unordered",
            ],
        )
    },
    spec(
        "list",
        "ListProxy",
        &[
            "__add__",
            "__contains__",
            "__delitem__",
            "__getitem__",
            "__imul__",
            "__len__",
            "__mul__",
            "__reversed__",
            "__rmul__",
            "__setitem__",
            "append",
            "clear",
            "copy",
            "count",
            "extend",
            "index",
            "insert",
            "pop",
            "remove",
            "reverse",
            "sort",
        ],
    ),
    TypeSpec {
        method_to_typeid: &[("__iter__", "Iterator")],
        ..spec(
            "dict",
            "DictProxy",
            &[
                "__contains__",
                "__delitem__",
                "__getitem__",
                "__ior__",
                "__iter__",
                "__len__",
                "__or__",
                "__reversed__",
                "__ror__",
                "__setitem__",
                "clear",
                "copy",
                "fromkeys",
                "get",
                "items",
                "keys",
                "pop",
                "popitem",
                "setdefault",
                "update",
                "values",
                "__iter__",
            ],
        )
    },
    spec("Value", "ValueProxy", &["get", "set"]),
    spec(
        "Array",
        "ArrayProxy",
        &["__len__", "__getitem__", "__setitem__"],
    ),
    spec(
        "Namespace",
        "NamespaceProxy",
        &["__getattribute__", "__setattr__", "__delattr__"],
    ),
    TypeSpec {
        creatable: false,
        ..spec(
            "Iterator",
            "IteratorProxy",
            &["__next__", "send", "throw", "close"],
        )
    },
    TypeSpec {
        creatable: false,
        ..spec(
            "AsyncResult",
            "AutoProxy",
            &["get", "ready", "successful", "wait"],
        )
    },
    TypeSpec {
        since: (3, 14),
        ..spec(
            "set",
            "SetProxy",
            &[
                "__and__",
                "__class_getitem__",
                "__contains__",
                "__iand__",
                "__ior__",
                "__isub__",
                "__iter__",
                "__ixor__",
                "__len__",
                "__or__",
                "__rand__",
                "__ror__",
                "__rsub__",
                "__rxor__",
                "__sub__",
                "__xor__",
                "__ge__",
                "__gt__",
                "__le__",
                "__lt__",
                "add",
                "clear",
                "copy",
                "difference",
                "difference_update",
                "discard",
                "intersection",
                "intersection_update",
                "isdisjoint",
                "issubset",
                "issuperset",
                "pop",
                "remove",
                "symmetric_difference",
                "symmetric_difference_update",
                "union",
                "update",
            ],
        )
    },
];

/// Every `SyncManager` typeid, in CPython's registration order (with `set`,
/// registered among the containers in 3.14, last).
pub fn builtin_typeids() -> &'static [TypeSpec] {
    &BUILTIN
}

/// The [`TypeSpec`] of `typeid`, if it is a `SyncManager` typeid.
pub fn lookup(typeid: &str) -> Option<&'static TypeSpec> {
    BUILTIN.iter().find(|s| s.typeid == typeid)
}
