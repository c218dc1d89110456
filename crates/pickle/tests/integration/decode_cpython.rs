//! Decodes what every installed CPython pickles, at protocols 0–5, and
//! checks the result structurally against values built here.

use std::collections::BTreeSet;

use mpmanager_pickle::hash::py_eq;
use mpmanager_pickle::{decode, Construct, Key, Object, PyStr, Value};
use num_bigint::BigInt;

const CORPUS: &str = r#"
import sys, pickle, struct, datetime, decimal, array
sys.setrecursionlimit(10000)  # 3.8-3.11 pickle 899 nested lists only with more room
import multiprocessing.managers as mm

class Point:
    def __init__(self):
        self.x = 1
        self.y = [2, 'three']

inf = float('inf')
shared_list = [1, 2]
shared_tuple = ('x', 'y')
shared_str = ''.join(['sha', 'red'])
selfl = [1]; selfl.append(selfl)
selfd = {'a': 1}; selfd['self'] = selfd
trec = ([],); trec[0].append(trec)
def nested(n):
    d = []
    for _ in range(n):
        d = [d]
    return d
# 899 levels; CPython 3.12's C recursion limit only allows about 740.
depth = 899
try:
    pickle.dumps(nested(depth), 0)
except RecursionError:
    depth = 700
deep = (depth, nested(depth))
corpus = [
    ('ints', [0, 1, -1, 255, 256, 65535, 65536, 2**31, -2**31, 2**31 - 1, 2**31 + 1,
              -2**31 - 1, -2**31 + 1, 2**63, -2**63, 2**63 - 1, 2**63 + 1, -2**63 - 1,
              -2**63 + 1, 2**64, 2**1000, -2**1000, -255, -256, -65536, True, False, None]),
    ('floats', [0.1, 1e16, 1e-5, inf, -inf, -0.0, 5e-324, 0.0, 1.5, -2.5e300]),
    ('nan', float('nan')),
    ('unicode', ['', 'abc', 'h\xe9llo', '\u20ac', '\U0001f600', '\x00\x01\n\r\x1a\\',
                 'a\\u1234', '\udc80', 'x\ud800y', '\t\x7f\x85\u2028', 'quote\'"', 'long' * 100]),
    ('bytes', [bytes(range(256)), b'', b'abc']),
    ('bytearray', [bytearray(b'\x00\xff'), bytearray()]),
    ('containers', [(), [], {}, (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [[[]]],
                    {'a': [1, {'b': ()}]}, {1: 'x', 'y': 2.5, (1, 2): None, None: b'z'}]),
    ('big_list', list(range(2500))),
    ('big_dict', {str(i): i for i in range(1500)}),
    ('sets', [{1, 'a', (1, 2)}, frozenset({1, 2}), set(), frozenset()]),
    ('big_set', set(range(1500))),
    ('complex_slice', [complex(1, 2), complex(-0.5, inf), slice(1, None, -1), slice(None)]),
    ('selfref_list', selfl),
    ('selfref_dict', selfd),
    ('shared', [shared_list, shared_list, shared_tuple, shared_tuple, shared_str, shared_str]),
    ('tuple_rec', trec),
    ('deep', deep),
    ('datetime', datetime.datetime(2020, 1, 2, 3, 4, 5, 6)),
    ('decimal', decimal.Decimal('1.5')),
    ('array', array.array('i', [1, 2])),
    ('keyerror', KeyError('x')),
    ('point', Point()),
    ('token', mm.Token('list', ('127.0.0.1', 5000), 'abc')),
]
out = sys.stdout.buffer
for name, obj in corpus:
    for proto in range(6):
        data = pickle.dumps(obj, proto)
        nb = name.encode()
        out.write(struct.pack('<I', len(nb)) + nb + bytes([proto]) + struct.pack('<I', len(data)) + data)
out.flush()
"#;

const NAMES: &[&str] = &[
    "ints",
    "floats",
    "nan",
    "unicode",
    "bytes",
    "bytearray",
    "containers",
    "big_list",
    "big_dict",
    "sets",
    "big_set",
    "complex_slice",
    "selfref_list",
    "selfref_dict",
    "shared",
    "tuple_rec",
    "deep",
    "datetime",
    "decimal",
    "array",
    "keyerror",
    "point",
    "token",
];

// ---- helpers -------------------------------------------------------------------

fn i(v: i64) -> Value {
    Value::Int(v)
}

fn big(v: BigInt) -> Value {
    Value::from_bigint(v)
}

fn pow2(n: usize) -> BigInt {
    BigInt::from(1) << n
}

fn s(x: &str) -> Value {
    Value::str(x)
}

fn cps(c: &[u32]) -> Value {
    Value::Str(PyStr::from_code_points(c.iter().copied()).unwrap())
}

fn list(v: Vec<Value>) -> Value {
    Value::list(v)
}

fn tuple(v: Vec<Value>) -> Value {
    Value::tuple(v)
}

fn dict(pairs: Vec<(Value, Value)>) -> Value {
    Value::dict(pairs).unwrap()
}

fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::List(l) => l.read().items.clone(),
        Value::Tuple(t) => t.items.clone(),
        other => panic!("not a sequence: {}", other.type_name()),
    }
}

fn dict_get(v: &Value, k: &str) -> Value {
    match v {
        Value::Dict(d) => d
            .read()
            .get(&Key::str(k))
            .cloned()
            .unwrap_or_else(|| panic!("no key {k}")),
        other => panic!("not a dict: {}", other.type_name()),
    }
}

fn object(v: &Value) -> Object {
    match v {
        Value::Object(o) => o.read().clone(),
        other => panic!("not an object: {}", other.type_name()),
    }
}

/// Structural equality: the same types all the way down (so `True` is not
/// `1` and a tuple is not a list), floats by bits, and Python equality
/// (`hash::py_eq`) for leaves and set/dict membership.
fn check(got: &Value, want: &Value, path: &str) {
    assert_eq!(got.type_name(), want.type_name(), "type differs at {path}");
    match (got, want) {
        (Value::List(_), Value::List(_)) | (Value::Tuple(_), Value::Tuple(_)) => {
            let (g, w) = (items(got), items(want));
            assert_eq!(g.len(), w.len(), "length differs at {path}");
            for (n, (a, b)) in g.iter().zip(&w).enumerate() {
                check(a, b, &format!("{path}[{n}]"));
            }
        }
        (Value::Dict(g), Value::Dict(w)) => {
            let (g, w) = (g.read().items.clone(), w.read().items.clone());
            assert_eq!(g.len(), w.len(), "dict size differs at {path}");
            for (k, wv) in w.iter() {
                let (gk, gv) = g
                    .get_key_value(k)
                    .unwrap_or_else(|| panic!("missing key {k:?} at {path}"));
                assert_eq!(
                    gk.value().type_name(),
                    k.value().type_name(),
                    "key type at {path}"
                );
                check(gv, wv, &format!("{path}[{k:?}]"));
            }
        }
        (Value::Float(a), Value::Float(b)) => {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{a} != {b} at {path}"
            );
        }
        (Value::Complex(a, b), Value::Complex(c, d)) => {
            assert_eq!(
                (a.to_bits(), b.to_bits()),
                (c.to_bits(), d.to_bits()),
                "complex at {path}"
            );
        }
        (Value::Slice(a), Value::Slice(b)) => {
            check(&a.start, &b.start, &format!("{path}.start"));
            check(&a.stop, &b.stop, &format!("{path}.stop"));
            check(&a.step, &b.step, &format!("{path}.step"));
        }
        _ => assert!(
            py_eq(got, want).unwrap(),
            "value differs at {path}: {got:?} != {want:?}"
        ),
    }
}

fn global_is(v: &Value, module: &str, name: &str) {
    match v {
        Value::Global(g) => assert!(g.is(module, name), "global {g:?} is not {module}.{name}"),
        other => panic!("not a global: {}", other.type_name()),
    }
}

// ---- expected values -------------------------------------------------------------

fn expected(name: &str) -> Option<Value> {
    Some(match name {
        "ints" => {
            let mut v: Vec<Value> = [0i64, 1, -1, 255, 256, 65535, 65536]
                .iter()
                .map(|&x| i(x))
                .collect();
            let p31 = 1i64 << 31;
            v.extend([p31, -p31, p31 - 1, p31 + 1, -p31 - 1, -p31 + 1].map(i));
            v.push(big(pow2(63)));
            v.push(i(i64::MIN));
            v.push(i(i64::MAX));
            v.push(big(pow2(63) + 1));
            v.push(big(-pow2(63) - 1));
            v.push(i(i64::MIN + 1));
            v.push(big(pow2(64)));
            v.push(big(pow2(1000)));
            v.push(big(-pow2(1000)));
            v.extend([
                i(-255),
                i(-256),
                i(-65536),
                Value::Bool(true),
                Value::Bool(false),
                Value::None,
            ]);
            list(v)
        }
        "floats" => list(
            [
                0.1,
                1e16,
                1e-5,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -0.0,
                5e-324,
                0.0,
                1.5,
                -2.5e300,
            ]
            .map(Value::Float)
            .to_vec(),
        ),
        "nan" => Value::Float(f64::NAN),
        "unicode" => list(vec![
            s(""),
            s("abc"),
            s("h\u{e9}llo"),
            s("\u{20ac}"),
            s("\u{1F600}"),
            s("\x00\x01\n\r\x1a\\"),
            s("a\\u1234"),
            cps(&[0xDC80]),
            cps(&[0x78, 0xD800, 0x79]),
            s("\t\x7f\u{85}\u{2028}"),
            s("quote'\""),
            s(&"long".repeat(100)),
        ]),
        "bytes" => list(vec![
            Value::bytes(&(0..=255u8).collect::<Vec<_>>()),
            Value::bytes(b""),
            Value::bytes(b"abc"),
        ]),
        "bytearray" => list(vec![
            Value::bytearray(vec![0, 255]),
            Value::bytearray(vec![]),
        ]),
        "containers" => list(vec![
            tuple(vec![]),
            list(vec![]),
            dict(vec![]),
            tuple(vec![i(1)]),
            tuple(vec![i(1), i(2)]),
            tuple(vec![i(1), i(2), i(3)]),
            tuple(vec![i(1), i(2), i(3), i(4)]),
            list(vec![list(vec![list(vec![])])]),
            dict(vec![(
                s("a"),
                list(vec![i(1), dict(vec![(s("b"), tuple(vec![]))])]),
            )]),
            dict(vec![
                (i(1), s("x")),
                (s("y"), Value::Float(2.5)),
                (tuple(vec![i(1), i(2)]), Value::None),
                (Value::None, Value::bytes(b"z")),
            ]),
        ]),
        "big_list" => list((0..2500).map(i).collect()),
        "big_dict" => dict((0..1500).map(|n| (s(&n.to_string()), i(n))).collect()),
        "sets" => list(vec![
            Value::set(vec![i(1), s("a"), tuple(vec![i(1), i(2)])]).unwrap(),
            Value::frozenset(vec![i(1), i(2)]).unwrap(),
            Value::set(vec![]).unwrap(),
            Value::frozenset(vec![]).unwrap(),
        ]),
        "big_set" => Value::set((0..1500).map(i).collect()).unwrap(),
        "complex_slice" => list(vec![
            Value::Complex(1.0, 2.0),
            Value::Complex(-0.5, f64::INFINITY),
            Value::Slice(std::sync::Arc::new(mpmanager_pickle::Slice {
                start: i(1),
                stop: Value::None,
                step: i(-1),
            })),
            Value::Slice(std::sync::Arc::new(mpmanager_pickle::Slice {
                start: Value::None,
                stop: Value::None,
                step: Value::None,
            })),
        ]),
        _ => return None,
    })
}

/// Checks the cases that are not plain data.
fn check_special(name: &str, v: &Value, proto: u8) {
    match name {
        "selfref_list" => {
            let it = items(v);
            assert_eq!(it.len(), 2);
            check(&it[0], &i(1), "selfref_list[0]");
            assert!(it[1].is(v), "list does not contain itself");
        }
        "selfref_dict" => {
            check(&dict_get(v, "a"), &i(1), "selfref_dict['a']");
            assert!(dict_get(v, "self").is(v), "dict does not contain itself");
        }
        "shared" => {
            let it = items(v);
            assert_eq!(it.len(), 6);
            check(&it[0], &list(vec![i(1), i(2)]), "shared[0]");
            check(&it[2], &tuple(vec![s("x"), s("y")]), "shared[2]");
            check(&it[4], &s("shared"), "shared[4]");
            assert!(it[0].is(&it[1]), "shared list lost");
            assert!(it[2].is(&it[3]), "shared tuple lost");
            assert!(it[4].is(&it[5]), "shared str lost");
            assert!(!it[0].is(&it[2]));
        }
        "tuple_rec" => {
            let t = items(v);
            assert!(matches!(v, Value::Tuple(_)));
            assert_eq!(t.len(), 1);
            let l = items(&t[0]);
            assert!(matches!(t[0], Value::List(_)));
            assert_eq!(l.len(), 1);
            assert!(l[0].is(v), "tuple recursion lost");
        }
        "deep" => {
            let it = items(v);
            let depth = it[0].as_i64().expect("depth");
            assert!(depth >= 700);
            let mut cur = it[1].clone();
            for level in 0..depth {
                let it = items(&cur);
                assert!(
                    matches!(cur, Value::List(_)) && it.len() == 1,
                    "level {level}"
                );
                cur = it[0].clone();
            }
            assert!(matches!(cur, Value::List(_)) && items(&cur).is_empty());
        }
        "datetime" => {
            let o = object(v);
            assert_eq!(o.construct, Construct::Reduce);
            global_is(&o.callable, "datetime", "datetime");
            let args = o.args_slice();
            assert_eq!(args.len(), 1);
            // protocols 0-2 write the bytes through _codecs.encode, which
            // must have become native bytes
            check(
                &args[0],
                &Value::bytes(b"\x07\xe4\x01\x02\x03\x04\x05\x00\x00\x06"),
                "datetime arg",
            );
            assert!(o.state.is_none());
        }
        "decimal" => {
            let o = object(v);
            assert_eq!(o.construct, Construct::Reduce);
            global_is(&o.callable, "decimal", "Decimal");
            check(&o.args, &tuple(vec![s("1.5")]), "Decimal args");
        }
        "array" => {
            let o = object(v);
            assert_eq!(o.construct, Construct::Reduce);
            let args = o.args_slice();
            if proto < 3 {
                // array.array('i', [1, 2])
                global_is(&o.callable, "array", "array");
                check(
                    &o.args,
                    &tuple(vec![s("i"), list(vec![i(1), i(2)])]),
                    "array args",
                );
            } else {
                // array._array_reconstructor(array.array, 'i', mformat, raw)
                global_is(&o.callable, "array", "_array_reconstructor");
                assert_eq!(args.len(), 4);
                global_is(&args[0], "array", "array");
                check(&args[1], &s("i"), "typecode");
                assert_eq!(args[2].type_name(), "int");
                check(&args[3], &Value::bytes(&[1, 0, 0, 0, 2, 0, 0, 0]), "raw");
            }
        }
        "keyerror" => {
            let o = object(v);
            assert_eq!(o.construct, Construct::Reduce);
            // written as exceptions.KeyError at protocols 0-2, mapped back
            global_is(&o.callable, "builtins", "KeyError");
            check(&o.args, &tuple(vec![s("x")]), "KeyError args");
            let e = mpmanager_pickle::PyErr::from_value(v).expect("exception");
            assert_eq!(e.ty, mpmanager_pickle::ExcType::KeyError);
        }
        "point" => {
            let o = object(v);
            if proto >= 2 {
                assert_eq!(o.construct, Construct::NewObj);
                global_is(&o.callable, "__main__", "Point");
                assert!(o.args_slice().is_empty());
            } else {
                // copyreg._reconstructor(Point, object, None)
                assert_eq!(o.construct, Construct::Reduce);
                global_is(&o.callable, "copyreg", "_reconstructor");
                let args = o.args_slice();
                global_is(&args[0], "__main__", "Point");
                global_is(&args[1], "builtins", "object");
                assert!(matches!(args[2], Value::None));
            }
            let state = o.state.clone().expect("state");
            check(
                &state,
                &dict(vec![(s("x"), i(1)), (s("y"), list(vec![i(2), s("three")]))]),
                "Point state",
            );
        }
        "token" => {
            let o = object(v);
            if proto >= 2 {
                assert_eq!(o.construct, Construct::NewObj);
                global_is(&o.callable, "multiprocessing.managers", "Token");
                assert!(o.args_slice().is_empty());
            } else {
                global_is(&o.callable, "copyreg", "_reconstructor");
                global_is(&o.args_slice()[0], "multiprocessing.managers", "Token");
            }
            let want = tuple(vec![
                s("list"),
                tuple(vec![s("127.0.0.1"), i(5000)]),
                s("abc"),
            ]);
            check(o.state.as_ref().expect("state"), &want, "Token state");
        }
        other => panic!("no check for {other}"),
    }
}

#[test]
fn decodes_every_cpython_corpus_at_every_protocol() {
    let pythons = mpmanager_testutil::pythons();
    if pythons.is_empty() {
        eprintln!("no CPython found; skipping");
        return;
    }
    for py in &pythons {
        eprintln!("decoding the corpus pickled by CPython {}", py.label());
        let out = py.run_ok(CORPUS, &[], b"");
        let mut seen = BTreeSet::new();
        let mut pos = 0;
        let u32_at = |p: usize| u32::from_le_bytes(out[p..p + 4].try_into().unwrap()) as usize;
        while pos < out.len() {
            let nl = u32_at(pos);
            let name = std::str::from_utf8(&out[pos + 4..pos + 4 + nl])
                .unwrap()
                .to_string();
            pos += 4 + nl;
            let proto = out[pos];
            let dl = u32_at(pos + 1);
            let data = &out[pos + 5..pos + 5 + dl];
            pos += 5 + dl;
            let v = decode(data)
                .unwrap_or_else(|e| panic!("CPython {} {name} protocol {proto}: {e}", py.label()));
            let ctx = format!("CPython {} {name} protocol {proto}", py.label());
            match expected(&name) {
                Some(want) => check(&v, &want, &ctx),
                None => {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        check_special(&name, &v, proto)
                    }));
                    if r.is_err() {
                        panic!("{ctx}: check failed");
                    }
                }
            }
            seen.insert((name, proto));
        }
        assert_eq!(
            seen.len(),
            NAMES.len() * 6,
            "CPython {}: missing cases",
            py.label()
        );
        for n in NAMES {
            assert!(seen.contains(&(n.to_string(), 0)), "{n} missing");
        }
    }
}

#[test]
fn decodes_manager_messages_from_cpython() {
    // A request and a reply as a manager sends them (ForkingPickler, default
    // protocol), including a proxy, a dict view and a slice.
    let code = r#"
import sys
from multiprocessing.reduction import ForkingPickler
from multiprocessing.managers import Token, ListProxy, RebuildProxy
tok = Token('list', ('127.0.0.1', 50011), '7f1c82a25580')
req = ('7f00', '__getitem__', (slice(None, None, None),), {})
view = {'a': 1, 'b': 2}.keys()
msg = [req, ('#RETURN', view), RebuildProxy, tok]
sys.stdout.buffer.write(bytes(ForkingPickler.dumps(msg)))
"#;
    for py in mpmanager_testutil::pythons() {
        let out = py.run_ok(code, &[], b"");
        let v = decode(&out).unwrap_or_else(|e| panic!("CPython {}: {e}", py.label()));
        let it = items(&v);
        let req = items(&it[0]);
        check(&req[0], &s("7f00"), "ident");
        let args = items(&req[2]);
        assert!(matches!(args[0], Value::Slice(_)), "slice arg");
        check(&req[3], &dict(vec![]), "kwds");
        let ret = items(&it[1]);
        check(&ret[1], &list(vec![s("a"), s("b")]), "dict view as list");
        global_is(&it[2], "multiprocessing.managers", "RebuildProxy");
        let tok = object(&it[3]);
        global_is(&tok.callable, "multiprocessing.managers", "Token");
    }
}
