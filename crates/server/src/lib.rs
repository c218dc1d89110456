//! # mpmanager-server
//!
//! The manager server of mpmanager: Python's `multiprocessing.managers.Server`
//! in Rust, wire-compatible with CPython 3.8–3.14 clients. An unmodified
//! Python program can `connect()` a `SyncManager` (or any `BaseManager`) to it
//! and use `Namespace`, `list`, `dict`, `set`, `Value` and `Array` proxies,
//! `Queue` and `JoinableQueue`, and the `Event`, `Lock`, `RLock`,
//! `Semaphore`, `BoundedSemaphore`, `Condition` and `Barrier`
//! synchronisation types, as with CPython's own server. Section numbers (§)
//! refer to the repository's `docs/PROTOCOL.md`.
//!
//! * [`Server::bind`] a [`ServerConfig`] (address, authkey, limits, named
//!   shared objects), then [`Server::serve`] (blocking) or
//!   [`Server::spawn`] (background thread, [`BackgroundServer`]).
//! * [`ServerHandle::shutdown`] stops it, as does a client's `shutdown`
//!   request: the listener is closed at once (TCP port free, unix socket
//!   file removed).
//! * [`SharedObject`]: `NAME=TYPE` objects that every client shares, like
//!   CPython's `register('get_list', callable=lambda: the_list)`.
//! * Custom Rust types: [`macro@shared_type`] on an `impl` block, then
//!   [`Registry::register_type`] / [`Registry::register_shared`] on the
//!   registry given in [`ServerConfig::registry`] (see "Custom types" below
//!   and `examples/maths_server.rs`).
//!
//! ## Model
//!
//! * One thread per connection with blocking I/O, as in CPython; the
//!   accept loop runs in [`Server::serve`]. A blocking or slow method call
//!   holds only its own connection's thread; there is no global lock on the
//!   method-call path (see `mpmanager_objects::Registry`).
//! * Every connection performs the mutual HMAC handshake (§2), delivering
//!   the modern `{sha256}` challenge first, under a deadline
//!   ([`ServerConfig::handshake_timeout`]). Connections in the handshake
//!   are bounded by [`ServerConfig::max_pending_handshakes`] (at the bound
//!   the oldest is evicted), apart from the authenticated ones, which
//!   alone count toward [`ServerConfig::max_connections`]; a client with
//!   the key over that limit gets `ConnectionRefusedError` naming it.
//! * The first request is a one-shot operation (`create`, `incref`,
//!   `decref`, `get_methods`, `debug_info`, `number_of_objects`, `dummy`,
//!   `shutdown`), answered with `#RETURN` or `#TRACEBACK`, or
//!   `accept_connection`, which turns the connection into a served one:
//!   method calls answered with `#RETURN`, `#ERROR` (the exception object),
//!   `#TRACEBACK`, `#PROXY` or `#UNSERIALIZABLE` until the client hangs up.
//! * Replies are pickled with the protocol of the request they answer
//!   (4 for CPython 3.8–3.13, 5 for 3.14).
//! * Bad input fails only its request or its connection: an undecodable
//!   pickle, a malformed request, a frame over
//!   [`ServerConfig::max_frame`] (read and thrown away) or one whose
//!   decoding would take more memory than allowed gets a `#TRACEBACK`
//!   (`MemoryError: …` naming the limit and its flag for the last two) and
//!   the connection goes on; a framing error or a failed handshake closes
//!   that connection.
//! * Bounded memory: decoding a request may allocate at most
//!   [`ServerConfig::decode_factor`] times its size plus 64 MiB, and the
//!   requests being received and decoded at once hold at most
//!   [`ServerConfig::request_memory`] together (frames and decoding);
//!   over it, a request waits up to
//!   [`ServerConfig::request_memory_wait`], then fails as above. A panic in a
//!   connection thread (a bug) is caught and closes only that connection.
//!
//! ## Compatibility notes
//!
//! * **Authkey of nested proxies.** A proxy that arrives inside a reply
//!   (`outer[0]` where `outer` holds a proxy) is rebuilt by the CPython
//!   client with `multiprocessing.current_process().authkey`, not the
//!   manager's key (§2.6). Clients of a server they did not start should
//!   set `multiprocessing.current_process().authkey = KEY`, or the
//!   automatic `incref` fails with `AuthenticationError`.
//! * **CPython 3.8 clients** work, including nested AutoProxies (an
//!   AutoProxy stored in a list and read back): 3.8's AutoProxy lacks the
//!   `manager_owned` argument, which only breaks a 3.8 *server* (it calls
//!   `RebuildProxy` on stored proxies); this server never rebuilds
//!   proxies, it recognises its own tokens by ident.
//! * **IPv6**: the server listens on `[::1]:port` and puts `('::1', port)`
//!   in tokens, but CPython's `multiprocessing` only speaks IPv4 for
//!   `(host, port)` addresses; IPv6 is for Rust clients.
//! * A proxy to *another* manager stored here is kept as an opaque value;
//!   the server never connects to other managers.
//!
//! ```
//! use mpmanager_server::{Server, ServerConfig};
//!
//! let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), b"secret".to_vec());
//! config.objects.push("board=Namespace".parse().unwrap());
//! let server = Server::bind(config).unwrap().spawn().unwrap();
//! println!("Python: SyncManager(address={}, authkey=b'secret')", server.python_address());
//! server.shutdown();
//! server.join().unwrap();
//! ```
//!
//! ## Custom types
//!
//! The equivalent of `MyManager.register('Maths', MathsClass)`: an unmodified
//! CPython client's `MyManager.register('Maths'); m.connect();
//! m.Maths().add(4, 3)` calls this Rust method through its `AutoProxy`.
//!
//! ```
//! use std::sync::Arc;
//! use mpmanager_server::{shared_type, Registry, Server, ServerConfig};
//!
//! #[derive(Default)]
//! struct Maths;
//!
//! #[shared_type]
//! impl Maths {
//!     fn add(&self, x: i64, y: i64) -> i64 { x + y }
//! }
//!
//! let registry = Registry::with_builtin_types(); // or Registry::new(): no built-ins
//! registry.register_type::<Maths>("Maths");
//! let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), b"secret".to_vec());
//! config.registry = Some(Arc::new(registry));
//! let server = Server::bind(config).unwrap().spawn().unwrap();
//! let (ident, exposed) = server.registry().create("Maths", &[], &Default::default()).unwrap();
//! assert_eq!(exposed, ["add"]);
//! server.registry().decref(&ident).unwrap();
//! server.shutdown();
//! server.join().unwrap();
//! ```
#![warn(missing_docs)]

mod admission;
mod budget;
mod config;
mod conn;
mod error;
mod server;
mod watch;

pub use budget::MemoryRefusal;
pub use config::{
    ServerConfig, SharedKind, SharedObject, DEFAULT_BUSY_POLL, DEFAULT_DECODE_FACTOR,
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FRAME,
    DEFAULT_MAX_PENDING_HANDSHAKES, DEFAULT_REQUEST_MEMORY, DEFAULT_REQUEST_MEMORY_WAIT,
    DEFAULT_THREAD_STACK,
};
pub use error::ServerError;
pub use server::{BackgroundServer, Server, ServerHandle};

pub use mpmanager_connection::Address;
/// The object crate (`mpmanager-objects`), for custom types without a
/// separate dependency: `#[shared_type]`.
pub use mpmanager_objects as objects;
pub use mpmanager_objects::{shared_type, Registry, SharedType};
pub use mpmanager_protocol::{Serializer, UnknownSerializer};
