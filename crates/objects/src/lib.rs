//! # mpmanager-objects
//!
//! The object registry and the built-in shared data types of mpmanager's
//! manager server, with CPython's semantics, errors and reprs.
//!
//! * [`Referent`] — one shared object; the server calls
//!   [`Referent::call`] for each method request. Implement it for custom
//!   Rust types (the equivalent of `BaseManager.register(typeid, cls)`).
//! * [`macro@shared_type`] — the easy way: put it on an `impl` block of your
//!   type, then [`Registry::register_type`] or [`Registry::register_shared`]
//!   (arguments bound with CPython's rules, converted through serde).
//! * [`Registry`] — typeid → [`TypeSpec`] (constructor, exposed list,
//!   `method_to_typeid`), idents, reference counts, `debug_info`,
//!   `number_of_objects`, named shared objects, the method dispatch of
//!   docs/PROTOCOL.md §3.5 with its `#GETVALUE`/`__str__`/`__repr__`
//!   fallbacks, and the lifetime
//!   of nested proxies (stash/revive, plus a collector that frees them
//!   when unreachable, which CPython does not).
//! * [`types`] — `list`, `dict` (+ its `Iterator`), `Namespace`, `Value`,
//!   `Array`, `set`, `Queue`/`JoinableQueue` and `Event` (whose blocking
//!   methods wait on condition variables, blocking only the caller); the
//!   synchronisation types `Lock`, `RLock`, `Semaphore`,
//!   `BoundedSemaphore`, `Condition` and `Barrier` (lock ownership follows
//!   the client connection, as CPython's per-connection server threads do).
//!
//! ```
//! use mpmanager_objects::{Registry, CallContext, CallError, Kwargs, Reply};
//! use mpmanager_pickle::{repr, Value, ExcType};
//!
//! let reg = Registry::with_builtin_types();
//! let cx = CallContext::new(1);
//! let kw = Kwargs::new();
//! let (ns, _) = reg.create("Namespace", &[], &kw).unwrap();
//! reg.call(&cx, &ns, "__setattr__", &[Value::str("x"), Value::Int(10)], &kw).unwrap();
//! reg.call(&cx, &ns, "__setattr__", &[Value::str("y"), Value::str("hello")], &kw).unwrap();
//! let Reply::Return(r) = reg.call(&cx, &ns, "__repr__", &[], &kw).unwrap() else { panic!() };
//! assert_eq!(repr(&r), "\"Namespace(x=10, y='hello')\"");
//! // A missing attribute is an '#ERROR' AttributeError (so hasattr() works):
//! let Err(CallError::Python(e)) = reg.call(&cx, &ns, "__getattribute__", &[Value::str("z")], &kw)
//!     else { panic!() };
//! assert_eq!(e.ty, ExcType::AttributeError);
//! // A method that is not exposed is a '#TRACEBACK':
//! assert!(matches!(reg.call(&cx, &ns, "nosuch", &[], &kw), Err(CallError::Traceback(_))));
//! ```
#![warn(missing_docs)]

pub mod args;
mod context;
pub mod proxy;
mod referent;
mod registry;
mod shared;
pub mod types;

#[doc(hidden)]
pub use shared::__private;
pub use shared::SharedType;

pub use context::{CancelHandle, Closed, Waited};
pub use referent::{CallContext, CallError, Kwargs, Outcome, Referent};
pub use registry::{
    CollectStats, Constructor, Registry, RegistryConfig, RegistryConstructor, Reply, TypeSpec,
};

pub use mpmanager_pickle::{ExcType, PyErr, Value};

#[doc = include_str!("shared_type.md")]
pub use mpmanager_derive::shared_type;
