//! The Python docs' custom manager ("Customized managers"), in Rust:
//!
//! ```python
//! class MathsClass:
//!     def add(self, x, y): return x + y
//!     def mul(self, x, y): return x * y
//! class MyManager(BaseManager): pass
//! MyManager.register('Maths', MathsClass)
//! with MyManager() as manager:
//!     maths = manager.Maths()
//!     print(maths.add(4, 3))     # prints 7
//!     print(maths.mul(7, 8))     # prints 56
//! ```
//!
//! `#[shared_type]` turns the impl block into a type the manager serves;
//! `register_type` is `MyManager.register('Maths', MathsClass)`; the
//! server runs on a thread of this process; `MathsProxy` is the typed
//! client side. Unmodified Python clients can use the same server with
//! `MyManager.register('Maths')` and CPython's AutoProxy (see
//! `cargo run --example maths_server`, which serves it on a fixed address).

use std::sync::Arc;

use mpmanager_client::{Manager, Proxy, Result};
use mpmanager_pickle::Value;
use mpmanager_server::objects::shared_type;
use mpmanager_server::{Registry, ServerConfig};

/// `MathsClass`, served by the manager.
#[derive(Default)]
struct MathsClass;

#[shared_type(name = "MathsClass", module = "__main__")]
impl MathsClass {
    fn add(&self, x: i64, y: i64) -> i64 {
        x + y
    }

    fn mul(&self, x: i64, y: i64) -> i64 {
        x * y
    }
}

/// The client side: a typed proxy over the generic one.
struct MathsProxy(Proxy);

impl MathsProxy {
    fn add(&self, x: i64, y: i64) -> Result<i64> {
        self.0
            .call("add", vec![Value::Int(x), Value::Int(y)], vec![])?
            .get()
    }

    fn mul(&self, x: i64, y: i64) -> Result<i64> {
        self.0
            .call("mul", vec![Value::Int(x), Value::Int(y)], vec![])?
            .get()
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    // class MyManager(BaseManager): pass
    // MyManager.register('Maths', MathsClass)
    let registry = Registry::with_builtin_types();
    registry.register_type::<MathsClass>("Maths");
    let mut config = ServerConfig::new("127.0.0.1:0".parse()?, b"maths".to_vec());
    config.registry = Some(Arc::new(registry));

    // with MyManager() as manager:
    let manager = Manager::spawn_server(config)?;
    let maths = MathsProxy(manager.create("Maths", vec![], vec![])?);
    println!("{}", maths.add(4, 3)?); // prints 7
    println!("{}", maths.mul(7, 8)?); // prints 56
    Ok(())
}
