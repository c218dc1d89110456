//! Interop: what the encoder writes must load in every installed CPython
//! (C `pickle.loads` and pure-Python `pickle._loads`) to the right object,
//! and for plain values be byte-identical to CPython's own `pickle.dumps`.

use std::sync::Arc;

use mpmanager_pickle::encode::{encode_with, EncodeOptions};
use mpmanager_pickle::value::{Construct, Key, Object, PyStr, Slice};
use mpmanager_pickle::{Global, PyErr, Value};
use num_bigint::BigInt;

/// One value to encode and how CPython should see it.
struct Case {
    name: &'static str,
    value: Value,
    /// A Python expression building the expected object ("" if none).
    src: &'static str,
    /// Check `type(x) is type(src) and x == src`.
    eq: bool,
    /// Check our bytes equal CPython's `pickle.dumps(src, proto)` (protocols 3–5).
    exact: bool,
    /// An extra Python boolean expression over `x` ("" if none).
    check: &'static str,
}

fn case(name: &'static str, value: Value, src: &'static str, exact: bool) -> Case {
    Case {
        name,
        value,
        src,
        eq: true,
        exact,
        check: "",
    }
}

fn checked(
    name: &'static str,
    value: Value,
    src: &'static str,
    exact: bool,
    check: &'static str,
) -> Case {
    Case {
        name,
        value,
        src,
        eq: false,
        exact,
        check,
    }
}

fn s(x: &str) -> Value {
    Value::str(x)
}
fn i(x: i64) -> Value {
    Value::Int(x)
}
fn big(x: &str) -> Value {
    Value::from_bigint(x.parse::<BigInt>().unwrap())
}
fn t(items: Vec<Value>) -> Value {
    Value::tuple(items)
}
fn l(items: Vec<Value>) -> Value {
    Value::list(items)
}
fn d(pairs: Vec<(Value, Value)>) -> Value {
    Value::dict(pairs).unwrap()
}

fn corpus() -> Vec<Case> {
    let pow2 = |e: u32| BigInt::from(2u8).pow(e);
    let ints = l(vec![
        i(0),
        i(1),
        i(-1),
        i(255),
        i(256),
        i(65535),
        i(65536),
        i(1 << 31),
        i(-(1 << 31)),
        i((1 << 31) - 1),
        i(-(1 << 31) - 1),
        Value::from_bigint(pow2(63)),
        i(i64::MIN),
        i(i64::MAX),
        Value::from_bigint(-pow2(63) - 1),
        big("18446744073709551616"),
        Value::from_bigint(pow2(1000)),
        Value::from_bigint(-pow2(1000)),
        Value::from_bigint(pow2(2100)),
        i(-128),
        i(-129),
        i(-32768),
        i(-32769),
    ]);
    let floats = l(vec![
        Value::None,
        Value::Bool(true),
        Value::Bool(false),
        Value::Float(0.1),
        Value::Float(1e16),
        Value::Float(1e-5),
        Value::Float(f64::INFINITY),
        Value::Float(f64::NEG_INFINITY),
        Value::Float(5e-324),
        Value::Float(f64::MAX),
    ]);
    let unicode = l(vec![
        s(""),
        s("h\u{e9}llo"),
        s("\u{1F600} astral \u{10FFFF}"),
        s("\0\x07\n\r\t\u{7f}\u{80}\u{200b}\u{feff}"),
        s(&"\u{20ac}".repeat(100)),
    ]);
    let surrogate = Value::Str(PyStr::from_code_points([0x61, 0xD800, 0x62, 0xDFFF]).unwrap());
    let all_bytes: Vec<u8> = (0..=255).collect();

    // Shared and recursive values.
    let rec_list = l(vec![]);
    if let Value::List(c) = &rec_list {
        c.write().push(rec_list.clone());
    }
    let rec_dict = d(vec![]);
    if let Value::Dict(c) = &rec_dict {
        c.write().insert(Key::str("me"), rec_dict.clone());
    }
    // l = []; t = (l,); l.append(t); with the list held only by the tuple.
    let rec_tuple = t(vec![l(vec![])]);
    if let Value::Tuple(tt) = &rec_tuple {
        if let Value::List(c) = &tt[0] {
            c.write().push(rec_tuple.clone());
        }
    }
    let a = l(vec![i(1)]);
    let shared = l(vec![a.clone(), a.clone(), t(vec![a])]);
    let st = s("shared string");
    let shared_str = l(vec![st.clone(), st]);
    let tp = t(vec![i(1), s("a")]);
    let shared_tuple = l(vec![tp.clone(), tp]);
    // p = functools.partial(print, L) with L = [p]: a cycle through an
    // object's constructor arguments, broken by the list.
    let cyc = Value::object(Object::reduce(
        Value::global("functools", "partial"),
        vec![],
    ));
    if let Value::Object(c) = &cyc {
        let lst = l(vec![cyc.clone()]);
        c.write().args = t(vec![Value::global("builtins", "print"), lst]);
    }

    let datetime = Value::object(Object::reduce(
        Value::global("datetime", "datetime"),
        vec![Value::bytes(b"\x07\xe4\x01\x02\x03\x04\x05\x00\x00\x06")],
    ));
    let token = Value::object(Object::new_obj(
        Global::new("multiprocessing.managers", "Token"),
        vec![],
        Some(t(vec![
            s("list"),
            t(vec![s("127.0.0.1"), i(50011)]),
            s("7f1c82a25580"),
        ])),
    ));
    let mut od = Object::reduce(Value::global("collections", "OrderedDict"), vec![]);
    od.dict_items = vec![(s("a"), i(1)), (s("b"), l(vec![]))];
    let od = Value::object(od);
    let td = Value::object(Object {
        callable: Value::global("datetime", "timedelta"),
        args: t(vec![]),
        kwargs: Some(d(vec![(s("days"), i(1)), (s("seconds"), i(5))])),
        construct: Construct::NewObjEx,
        state: None,
        list_items: vec![],
        dict_items: vec![],
    });
    let ns = Value::object(Object::new_obj(
        Global::new("types", "SimpleNamespace"),
        vec![],
        Some(d(vec![(s("x"), i(1)), (s("y"), l(vec![s("z")]))])),
    ));
    let mut deep = l(vec![]);
    for _ in 1..300 {
        deep = l(vec![deep]);
    }

    vec![
        case("ints", ints, "[0, 1, -1, 255, 256, 65535, 65536, 2**31, -2**31, 2**31-1, -2**31-1, 2**63, -2**63, 2**63-1, -2**63-1, 2**64, 2**1000, -2**1000, 2**2100, -128, -129, -32768, -32769]", true),
        case("floats", floats, "[None, True, False, 0.1, 1e16, 1e-05, float('inf'), -float('inf'), 5e-324, 1.7976931348623157e308]", true),
        checked("nan", Value::Float(f64::NAN), "float('nan')", true, "type(x) is float and math.isnan(x)"),
        checked("negzero", Value::Float(-0.0), "", false, "x == 0 and math.copysign(1, x) == -1.0"),
        case("complex", Value::Complex(1.5, -2.0), "1.5-2j", true),
        case("unicode", unicode, "['', 'h\\xe9llo', '\\U0001f600 astral \\U0010ffff', '\\x00\\x07\\n\\r\\t\\x7f\\x80\\u200b\\ufeff', '\\u20ac' * 100]", true),
        case("surrogate", surrogate, "'a\\ud800b\\udfff'", true),
        case("bytes", l(vec![Value::bytes(&all_bytes), Value::bytes(b""), Value::bytes(&[0xab; 300])]), "[bytes(range(256)), b'', b'\\xab' * 300]", true),
        case("bytearray", l(vec![Value::bytearray(b"ab\0\xff".to_vec()), Value::bytearray(vec![])]), "[bytearray(b'ab\\x00\\xff'), bytearray()]", true),
        case("empties", t(vec![l(vec![]), d(vec![]), t(vec![]), Value::set(vec![]).unwrap(), Value::frozenset(vec![]).unwrap()]), "([], {}, (), set(), frozenset())", true),
        case("nested", l(vec![l(vec![i(1), l(vec![i(2), t(vec![i(3), i(4)])])]), d(vec![(s("k"), d(vec![(s("n"), Value::None)])), (t(vec![i(1), i(2)]), t(vec![i(1), i(2), i(3), i(4), i(5)]))])]), "[[1, [2, (3, 4)]], {'k': {'n': None}, (1, 2): (1, 2, 3, 4, 5)}]", true),
        case("set", Value::set((0..5).map(i).collect()).unwrap(), "set(range(5))", true),
        case("frozenset", Value::frozenset((0..5).map(i).collect()).unwrap(), "frozenset(range(5))", true),
        case("strset", Value::set(vec![s("a"), s("b"), s("c")]).unwrap(), "{'a', 'b', 'c'}", false),
        case("bigset", Value::set((0..2500).map(i).collect()).unwrap(), "set(range(2500))", true),
        case("biglist", l((0..2500).map(i).collect()), "list(range(2500))", true),
        // (2500: for a multiple of 1000 the C pickler adds an empty MARK SETITEMS.)
        case("bigdict", d((0..2500).map(|k| (i(k), s(&k.to_string()))).collect()), "{k: str(k) for k in range(2500)}", true),
        case("manystrs", l((0..40000).map(|k| s(&format!("s{k}"))).collect()), "['s%d' % k for k in range(40000)]", true),
        case("largepayloads", l(vec![i(1), Value::bytes(&all_bytes.repeat(400)), s(&"x".repeat(70000)), i(2)]), "[1, bytes(range(256)) * 400, 'x' * 70000, 2]", true),
        case("largebytearray", Value::bytearray(vec![0; 200_000]), "bytearray(200000)", true),
        case("slice", Value::Slice(Arc::new(Slice { start: i(1), stop: Value::None, step: i(-1) })), "slice(1, None, -1)", true),
        checked("global", Value::global("collections", "OrderedDict"), "collections.OrderedDict", true, "x is collections.OrderedDict"),
        checked("dotted_global", Value::global("collections", "OrderedDict.fromkeys"), "", false, "x == collections.OrderedDict.fromkeys"),
        checked("rec_list", rec_list, "(lambda l: (l.append(l), l)[1])([])", true, "type(x) is list and len(x) == 1 and x[0] is x"),
        checked("rec_dict", rec_dict, "(lambda d: (d.__setitem__('me', d), d)[1])({})", true, "type(x) is dict and list(x) == ['me'] and x['me'] is x"),
        checked("rec_tuple", rec_tuple, "(lambda l: (l.append((l,)), l[0])[1])([])", true, "type(x) is tuple and len(x) == 1 and x[0][0] is x"),
        checked("shared", shared, "(lambda a: [a, a, (a,)])([1])", true, "x == [[1], [1], ([1],)] and x[0] is x[1] is x[2][0]"),
        checked("shared_str", shared_str, "", false, "x == ['shared string'] * 2 and x[0] is x[1]"),
        checked("shared_tuple", shared_tuple, "(lambda t: [t, t])((1, 'a'))", true, "x == [(1, 'a')] * 2 and x[0] is x[1]"),
        checked("cycle_through_args", cyc, "", false, "type(x) is functools.partial and x.func is print and x.args[0][0] is x"),
        case("datetime", datetime, "datetime.datetime(2020, 1, 2, 3, 4, 5, 6)", true),
        checked("token", token, "multiprocessing.managers.Token('list', ('127.0.0.1', 50011), '7f1c82a25580')", true, "repr(x) == \"Token(typeid='list', address=('127.0.0.1', 50011), id='7f1c82a25580')\""),
        checked("keyerror", PyErr::key_error(s("zz")).to_value(), "KeyError('zz')", true, "type(x) is KeyError and x.args == ('zz',)"),
        checked("error_reply", t(vec![s("#ERROR"), PyErr::index_error("list index out of range").to_value()]), "('#ERROR', IndexError('list index out of range'))", true, "x[0] == '#ERROR' and type(x[1]) is IndexError and str(x[1]) == 'list index out of range'"),
        case("ordereddict", od, "collections.OrderedDict([('a', 1), ('b', [])])", true),
        case("newobj_ex", td, "datetime.timedelta(days=1, seconds=5)", false),
        case("build_state", ns, "types.SimpleNamespace(x=1, y=['z'])", false),
        case("deep", deep, "functools.reduce(lambda a, _: [a], range(299), [])", true),
    ]
}

const SCRIPT: &str = r#"
import sys, struct, pickle, math, datetime, collections, functools, types
import multiprocessing.managers
data = sys.stdin.buffer.read()
pos = 0
def field():
    global pos
    (n,) = struct.unpack_from('<I', data, pos)
    pos += 4
    b = data[pos:pos + n]
    pos += n
    return b
ns = dict(math=math, datetime=datetime, collections=collections, functools=functools,
          types=types, multiprocessing=multiprocessing)
while pos < len(data):
    name = field().decode(); src = field().decode(); check = field().decode()
    flags = field().decode(); proto = int(field()); payload = field()
    problems = []
    try:
        loaded = [pickle.loads(payload), pickle._loads(payload)]
        if repr(loaded[0]) != repr(loaded[1]):
            problems.append('C and Python loaders differ: %r / %r' % (loaded[0], loaded[1]))
        for x in loaded:
            if 'q' in flags:
                want = eval(src, ns)
                if type(x) is not type(want) or x != want:
                    problems.append('got %.200r, want %.200r' % (x, want))
            if check and not eval(check, dict(ns, x=x)):
                problems.append('check failed on %.200r' % (x,))
        if 'e' in flags and proto >= 3:
            theirs = pickle.dumps(eval(src, ns), proto)
            if theirs != payload:
                i = next(k for k in range(min(len(payload), len(theirs)) + 1) if payload[k:k+1] != theirs[k:k+1]); problems.append('bytes differ from CPython at %d (len %d vs %d): ours %r theirs %r' % (i, len(payload), len(theirs), payload[max(0,i-20):i+40], theirs[max(0,i-20):i+40]))
    except Exception as e:
        problems.append('%s: %s' % (type(e).__name__, e))
    print(name, proto, 'OK' if not problems else 'FAIL ' + ' | '.join(problems))
"#;

fn push_field(buf: &mut Vec<u8>, f: &[u8]) {
    buf.extend_from_slice(&(f.len() as u32).to_le_bytes());
    buf.extend_from_slice(f);
}

fn push_record(buf: &mut Vec<u8>, c: &Case, proto: u8, payload: &[u8]) {
    push_field(buf, c.name.as_bytes());
    push_field(buf, c.src.as_bytes());
    push_field(buf, c.check.as_bytes());
    let flags = format!(
        "{}{}",
        if c.eq { "q" } else { "" },
        if c.exact { "e" } else { "" }
    );
    push_field(buf, flags.as_bytes());
    push_field(buf, proto.to_string().as_bytes());
    push_field(buf, payload);
}

#[test]
fn cpython_loads_what_we_encode() {
    let pythons = mpmanager_testutil::pythons();
    if pythons.is_empty() {
        eprintln!("no CPython found; skipping");
        return;
    }
    let cases = corpus();
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for proto in 2..=5u8 {
        for c in &cases {
            let data = encode_with(&c.value, &EncodeOptions::protocol(proto))
                .unwrap_or_else(|e| panic!("{} at protocol {proto}: {e}", c.name));
            push_record(&mut input, c, proto, &data);
            expected.push(format!("{} {proto} OK", c.name));
        }
        // Unframed output loads too.
        let mut o = EncodeOptions::protocol(proto);
        o.framing = false;
        let c = &cases.iter().find(|c| c.name == "manystrs").unwrap();
        let data = encode_with(&c.value, &o).unwrap();
        let unframed = Case {
            name: "manystrs_unframed",
            value: Value::None,
            src: c.src,
            eq: true,
            exact: false,
            check: "",
        };
        push_record(&mut input, &unframed, proto, &data);
        expected.push(format!("manystrs_unframed {proto} OK"));
    }
    // Canaries: the checker must notice a wrong value and wrong bytes.
    let wrong = case("canary_value", Value::None, "[1]", false);
    push_record(
        &mut input,
        &wrong,
        4,
        &encode_with(&l(vec![i(2)]), &EncodeOptions::protocol(4)).unwrap(),
    );
    let wrong = checked("canary_bytes", Value::None, "[1]", true, "");
    push_record(
        &mut input,
        &wrong,
        4,
        &encode_with(&l(vec![i(1)]), &EncodeOptions::protocol(2)).unwrap(),
    );

    for py in &pythons {
        eprintln!("checking with CPython {}", py.label());
        let out = String::from_utf8(py.run_ok(SCRIPT, &[], &input)).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.len(),
            expected.len() + 2,
            "python {}:\n{out}",
            py.label()
        );
        let failures: Vec<String> = lines[..expected.len()]
            .iter()
            .zip(&expected)
            .filter(|(got, want)| got != want)
            .map(|(got, _)| got.to_string())
            .collect();
        assert!(
            failures.is_empty(),
            "python {}:\n{}",
            py.label(),
            failures.join("\n")
        );
        assert!(
            lines[expected.len()].starts_with("canary_value 4 FAIL got [2]"),
            "{}",
            lines[expected.len()]
        );
        assert!(
            lines[expected.len() + 1].starts_with("canary_bytes 4 FAIL bytes differ"),
            "{}",
            lines[expected.len() + 1]
        );
    }
}
