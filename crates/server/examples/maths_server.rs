//! A manager server with a custom Rust type, the Rust side of the Python
//! docs' `MyManager.register('Maths', MathsClass)` example, plus a `Counter`
//! that every client shares.
//!
//! ```sh
//! cargo run -p mpmanager-server --example maths_server            # 127.0.0.1:50000
//! cargo run -p mpmanager-server --example maths_server -- unix:/tmp/maths.sock
//! ```
//!
//! The authkey is `MPMANAGER_AUTHKEY` (default `abracadabra`). The server
//! prints its address; an unmodified Python program then uses it:
//!
//! ```python
//! from multiprocessing.managers import BaseManager
//!
//! class MyManager(BaseManager):
//!     pass
//!
//! MyManager.register('Maths')
//! MyManager.register('get_counter')
//! m = MyManager(address=('127.0.0.1', 50000), authkey=b'abracadabra')
//! m.connect()
//! maths = m.Maths()
//! print(maths.add(4, 3))     # prints 7
//! print(maths.mul(7, 8))     # prints 56
//! print(maths)               # <maths_server.Maths object at 0x7f…>
//! counter = m.get_counter()  # the same object for every client
//! print(counter.incr(by=5))  # 5, then 10 for the next client …
//! ```
//!
//! Stop the server with Ctrl-C.
#![allow(missing_docs)] // criterion and example harness items need no docs

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use mpmanager_server::objects::{shared_type, PyErr};
use mpmanager_server::{Registry, Server, ServerConfig};
use serde::{Deserialize, Serialize};

/// A Python number: an `int` stays an `int` (`mul(7, 8)` is `56`, not
/// `56.0`), a `float` a `float`.
#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn float(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// The docs' `MathsClass`: a new one per `m.Maths()`.
#[derive(Default)]
struct Maths;

#[shared_type]
impl Maths {
    fn add(&self, x: Num, y: Num) -> Num {
        match (x, y) {
            (Num::Int(a), Num::Int(b)) if a.checked_add(b).is_some() => Num::Int(a + b),
            _ => Num::Float(x.float() + y.float()),
        }
    }

    fn mul(&self, x: Num, y: Num) -> Num {
        match (x, y) {
            (Num::Int(a), Num::Int(b)) if a.checked_mul(b).is_some() => Num::Int(a * b),
            _ => Num::Float(x.float() * y.float()),
        }
    }
}

/// One counter shared by every client (`register('get_counter')`).
#[derive(Default)]
struct Counter(AtomicI64);

#[shared_type]
impl Counter {
    /// Adds `by` (default 1) and returns the new value.
    fn incr(&self, by: Option<i64>) -> Result<i64, PyErr> {
        let by = by.unwrap_or(1);
        let old = self.0.fetch_add(by, Ordering::SeqCst);
        old.checked_add(by).ok_or_else(|| {
            self.0.fetch_sub(by, Ordering::SeqCst);
            PyErr::new(
                mpmanager_server::objects::ExcType::OverflowError,
                "counter overflow",
            )
        })
    }

    fn value(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50000".into());
    let authkey = std::env::var("MPMANAGER_AUTHKEY").unwrap_or_else(|_| "abracadabra".into());

    let registry = Registry::new();
    registry.register_type::<Maths>("Maths");
    let counter = Arc::new(Counter::default());
    registry.register_shared("get_counter", counter.clone());

    let mut config = ServerConfig::new(address.parse()?, authkey.clone().into_bytes());
    config.registry = Some(Arc::new(registry));
    let server = Server::bind(config)?;
    println!(
        "maths_server: serving on {} (Python address {}, authkey {:?})",
        server.address(),
        server.python_address(),
        authkey
    );
    server.serve()?;
    println!(
        "maths_server: stopped; the shared counter ended at {}",
        counter.value()
    );
    Ok(())
}
