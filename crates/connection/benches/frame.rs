//! Criterion benchmarks of the framing layer: one frame written with
//! `Connection::send` and read back with `Connection::recv_into`, over a unix
//! socketpair, in one thread (so the figure is the two syscalls plus the
//! framing, without a thread wakeup).
//!
//! `cargo bench -p mpmanager-connection --bench frame`
#![allow(missing_docs)] // criterion and example harness items need no docs

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mpmanager_connection::{Connection, Stream};

fn bench(c: &mut Criterion) {
    let (a, b) = Stream::pair().expect("socketpair");
    let (mut tx, mut rx) = (Connection::new(a), Connection::new(b));
    let mut buf = Vec::new();
    // 54 bytes: a pickled `(ident, 'append', (1,), {})` request; 25 bytes:
    // `('#RETURN', None)`; 4 KiB: a mid-size value (fits in the socket
    // buffer, so one thread can write then read it).
    for (name, len) in [
        ("reply_25B", 25usize),
        ("request_54B", 54),
        ("value_4KiB", 4096),
    ] {
        let payload = vec![0x5au8; len];
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function("send+recv", |bch| {
            bch.iter(|| {
                tx.send(black_box(&payload)).unwrap();
                rx.recv_into(&mut buf, 1 << 20).unwrap();
                black_box(buf.len())
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
