//! Criterion benchmarks of the codec on a realistic corpus: small manager
//! messages (a request, `#RETURN` replies, a `#PROXY` reply with a Token)
//! and large containers, all pickled by CPython at protocol 4.
//!
//! `cargo bench -p mpmanager-pickle --bench codec`. For the side-by-side
//! figure against CPython's C pickler, run `--bench compare`.
#![allow(missing_docs)] // criterion and example harness items need no docs

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mpmanager_pickle::{decode, encode_into, EncodeOptions};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let py = mpmanager_testutil::newest_python().expect("the benchmark corpus is made by CPython");
    let out = py.run_ok(include_str!("corpus_gen.py"), &[], b"");
    String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let (name, hex) = l.split_once('\t').expect("name\\thex");
            let data = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (name.to_string(), data)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let opts = EncodeOptions::default();
    for (name, data) in corpus() {
        let mut g = c.benchmark_group(&name);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function("decode", |b| b.iter(|| decode(black_box(&data)).unwrap()));
        let value = decode(&data).unwrap();
        let mut buf = Vec::new();
        g.bench_function("encode", |b| {
            b.iter(|| {
                buf.clear();
                encode_into(black_box(&value), &mut buf, &opts).unwrap();
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
