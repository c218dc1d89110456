//! The Python docs' "Using a remote manager": a server holding one
//! shared queue, exposed as the typeid `get_queue`, and clients in other
//! processes that connect to it by address and authkey.
//!
//! ```text
//! cargo run --example remote_queue                 # all of it: prints 'hello'
//! cargo run --example remote_queue -- serve ADDR   # only the server
//! cargo run --example remote_queue -- put ADDR     # one client: put('hello')
//! cargo run --example remote_queue -- get ADDR     # another: print(repr(get()))
//! ```
//!
//! `ADDR` is `127.0.0.1:50000`, `unix:/path`, …; the authkey is
//! `b'abracadabra'`, as in the docs. The clients work just as well against
//! CPython's server (`QueueManager.register('get_queue', callable=lambda:
//! queue)` then `get_server().serve_forever()`), and Python clients
//! (`QueueManager.register('get_queue')`, `m.connect()`) against this one.

use std::process::Command;

use mpmanager_client::{Manager, QueueProxy};
use mpmanager_pickle::{repr::repr, Value};
use mpmanager_server::{Server, ServerConfig, SharedObject};

const KEY: &[u8] = b"abracadabra";

fn server(addr: &str) -> Result<Server, Box<dyn std::error::Error>> {
    let mut config = ServerConfig::new(addr.parse()?, KEY.to_vec());
    // register('get_queue', callable=lambda: queue)
    config
        .objects
        .push("get_queue=Queue".parse::<SharedObject>()?);
    Ok(Server::bind(config)?)
}

fn queue(addr: &str) -> Result<QueueProxy<Value>, Box<dyn std::error::Error>> {
    let m = Manager::connect(addr, KEY)?;
    // m.get_queue()
    Ok(QueueProxy::from_proxy(m.create(
        "get_queue",
        vec![],
        vec![],
    )?))
}

/// Runs this example again as `put ADDR` / `get ADDR`, in a new process.
fn client(role: &str, addr: &str) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new(std::env::current_exe()?)
        .args([role, addr])
        .output()?;
    if !out.status.success() {
        return Err(format!("{role}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", addr] => {
            let s = server(addr)?;
            println!("serving get_queue on {}", s.address());
            s.serve()?;
        }
        ["put", addr] => queue(addr)?.put(&Value::str("hello"))?,
        // The REPL echo of `queue.get()`: its repr.
        ["get", addr] => println!("{}", repr(&queue(addr)?.get()?)),
        [] => {
            let running = server("127.0.0.1:0")?.spawn()?;
            let addr = running.address().to_string();
            print!("{}", client("put", &addr)?);
            print!("{}", client("get", &addr)?);
            running.shutdown();
            running.join()?;
        }
        _ => return Err("usage: remote_queue [serve ADDR | put ADDR | get ADDR]".into()),
    }
    Ok(())
}
