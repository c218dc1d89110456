//! Criterion benchmarks of the per-request message work of the server:
//! unpickling a request as CPython's proxies send it and turning it into a
//! [`Request`], and building and pickling the reply.
//!
//! `cargo bench -p mpmanager-protocol --bench messages`
#![allow(missing_docs)] // criterion and example harness items need no docs

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpmanager_pickle::{decode_with, encode_into, DecodeOptions, EncodeOptions, Value};
use mpmanager_protocol::{Reply, Request};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `ForkingPickler.dumps(('7f3a2b1c0d00', 'append', (1,), {}))`, CPython 3.11.
const APPEND: &str =
    "8004952200000000000000288c0c376633613262316330643030948c06617070656e64944b0185947d9474942e";
/// `ForkingPickler.dumps(('7f3a2b1c0d00', '__getattribute__', ('x',), {}))`.
const GETATTR: &str = "8004952e00000000000000288c0c376633613262316330643030948c105f5f6765746174747269627574655f5f948c01789485947d9474942e";

fn bench(c: &mut Criterion) {
    let opts = DecodeOptions::default();
    for (name, hex) in [
        ("request_append", APPEND),
        ("request_getattribute", GETATTR),
    ] {
        let data = unhex(hex);
        c.bench_function(&format!("{name}/decode"), |b| {
            b.iter(|| Request::from_value(&decode_with(black_box(&data), &opts).unwrap()).unwrap())
        });
    }
    let enc = EncodeOptions::protocol(4);
    let mut out = Vec::new();
    for (name, reply) in [
        ("reply_none", Reply::none()),
        ("reply_int", Reply::Return(Value::Int(1))),
    ] {
        c.bench_function(&format!("{name}/encode"), |b| {
            b.iter(|| {
                out.clear();
                encode_into(&black_box(&reply).to_value(), &mut out, &enc).unwrap();
                out.len()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
