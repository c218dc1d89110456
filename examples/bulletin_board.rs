//! A `Namespace` as a bulletin board (a Python lesson's program): one
//! process writes an attribute, the next reads it and writes another, the
//! parent reads the last one. Prints, like the Python lesson:
//!
//! ```text
//! empty
//! educative
//! educative is awesome !
//! ```
//!
//! The children are separate processes (procspawn): each gets the proxy as
//! a string and the authkey, as a Python child gets a pickled proxy and
//! inherits `current_process().authkey`.

use mpmanager_client::{ClientError, Manager, Namespace, Proxy};

const KEY: &[u8] = b"bulletin board";

/// The body of one child process: print the item, post the next one.
fn visit(proxy: String, key: Vec<u8>, next: String) -> Result<(), String> {
    let ns =
        Namespace::from_proxy(Proxy::from_proxy_string(&proxy, &key).map_err(|e| e.to_string())?);
    let item: String = ns.get("item").map_err(|e| e.to_string())?;
    println!("{item}");
    ns.set("item", &next).map_err(|e| e.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    procspawn::init();
    let manager = Manager::start_in_background(KEY)?;
    let shared_vars = manager.namespace()?;
    shared_vars.set("item", "empty")?;

    for next in ["educative", "educative is awesome !"] {
        let args = (
            shared_vars.proxy().to_proxy_string()?,
            KEY.to_vec(),
            next.to_string(),
        );
        let child = procspawn::spawn(args, |(proxy, key, next)| visit(proxy, key, next));
        child.join()??;
    }
    println!("{}", shared_vars.get::<String>("item")?);

    // `ns._item = …` in Python sets an attribute of the proxy, never seen by
    // other processes; the Rust Namespace refuses such names outright.
    match shared_vars.set("_item", "empty") {
        Err(ClientError::PrivateName(_)) => {}
        other => return Err(format!("expected PrivateName, got {other:?}").into()),
    }
    Ok(())
}
