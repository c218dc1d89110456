//! Round-trip latency of a framed echo (`Connection`) against a raw socket
//! echo doing the same reads/writes by hand, over TCP loopback and a unix
//! socket. `cargo run --release -p mpmanager-connection --features bench
//! --example echo_latency` (the `bench` feature keeps it out of `cargo test`).
#![allow(missing_docs)] // criterion and example harness items need no docs

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use mpmanager_connection::{Address, Connection, Listener, Stream};

const ROUNDS: usize = 20_000;
const PAYLOAD: usize = 100;

fn raw_echo_server(mut s: Stream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut h = [0u8; 4];
        if s.read_exact(&mut h).is_err() {
            return;
        }
        let n = u32::from_be_bytes(h) as usize;
        s.read_exact(&mut buf[..n]).unwrap();
        let mut out = h.to_vec();
        out.extend_from_slice(&buf[..n]);
        s.write_all(&out).unwrap();
    }
}

fn framed_echo_server(s: Stream) {
    let mut c = Connection::new(s);
    let mut buf = Vec::new();
    while c.recv_into(&mut buf, 1 << 20).is_ok() {
        c.send(&buf).unwrap();
    }
}

fn run(addr: &str, framed: bool) -> Duration {
    let l = Listener::bind(&addr.parse::<Address>().unwrap()).unwrap();
    let a = l.local_address().clone();
    let server = std::thread::spawn(move || {
        let s = l.accept().unwrap();
        if framed {
            framed_echo_server(s)
        } else {
            raw_echo_server(s)
        }
    });
    let payload = vec![7u8; PAYLOAD];
    let t0;
    if framed {
        let mut c = Connection::connect(&a, None).unwrap();
        let mut buf = Vec::new();
        t0 = Instant::now();
        for _ in 0..ROUNDS {
            c.send(&payload).unwrap();
            c.recv_into(&mut buf, 1 << 20).unwrap();
        }
    } else {
        let mut s = Stream::connect(&a, None).unwrap();
        let mut frame = (PAYLOAD as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        let mut back = vec![0u8; 4 + PAYLOAD];
        t0 = Instant::now();
        for _ in 0..ROUNDS {
            s.write_all(&frame).unwrap();
            s.read_exact(&mut back).unwrap();
        }
    }
    let el = t0.elapsed() / ROUNDS as u32;
    server.join().ok();
    el
}

fn main() {
    let name = format!("unix:@mpm-echo-{}", std::process::id());
    for (label, addr) in [("tcp", "127.0.0.1:0"), ("unix", name.as_str())] {
        let raw = run(addr, false);
        let framed = run(addr, true);
        println!(
            "{label}: raw {raw:?}/rt, framed {framed:?}/rt, ratio {:.3}",
            framed.as_secs_f64() / raw.as_secs_f64()
        );
    }
}
