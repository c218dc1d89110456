//! Criterion benchmarks of the registry's method-call dispatch
//! (`Registry::call`: ident lookup, exposure check, the method), and of a
//! whole request as the server handles it minus the socket: unpickle the
//! request, dispatch, pickle the reply.
//!
//! `cargo bench -p mpmanager-objects --bench dispatch`
#![allow(missing_docs)] // criterion and example harness items need no docs

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpmanager_objects::{CallContext, Kwargs, Registry, Reply};
use mpmanager_pickle::{decode_with, encode_into, DecodeOptions, EncodeOptions, Value};
use mpmanager_protocol::{Reply as WireReply, Request};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let reg = Registry::with_builtin_types();
    let kw = Kwargs::from_pairs(vec![]);
    let cx = CallContext::new(1);
    let (dict, _) = reg.create("dict", &[], &kw).unwrap();
    let (ns, _) = reg.create("Namespace", &[], &kw).unwrap();
    let (list, _) = reg.create("list", &[], &kw).unwrap();
    reg.call(
        &cx,
        &ns,
        "__setattr__",
        &[Value::str("x"), Value::Int(1)],
        &kw,
    )
    .unwrap();
    reg.call(&cx, &list, "append", &[Value::Int(1)], &kw)
        .unwrap();
    // some other objects, so that the lookup is not in a one-entry map
    for _ in 0..1000 {
        reg.create("list", &[], &kw).unwrap();
    }
    let k = [Value::str("k"), Value::Int(1)];
    c.bench_function("call/dict.__setitem__", |b| {
        b.iter(|| {
            reg.call(&cx, black_box(&dict), "__setitem__", &k, &kw)
                .unwrap()
        })
    });
    let x = [Value::str("x")];
    c.bench_function("call/Namespace.__getattribute__", |b| {
        b.iter(|| {
            reg.call(&cx, black_box(&ns), "__getattribute__", &x, &kw)
                .unwrap()
        })
    });
    let zero = [Value::Int(0)];
    c.bench_function("call/list.__getitem__", |b| {
        b.iter(|| {
            reg.call(&cx, black_box(&list), "__getitem__", &zero, &kw)
                .unwrap()
        })
    });

    // `(ident, '__setitem__', ('k', 1), {})` as CPython pickles it.
    let req = Request {
        ident: Some(dict.clone()),
        method: "__setitem__".into(),
        args: k.to_vec(),
        kwargs: vec![],
    };
    let mut data = Vec::new();
    encode_into(&req.to_value(), &mut data, &EncodeOptions::protocol(4)).unwrap();
    let dopts = DecodeOptions::default();
    let eopts = EncodeOptions::protocol(4);
    let mut out = Vec::new();
    c.bench_function("request/dict.__setitem__ bytes to reply bytes", |b| {
        b.iter(|| {
            let r = Request::from_value(&decode_with(black_box(&data), &dopts).unwrap()).unwrap();
            let kw = Kwargs::from_pairs(r.kwargs);
            let reply = match reg.call(&cx, r.ident.as_deref().unwrap(), &r.method, &r.args, &kw) {
                Ok(Reply::Return(v)) => WireReply::Return(v),
                _ => unreachable!(),
            };
            out.clear();
            encode_into(&reply.to_value(), &mut out, &eopts).unwrap();
            out.len()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
