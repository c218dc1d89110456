//! `multiprocessing.connection` for mpmanager: the bottom layer of a Rust
//! implementation of Python's `multiprocessing.managers`, wire-compatible
//! with CPython 3.8 – 3.14 (see `docs/PROTOCOL.md` §1–§2).
//!
//! * [`Address`]: TCP (IPv4/IPv6), unix path and Linux abstract sockets, with
//!   a string form and the Python value CPython reports ([`PythonAddress`]).
//! * [`Listener`] / [`Stream`]: blocking sockets (`TCP_NODELAY` on TCP).
//! * [`Connection`]: CPython's length-prefixed framing (`i32be` length, or
//!   `ff ff ff ff` + `u64be` for huge payloads), buffered reads, one `writev`
//!   per frame, bounded frame sizes.
//! * [`BusyPoll`] / [`SpinBudget`]: optional adaptive polling before a
//!   blocking read (servers), so a client in a tight request loop is not
//!   met by a thread that has to be woken.
//! * [`auth`]: the mutual HMAC challenge/response handshake.
//! * [`ConnectionError`]: the one error type, with
//!   [`is_retryable`](ConnectionError::is_retryable) and
//!   [`must_reconnect`](ConnectionError::must_reconnect).
//!
//! Everything is synchronous std I/O, meant for a thread-per-connection
//! server. Peer input never causes a panic.
//!
//! ```
//! use mpmanager_connection::{auth, Address, Connection, Listener};
//!
//! let dir = std::env::temp_dir().join(format!("mpm-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let addr = Address::Unix(dir.join("sock"));
//! let listener = Listener::bind(&addr).unwrap();
//! let client = std::thread::spawn(move || {
//!     let mut c = Connection::connect(&addr, None).unwrap();
//!     auth::client_handshake(&mut c, b"key").unwrap();
//!     c.send(b"request").unwrap();
//!     c.recv(1 << 20).unwrap()
//! });
//! let mut s = Connection::new(listener.accept().unwrap());
//! auth::server_handshake(&mut s, b"key").unwrap();
//! let req = s.recv(1 << 20).unwrap();
//! s.send(&[&req[..], b" done"].concat()).unwrap();
//! assert_eq!(client.join().unwrap(), b"request done");
//! drop(listener);                       // unlinks the socket file
//! assert!(!dir.join("sock").exists());
//! std::fs::remove_dir(&dir).unwrap();
//! ```

#![warn(missing_docs)]

mod address;
pub mod auth;
mod busy_poll;
mod connection;
mod error;
mod stream;

pub use address::{Address, PythonAddress};
pub use busy_poll::{BusyPoll, SpinBudget};
pub use connection::{Connection, NO_LIMIT};
pub use error::{AuthFailure, ConnectionError, Result};
pub use stream::{Listener, Stream};
