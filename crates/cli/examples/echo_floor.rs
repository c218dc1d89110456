//! The "echo floor" of `scripts/bench.py`: a manager server that does no
//! work at all. It authenticates like `mpmanager serve` (same connection
//! crate, one thread per connection, system allocator), then answers each request
//! with a canned pickled reply of the shape the real server would send
//! (`('#RETURN', None)` for a setter, `('#RETURN', 1)` for a getter, a 1 MiB
//! bytes for the benchmark's big value, `(ident, exposed)` for `create`),
//! picked by a byte search for the method name in the request: no
//! unpickling, no objects, no encoding. No server that speaks the protocol
//! over the same sockets can answer faster, so it measures the floor that
//! the client's own work and the kernel set.
//!
//! Only good for the unmodified Python proxies of `scripts/bench.py` (it
//! keeps no state: `d['k']` is always 1).
//!
//! ```text
//! cargo build --release -p mpmanager-cli --example echo_floor
//! MPMANAGER_AUTHKEY=key target/release/examples/echo_floor unix:/tmp/s
//! ```
//! Prints the bound address on stdout (as `mpmanager serve --print-address`)
//! and serves until killed. It waits for requests as `mpmanager serve`
//! does: `MPMANAGER_BUSY_POLL_US` is its `--busy-poll-us` (default
//! `mpmanager_server::DEFAULT_BUSY_POLL`, no polling).

use std::io::Write;
use std::sync::Arc;

use std::time::Duration;

use mpmanager_connection::{auth, Address, BusyPoll, Connection, Listener, SpinBudget};
use mpmanager_pickle::{encode_with, EncodeOptions, Value};
use mpmanager_protocol::registry;

/// Size of the big value (`d['big']` in the benchmark).
const BIG: usize = 1 << 20;

struct Canned {
    none: Vec<u8>,
    one: Vec<u8>,
    truth: Vec<u8>,
    big: Vec<u8>,
    create: Vec<u8>,
    create_queue: Vec<u8>,
}

fn pickle(v: Value) -> Vec<u8> {
    encode_with(
        &Value::tuple(vec![Value::str("#RETURN"), v]),
        &EncodeOptions::protocol(4),
    )
    .expect("canned reply")
}

impl Canned {
    fn new() -> Canned {
        // Only the AutoProxy of a Queue reads `exposed` (it becomes its
        // methods). The other proxy types have fixed methods; they get a
        // list's, as long as a real one. Both are what `mpmanager serve`
        // sends (the protocol crate's type table).
        let create = |typeid: &str| {
            let spec = registry::lookup(typeid).expect("a built-in typeid");
            pickle(Value::tuple(vec![
                Value::str("7f0000000001"),
                Value::tuple(spec.exposed().iter().map(|m| Value::str(m)).collect()),
            ]))
        };
        Canned {
            none: pickle(Value::None),
            one: pickle(Value::Int(1)),
            truth: pickle(Value::Bool(true)),
            big: pickle(Value::bytes(&vec![b'x'; BIG])),
            create: create("list"),
            create_queue: create("Queue"),
        }
    }

    /// The reply to a pickled request `(ident, method, args, kwds)`.
    fn reply(&self, req: &[u8]) -> &[u8] {
        // SHORT_BINUNICODE (0x8c), length, name: the method name, or in
        // args the key/attribute name.
        if has_str(req, b"create") {
            if has_str(req, b"Queue") {
                &self.create_queue
            } else {
                &self.create
            }
        } else if has_str(req, b"big") {
            // d['big'] = blob (a big request) gets None, d['big'] the blob.
            if req.len() > BIG / 2 {
                &self.none
            } else {
                &self.big
            }
        } else if has_str(req, b"__getattribute__")
            || has_str(req, b"__getitem__")
            || has_str(req, b"get")
            || has_str(req, b"__len__")
        {
            &self.one
        } else if has_str(req, b"acquire") {
            &self.truth
        } else {
            &self.none
        }
    }
}

fn has_str(hay: &[u8], s: &[u8]) -> bool {
    let n = s.len() + 2;
    hay.windows(n)
        .any(|w| w[0] == 0x8c && w[1] as usize == s.len() && &w[2..] == s)
}

fn serve(mut conn: Connection, key: &[u8], canned: &Canned) {
    if auth::server_handshake(&mut conn, key).is_err() {
        return;
    }
    // As `mpmanager serve` does: no ~40 ms delayed-ACK stall behind the
    // client's Nagle on TCP.
    conn.set_quickack(true);
    let mut buf = Vec::new();
    loop {
        if conn.recv_into(&mut buf, 1 << 30).is_err() {
            return;
        }
        if conn.send(canned.reply(&buf)).is_err() {
            return;
        }
    }
}

fn main() {
    let addr: Address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()
        .expect("address");
    let key: Arc<[u8]> = std::env::var("MPMANAGER_AUTHKEY")
        .expect("MPMANAGER_AUTHKEY")
        .into_bytes()
        .into();
    let canned = Arc::new(Canned::new());
    let poll = match std::env::var("MPMANAGER_BUSY_POLL_US") {
        Ok(us) => Duration::from_micros(us.parse().expect("MPMANAGER_BUSY_POLL_US")),
        Err(_) => mpmanager_server::DEFAULT_BUSY_POLL,
    };
    let busy_poll = (!poll.is_zero()).then(|| (poll, Arc::new(SpinBudget::for_this_machine())));
    let listener = Listener::bind(&addr).expect("bind");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", listener.local_address()).unwrap();
    out.flush().unwrap();
    drop(out);
    loop {
        let Ok(stream) = listener.accept() else {
            continue;
        };
        let (key, canned) = (key.clone(), canned.clone());
        let mut conn = Connection::new(stream);
        if let Some((max, budget)) = &busy_poll {
            conn.set_busy_poll(Some(BusyPoll::new(*max, budget.clone())));
        }
        std::thread::spawn(move || serve(conn, &key, &canned));
    }
}
