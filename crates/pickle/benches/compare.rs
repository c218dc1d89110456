//! Side by side with CPython's C pickler, in one run on one machine:
//! `cargo bench -p mpmanager-pickle --bench compare` prints, for each item
//! of the corpus (see `corpus_gen.py`), CPython's `pickle.loads`/`dumps`
//! time and ours (best of 5 timed loops each, same method on both sides),
//! and the ratio CPython / ours (above 1 means we are faster).
#![allow(missing_docs)] // criterion and example harness items need no docs

use std::time::Instant;

// A small-object allocator on our side too, as CPython has pymalloc. Build
// with `RUSTFLAGS='--cfg mpmanager_bench_system_alloc'` to measure with the
// system allocator instead.
#[cfg(not(mpmanager_bench_system_alloc))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mpmanager_pickle::{decode, encode_into, EncodeOptions};

fn best_ns(mut f: impl FnMut()) -> f64 {
    let mut n: u64 = 1;
    let mut dt;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        dt = t.elapsed().as_nanos() as f64;
        if dt > 20_000_000.0 {
            break;
        }
        n *= 2;
    }
    let mut best = dt / n as f64;
    for _ in 0..4 {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    best
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // special but must not spend minutes here.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let Some(py) = mpmanager_testutil::newest_python() else {
        eprintln!("no CPython found: nothing to compare against");
        return;
    };
    let out =
        String::from_utf8(py.run_ok(include_str!("corpus_gen.py"), &["time"], b"")).expect("utf-8");
    println!(
        "CPython {} (C pickle, protocol 4) vs mpmanager-pickle, best of 5 loops",
        py.label()
    );
    println!(
        "{:<20} {:>9} | {:>11} {:>11} {:>6} | {:>11} {:>11} {:>6}",
        "corpus item", "bytes", "py loads", "decode", "ratio", "py dumps", "encode", "ratio"
    );
    let opts = EncodeOptions::default();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let data: Vec<u8> = (0..f[1].len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&f[1][i..i + 2], 16).unwrap())
            .collect();
        let (py_loads, py_dumps): (f64, f64) = (f[2].parse().unwrap(), f[3].parse().unwrap());
        let dec = best_ns(|| {
            std::hint::black_box(decode(std::hint::black_box(&data)).unwrap());
        });
        let value = decode(&data).unwrap();
        let mut buf = Vec::new();
        let enc = best_ns(|| {
            buf.clear();
            encode_into(std::hint::black_box(&value), &mut buf, &opts).unwrap();
        });
        println!(
            "{:<20} {:>9} | {:>11} {:>11} {:>5.2}x | {:>11} {:>11} {:>5.2}x",
            f[0],
            data.len(),
            fmt_ns(py_loads),
            fmt_ns(dec),
            py_loads / dec,
            fmt_ns(py_dumps),
            fmt_ns(enc),
            py_dumps / enc
        );
    }
}
