//! Ordering and `list.sort()` compared with every installed CPython.

use mpmanager_pickle::ord::{py_compare, sort, CompareOp};
use mpmanager_pickle::repr::repr;
use mpmanager_pickle::Value;
use mpmanager_testutil::pythons;
use num_bigint::BigInt;

fn i(v: i64) -> Value {
    Value::Int(v)
}
fn f(v: f64) -> Value {
    Value::Float(v)
}
fn s(v: &str) -> Value {
    Value::str(v)
}
fn b(v: &[u8]) -> Value {
    Value::bytes(v)
}
fn t(v: Vec<Value>) -> Value {
    Value::tuple(v)
}
fn l(v: Vec<Value>) -> Value {
    Value::list(v)
}
fn big(base: i64, exp: u32, add: i64) -> Value {
    Value::from_bigint(BigInt::from(base).pow(exp) + add)
}
fn set(v: Vec<Value>) -> Value {
    Value::set(v).unwrap()
}

const SORT_DRIVER: &str = r#"
import sys
inf = float('inf'); nan = float('nan')
for case in sys.stdin.read().split('\n\x00\n'):
    if not case:
        continue
    rev, lit = case[0] == 'r', case[1:]
    x = eval(lit)
    try:
        x.sort(reverse=rev)
        r = 'OK ' + repr(x)
    except Exception as e:
        r = 'ERR %s: %s' % (type(e).__name__, e)
    print(r.encode('utf-8', 'surrogatepass').hex())
"#;

fn unhex(s: &str) -> String {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}

fn sort_cases() -> Vec<(String, Vec<Value>)> {
    let nums = || {
        vec![
            i(3),
            f(1.5),
            Value::Bool(true),
            i(2),
            i(-1),
            f(2.0),
            Value::Bool(false),
            i(0),
            f(0.0),
            f(-0.0),
            big(10, 20, 0),
            f(1e20),
            big(-10, 31, 0),
            big(2, 53, 1),
            f(2f64.powi(53)),
            i(1),
            f(1.0),
            f(f64::INFINITY),
            f(f64::NEG_INFINITY),
        ]
    };
    let mut c: Vec<(String, Vec<Value>)> = vec![
        (
            "[3, 1.5, True, 2, -1, 2.0, False, 0, 0.0, -0.0, 10**20, 1e20, (-10)**31, 2**53+1, 2.0**53, 1, 1.0, inf, -inf]".into(),
            nums(),
        ),
        ("[1, 1.0, True]".into(), vec![i(1), f(1.0), Value::Bool(true)]),
        ("[True, 1.0, 1, 0, False, 0.0]".into(), vec![Value::Bool(true), f(1.0), i(1), i(0), Value::Bool(false), f(0.0)]),
        (
            "['b', 'a', '\\U0001f600', '\\uffff', 'ab', '', '\\xe9', 'B', '\\ud800']".into(),
            vec![
                s("b"),
                s("a"),
                s("\u{1f600}"),
                s("\u{ffff}"),
                s("ab"),
                s(""),
                s("\u{e9}"),
                s("B"),
                Value::Str(mpmanager_pickle::PyStr::from_code_points([0xD800]).unwrap()),
            ],
        ),
        ("[b'b', b'a', b'', b'ab', b'\\xff']".into(), vec![b(b"b"), b(b"a"), b(b""), b(b"ab"), b(b"\xff")]),
        (
            "[b'b', bytearray(b'a'), b'a', bytearray(b'')]".into(),
            vec![b(b"b"), Value::bytearray(b"a".to_vec()), b(b"a"), Value::bytearray(vec![])],
        ),
        (
            "[(1, 'b'), (1, 'a'), (0,), (1,), (1, 'a', 0), (), (1.0, 'a'), (True, 'a')]".into(),
            vec![
                t(vec![i(1), s("b")]),
                t(vec![i(1), s("a")]),
                t(vec![i(0)]),
                t(vec![i(1)]),
                t(vec![i(1), s("a"), i(0)]),
                t(vec![]),
                t(vec![f(1.0), s("a")]),
                t(vec![Value::Bool(true), s("a")]),
            ],
        ),
        (
            "[[2], [1, 2], [1], [], [1, [0]], [1, [-1]], [1.0]]".into(),
            vec![
                l(vec![i(2)]),
                l(vec![i(1), i(2)]),
                l(vec![i(1)]),
                l(vec![]),
                l(vec![i(1), l(vec![i(0)])]),
                l(vec![i(1), l(vec![i(-1)])]),
                l(vec![f(1.0)]),
            ],
        ),
        ("[nan, 1, 0]".into(), vec![f(f64::NAN), i(1), i(0)]),
        ("[3, nan, 1, 2, nan, 0]".into(), vec![i(3), f(f64::NAN), i(1), i(2), f(f64::NAN), i(0)]),
        (
            "[{1, 2}, {1}, {3}, set(), {1, 2, 3}]".into(),
            vec![set(vec![i(1), i(2)]), set(vec![i(1)]), set(vec![i(3)]), set(vec![]), set(vec![i(1), i(2), i(3)])],
        ),
        ("[]".into(), vec![]),
        ("['only']".into(), vec![s("only")]),
        // Errors: exact TypeError messages.
        ("[1, 'a']".into(), vec![i(1), s("a")]),
        ("['a', 1]".into(), vec![s("a"), i(1)]),
        ("[None, None]".into(), vec![Value::None, Value::None]),
        ("[{}, {}]".into(), vec![Value::dict(vec![]).unwrap(), Value::dict(vec![]).unwrap()]),
        ("[1j, 2j]".into(), vec![Value::Complex(0.0, 1.0), Value::Complex(0.0, 2.0)]),
        ("[1, 2j]".into(), vec![i(1), Value::Complex(0.0, 2.0)]),
        ("[1, 2, 'x', 3]".into(), vec![i(1), i(2), s("x"), i(3)]),
        ("[5, 4, 3, None]".into(), vec![i(5), i(4), i(3), Value::None]),
        ("[(1, 'a'), (1, 2)]".into(), vec![t(vec![i(1), s("a")]), t(vec![i(1), i(2)])]),
        ("[[1], ['a']]".into(), vec![l(vec![i(1)]), l(vec![s("a")])]),
        ("[(1,), [1]]".into(), vec![t(vec![i(1)]), l(vec![i(1)])]),
        ("[b'a', 'a']".into(), vec![b(b"a"), s("a")]),
        ("[True, None]".into(), vec![Value::Bool(true), Value::None]),
    ];
    // Long lists: runs, merges and the fast paths.
    let mut st = 99u64;
    let mut next = || {
        st = st
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (st >> 33) as i64
    };
    let mut lit = Vec::new();
    let mut vals = Vec::new();
    for k in 0..300 {
        let n = next() % 50;
        if k % 3 == 0 {
            lit.push(format!("{n}.0"));
            vals.push(f(n as f64));
        } else if k % 7 == 0 {
            lit.push(format!("{}.5", n));
            vals.push(f(n as f64 + 0.5));
        } else {
            lit.push(n.to_string());
            vals.push(i(n));
        }
    }
    c.push((format!("[{}]", lit.join(", ")), vals));
    let mut lit = Vec::new();
    let mut vals = Vec::new();
    for k in 0..500 {
        let (a, z) = (next() % 10, k);
        lit.push(format!("({a}, {z})"));
        vals.push(t(vec![i(a), i(z)]));
    }
    // A descending run and an ascending run first.
    for k in (0..80).rev() {
        lit.insert(0, format!("({k}, -1)"));
        vals.insert(0, t(vec![i(k), i(-1)]));
    }
    c.push((format!("[{}]", lit.join(", ")), vals));
    // Equal tuple keys (stability through merges).
    let mut lit = Vec::new();
    let mut vals = Vec::new();
    for k in 0..400 {
        let a = next() % 4;
        if k % 2 == 0 {
            lit.push(format!("[{a}, {k}.0]"));
            vals.push(l(vec![i(a), f(k as f64)]));
        } else {
            lit.push(format!("[{a}.0, {k}]"));
            vals.push(l(vec![f(a as f64), i(k)]));
        }
    }
    c.push((format!("[{}]", lit.join(", ")), vals));
    let words: Vec<String> = (0..200).map(|_| format!("w{}", next() % 60)).collect();
    c.push((
        format!(
            "[{}]",
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        words.iter().map(|w| s(w)).collect(),
    ));
    c
}

#[test]
fn sort_matches_cpython() {
    let cases = sort_cases();
    let mut input = String::new();
    for reverse in [false, true] {
        for (lit, _) in &cases {
            input.push(if reverse { 'r' } else { 'f' });
            input.push_str(lit);
            input.push_str("\n\0\n");
        }
    }
    let pys = pythons();
    if pys.is_empty() {
        return;
    }
    let mut failures = Vec::new();
    for py in &pys {
        let out = String::from_utf8(py.run_ok(SORT_DRIVER, &[], input.as_bytes())).unwrap();
        let want: Vec<String> = out.lines().map(unhex).collect();
        assert_eq!(want.len(), cases.len() * 2);
        for (k, w) in want.iter().enumerate() {
            let reverse = k >= cases.len();
            let (lit, vals) = &cases[k % cases.len()];
            let mut items = vals.clone();
            let before = repr(&Value::list(items.clone()));
            let got = match sort(&mut items, reverse) {
                Ok(()) => format!("OK {}", repr(&Value::list(items))),
                Err(e) => {
                    let after = repr(&Value::list(items));
                    assert_eq!(after, before, "a failed sort keeps the list");
                    format!("ERR {e}")
                }
            };
            // Inconsistent orderings (NaN, sets) depend on the exact
            // comparisons made; 3.13 changed timsort's run detection, we
            // follow 3.8-3.12.
            let partial = lit.contains("nan") || lit.contains("set()");
            if partial && py.version >= (3, 13) {
                continue;
            }
            if &got != w {
                failures.push(format!(
                    "[{}] {lit} reverse={reverse}\n  cpython: {w}\n  ours:    {got}",
                    py.label()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn comparisons_match_cpython() {
    let nan = f64::NAN;
    let pairs: Vec<(&str, Value, Value)> = vec![
        ("1, 1.0", i(1), f(1.0)),
        ("2**53+1, 2.0**53", big(2, 53, 1), f(2f64.powi(53))),
        ("2.0**53, 2**53+1", f(2f64.powi(53)), big(2, 53, 1)),
        ("10**400, inf", big(10, 400, 0), f(f64::INFINITY)),
        ("-10**400, -inf", big(-10, 401, 0), f(f64::NEG_INFINITY)),
        ("nan, 1", f(nan), i(1)),
        ("1, nan", i(1), f(nan)),
        ("True, 0.5", Value::Bool(true), f(0.5)),
        ("'a', 'b'", s("a"), s("b")),
        ("'\\uffff', '\\U00010000'", s("\u{ffff}"), s("\u{10000}")),
        ("'a', 1", s("a"), i(1)),
        ("1, 'a'", i(1), s("a")),
        ("(1, 2), (1, 3)", t(vec![i(1), i(2)]), t(vec![i(1), i(3)])),
        ("(1, 2), (1, 2)", t(vec![i(1), i(2)]), t(vec![i(1), i(2)])),
        ("(1,), (1, 0)", t(vec![i(1)]), t(vec![i(1), i(0)])),
        ("(1,), [1]", t(vec![i(1)]), l(vec![i(1)])),
        (
            "[1, 'a'], [1, 2]",
            l(vec![i(1), s("a")]),
            l(vec![i(1), i(2)]),
        ),
        (
            "[1, 'a'], [1.0, 'a']",
            l(vec![i(1), s("a")]),
            l(vec![f(1.0), s("a")]),
        ),
        ("{1}, {1, 2}", set(vec![i(1)]), set(vec![i(1), i(2)])),
        (
            "{1, 2}, {1, 2}",
            set(vec![i(1), i(2)]),
            set(vec![i(2), i(1)]),
        ),
        (
            "frozenset({3}), {1, 2}",
            Value::frozenset(vec![i(3)]).unwrap(),
            set(vec![i(1), i(2)]),
        ),
        (
            "b'a', bytearray(b'b')",
            b(b"a"),
            Value::bytearray(b"b".to_vec()),
        ),
        (
            "bytearray(b'ab'), b'a'",
            Value::bytearray(b"ab".to_vec()),
            b(b"a"),
        ),
        ("None, None", Value::None, Value::None),
        ("1j, 1", Value::Complex(0.0, 1.0), i(1)),
        (
            "{}, {}",
            Value::dict(vec![]).unwrap(),
            Value::dict(vec![]).unwrap(),
        ),
        ("{1}, [1]", set(vec![i(1)]), l(vec![i(1)])),
        ("b'a', 'a'", b(b"a"), s("a")),
    ];
    let mut code = String::from(
        "inf = float('inf'); nan = float('nan')\nimport operator as o\nfor a, b in [\n",
    );
    for (lit, _, _) in &pairs {
        code.push_str(&format!("    ({lit}),\n"));
    }
    code.push_str(
        "]:\n    out = []\n    for op in (o.lt, o.le, o.gt, o.ge):\n        try:\n            out.append(str(op(a, b)))\n        except TypeError as e:\n            out.append('TypeError: %s' % e)\n    print('|'.join(out))\n",
    );
    for py in pythons() {
        let out = String::from_utf8(py.run_ok(&code, &[], b"")).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), pairs.len());
        for ((lit, a, b), line) in pairs.iter().zip(lines) {
            let ours: Vec<String> = [CompareOp::Lt, CompareOp::Le, CompareOp::Gt, CompareOp::Ge]
                .iter()
                .map(|op| match py_compare(a, b, *op) {
                    Ok(true) => "True".to_string(),
                    Ok(false) => "False".to_string(),
                    Err(e) => e.to_string(),
                })
                .collect();
            assert_eq!(ours.join("|"), line, "[{}] {lit}", py.label());
        }
    }
}

#[test]
fn deep_comparison_is_a_recursion_error() {
    let mut a = l(vec![]);
    let mut b = l(vec![i(1)]);
    for _ in 0..5000 {
        a = l(vec![a]);
        b = l(vec![b]);
    }
    let e = py_compare(&a, &b, CompareOp::Lt).unwrap_err();
    assert_eq!(e.ty, mpmanager_pickle::ExcType::RecursionError);
}
