//! # mpmanager-client
//!
//! A native Rust client for `multiprocessing.managers` servers: mpmanager's
//! own (`mpmanager serve`, or one started in this process) **and CPython's**
//! (`SyncManager`, any `BaseManager` using the `pickle` serializer,
//! CPython 3.8–3.14). Section numbers (§) refer to the repository's
//! `docs/PROTOCOL.md`.
//!
//! * [`Manager`]: [`connect`](Manager::connect) to a server, or
//!   [`start_in_background`](Manager::start_in_background) one;
//!   [`create`](Manager::create) objects, [`number_of_objects`](Manager::number_of_objects),
//!   [`debug_info`](Manager::debug_info), [`shutdown`](Manager::shutdown).
//! * [`Proxy`]: CPython's `BaseProxy`: [`call`](Proxy::call)
//!   (`_callmethod`), [`call_with_deadline`](Proxy::call_with_deadline),
//!   [`get_value`](Proxy::get_value) (`_getvalue`), the [`token`](Proxy::token),
//!   a [string form](Proxy::to_proxy_string) for other processes.
//! * Typed proxies: [`Namespace`], [`ListProxy`], [`DictProxy`] (with
//!   [`KeyIter`]), [`ValueProxy`], [`ArrayProxy`], [`QueueProxy`] (`Queue`
//!   and `JoinableQueue`), [`LockProxy`] (`Lock` and `RLock`, with
//!   [`LockGuard`]), [`SemaphoreProxy`] (`Semaphore` and
//!   `BoundedSemaphore`), [`ConditionProxy`] (with [`ConditionGuard`]),
//!   [`EventProxy`], [`BarrierProxy`]; `set` has none yet (use [`Proxy`]).
//!   Values cross through serde
//!   ([`mpmanager_pickle::to_value`] / [`from_value`](mpmanager_pickle::from_value));
//!   use [`Value`] for raw Python values.
//! * [`Pipeline`]: several calls on one connection, replies read in order.
//! * [`ClientError`]: remote exceptions with their Python type
//!   ([`RemoteException`]), `queue.Empty`/`Full`, remote errors, transport
//!   failures (with [`reconnect_may_help`](ClientError::reconnect_may_help)).
//!
//! ## References and connections
//!
//! Each [`Proxy`] owns one reference on the server, given back when its
//! last clone is dropped (§5). Proxies stored inside other objects (a list
//! of lists) come back as live proxies, each with its own reference. Calls
//! go over a pool of served connections per manager (see [`Proxy`]);
//! `incref`, `decref` and the other public operations use one-shot
//! connections, as CPython does. All types are `Send + Sync`.
//!
//! ```
//! use mpmanager_client::{ListProxy, Manager};
//!
//! let m = Manager::start_in_background(b"secret").unwrap();
//! let inner = m.list(&[1, 2]).unwrap();
//! let outer = m.list::<ListProxy<i64>>(&[]).unwrap();
//! outer.push(&inner).unwrap();                   // a nested proxy
//! let again: ListProxy<i64> = outer.get(0).unwrap(); // a live proxy
//! again.push(&3).unwrap();
//! assert_eq!(inner.to_vec().unwrap(), [1, 2, 3]);
//! ```
#![warn(missing_docs)]

mod client;
mod error;
mod manager;
mod pipeline;
mod proxy;
mod typed;

pub use error::{ClientError, RemoteException, Result};
pub use manager::Manager;
pub use pipeline::{Pipeline, PIPELINE_WINDOW};
pub use proxy::{Proxy, Response, PROXY_STRING_PREFIX};
pub use typed::{
    ArrayProxy, BarrierProxy, ConditionGuard, ConditionProxy, DictProxy, EventProxy, KeyIter,
    ListProxy, LockGuard, LockProxy, Namespace, QueueProxy, SemaphoreProxy, ValueProxy,
};

pub use mpmanager_connection::Address;
pub use mpmanager_pickle::Value;
pub use mpmanager_protocol::Token;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<Manager>();
        is::<Proxy>();
        is::<Response>();
        is::<Namespace>();
        is::<ListProxy<String>>();
        is::<DictProxy<String, Value>>();
        is::<QueueProxy<Value>>();
        is::<LockProxy>();
        is::<LockGuard<'static>>();
        is::<EventProxy>();
        is::<KeyIter<String>>();
        is::<ClientError>();
    }

    #[test]
    fn a_proxy_cannot_be_read_outside_a_reply() {
        use mpmanager_protocol::{ProxyRef, PyAddress};
        let token = Token::new("list", PyAddress::tcp("127.0.0.1", 1), "ab");
        let v = ProxyRef::class_proxy("ListProxy", token).to_value();
        let e = mpmanager_pickle::from_value::<Proxy>(&v).unwrap_err();
        assert!(e.to_string().contains("manager's reply"), "{e}");
    }

    #[test]
    fn exception_names_and_queue_errors() {
        use mpmanager_pickle::{ExcType, Global, PyErr};
        let empty = PyErr::with_args(
            ExcType::Other(std::sync::Arc::new(Global::new("_queue", "Empty"))),
            vec![],
        );
        assert!(matches!(
            ClientError::from_remote(empty),
            ClientError::Empty
        ));
        let full = PyErr::with_args(
            ExcType::Other(std::sync::Arc::new(Global::new("queue", "Full"))),
            vec![],
        );
        assert!(matches!(ClientError::from_remote(full), ClientError::Full));
        let e = ClientError::from_remote(PyErr::index_error("list index out of range"));
        assert!(e.is_exception("IndexError") && e.is_exception("builtins.IndexError"));
        assert!(!e.is_exception("KeyError") && !e.is_exception("queue.IndexError"));
        assert_eq!(
            e.exception().unwrap().message(),
            Some("list index out of range")
        );
        assert!(ClientError::Full.is_exception("queue.Full"));
        assert!(!e.is_transport() && !e.reconnect_may_help());
    }

    #[test]
    fn bad_proxy_strings_are_refused() {
        for s in [
            "",
            "mpproxy:zz",
            "mpproxy:0",
            "other:00",
            "mpproxy:80044e2e",
        ] {
            assert!(
                matches!(
                    Proxy::from_proxy_string(s, b"k"),
                    Err(ClientError::NotAProxy(_))
                ),
                "{s:?}"
            );
        }
    }
}

/// The README's Rust quick start, compiled and run as a doctest (here, the
/// crate that sees every layer).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
