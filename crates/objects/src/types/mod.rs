//! The built-in data types of `SyncManager`.
//!
//! Their exposed lists come from `mpmanager_protocol::registry` (the union
//! over CPython 3.8–3.14, docs/PROTOCOL.md §4.1–§4.2, in the order the newest
//! version reports them). Class proxies (`ListProxy`, `DictProxy`, …)
//! ignore this list, so extra names are harmless to older clients.
//!
//! | module | typeids |
//! |---|---|
//! | `list`, `dict`, `set`, `namespace`, `array` | `list` ([`ListObject`]), `dict` ([`DictObject`], and `Iterator`: [`DictKeyIterator`]), `set` ([`SetObject`]), `Namespace` and `Value` ([`NamespaceObject`], [`ValueObject`]), `Array` ([`ArrayObject`]) |
//! | `queue` | `Queue`, `JoinableQueue` ([`QueueObject`]) |
//! | `event` | `Event` ([`EventObject`]) |
//! | `locks` | `Lock`, `RLock` ([`LockObject`]), `Semaphore`, `BoundedSemaphore` ([`SemaphoreObject`]), `Condition` ([`ConditionObject`]) |
//! | `barrier` | `Barrier` ([`BarrierObject`]) |
//!
//! `Pool` is registered too, but only to refuse it with the reason: a pool
//! runs Python callables. CPython's `AsyncResult` typeid (only produced by
//! a `Pool`) is not registered.

use std::sync::Arc;

use crate::registry::{Registry, TypeSpec};
use crate::Referent;

mod array;
mod barrier;
mod condition;
mod dict;
mod event;
mod list;
mod locks;
mod namespace;
mod queue;
mod set;
mod wait;

pub use array::ArrayObject;
pub use barrier::{broken_barrier_error, BarrierObject};
pub use condition::ConditionObject;
pub use dict::{DictKeyIterator, DictObject};
pub use event::EventObject;
pub use list::ListObject;
pub use locks::{LockObject, SemaphoreObject};
pub use namespace::{NamespaceObject, ValueObject};
pub use queue::{queue_empty, queue_full, queue_shutdown, QueueObject};
pub use set::SetObject;

fn ctor<T: Referent>(
    f: fn(&[mpmanager_pickle::Value], &crate::Kwargs) -> Result<T, mpmanager_pickle::PyErr>,
) -> crate::registry::Constructor {
    Arc::new(move |a, k| Ok(Arc::new(f(a, k)?) as Arc<dyn Referent>))
}

/// Registers `list`, `dict`, `Namespace`, `Value`, `Array`, `set`,
/// `Iterator`, `Queue`, `JoinableQueue`, `Event` and the synchronisation
/// types `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition` and
/// `Barrier` with CPython's exposed lists, and `Pool`, whose `create`
/// fails with the reason (`NotImplementedError`: a pool runs Python code).
///
/// ```
/// use mpmanager_objects::{Registry, Kwargs};
/// let reg = Registry::new();
/// mpmanager_objects::types::register_builtin_types(&reg);
/// let (_, exposed) = reg.create("dict", &[], &Kwargs::new()).unwrap();
/// assert_eq!(exposed.iter().filter(|m| *m == "__iter__").count(), 2);
/// let (_, exposed) = reg.create("JoinableQueue", &[], &Kwargs::new()).unwrap();
/// assert!(exposed.iter().any(|m| m == "task_done"));
/// ```
pub fn register_builtin_types(reg: &Registry) {
    let table = |typeid: &str| {
        mpmanager_protocol::registry::lookup(typeid).expect("a SyncManager built-in typeid")
    };
    let spec = |typeid: &str, ctor: crate::registry::Constructor| {
        TypeSpec::new(typeid, ctor).builtin(table(typeid))
    };
    reg.register(spec("list", ctor(ListObject::construct)));
    reg.register(spec("dict", ctor(DictObject::construct)));
    reg.register(spec("set", ctor(SetObject::construct)));
    reg.register(spec("Namespace", ctor(NamespaceObject::construct)));
    reg.register(spec("Value", ctor(ValueObject::construct)));
    reg.register(spec("Array", ctor(ArrayObject::construct)));
    reg.register(TypeSpec::without_constructor("Iterator").builtin(table("Iterator")));

    // Queues and events (queue.rs, event.rs). `JoinableQueue` is the same
    // class as `Queue`, as in CPython.
    reg.register(spec("Queue", ctor(QueueObject::construct)));
    reg.register(spec("JoinableQueue", ctor(QueueObject::construct)));
    reg.register(spec("Event", ctor(EventObject::construct)));
    // Synchronisation types (locks.rs, barrier.rs).
    reg.register(spec("Lock", ctor(LockObject::construct_lock)));
    reg.register(spec("RLock", ctor(LockObject::construct_rlock)));
    reg.register(spec(
        "Semaphore",
        ctor(SemaphoreObject::construct_semaphore),
    ));
    reg.register(spec(
        "BoundedSemaphore",
        ctor(SemaphoreObject::construct_bounded),
    ));
    reg.register(
        TypeSpec::with_registry(
            "Condition",
            Arc::new(|reg, a, k| {
                Ok(Arc::new(ConditionObject::construct_in(reg, a, k)?) as Arc<dyn Referent>)
            }),
        )
        .builtin(table("Condition")),
    );
    reg.register(spec("Barrier", ctor(BarrierObject::construct)));

    // `Pool` is registered so that creating one fails with the reason (a
    // pool runs Python callables in Python worker processes) rather than
    // an unknown-typeid KeyError.
    reg.register(spec(
        "Pool",
        Arc::new(|_, _| {
            Err(mpmanager_pickle::PyErr::new(
                mpmanager_pickle::ExcType::NotImplementedError,
                "mpmanager's server cannot host a Pool: a multiprocessing.pool.Pool runs \
                 Python callables in Python worker processes, and this server runs no \
                 Python code (use multiprocessing.Pool in the client instead)",
            ))
        }),
    ));
}
