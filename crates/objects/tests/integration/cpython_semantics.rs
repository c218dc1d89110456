//! Differential tests: every scenario (a constructor call, then a sequence of
//! method calls) runs on a real CPython object in the newest installed
//! interpreter and on our referent; each result's `repr` (or exception type
//! and args) must be identical.

use crate::common;

use std::sync::Arc;

use common::{parse_call, Parser};
use mpmanager_objects::types::{
    ArrayObject, DictObject, ListObject, NamespaceObject, SetObject, ValueObject,
};
use mpmanager_objects::{CallContext, CallError, Kwargs, Outcome, Referent};
use mpmanager_pickle::repr::try_repr;
use mpmanager_pickle::{PyErr, Value};

const PY: &str = r#"
import sys, json, array, warnings
warnings.simplefilter('ignore')
import multiprocessing.managers as m
ns = {'list': list, 'dict': dict, 'set': set, 'Namespace': m.Namespace, 'Value': m.Value,
      'Array': m.Array, 'array': array.array, 'frozenset': frozenset, 'slice': slice,
      'bytearray': bytearray}
def norm(r):
    t = type(r).__name__
    if t in ('dict_keys', 'dict_values', 'dict_items'): return repr(list(r))
    if t.endswith('iterator'): return 'iter:' + repr(list(r))
    if isinstance(r, (set, frozenset)): return 'set:' + repr(sorted(map(repr, r)))
    if r is NotImplemented: return 'NotImplemented'
    return repr(r)
def exc(e): return 'EXC ' + type(e).__name__ + ' ' + repr(e.args)
out = []
for ctor, calls in json.load(sys.stdin):
    try:
        obj = eval(ctor, ns)
        out.append('create ' + norm(obj))
    except Exception as e:
        out.append('create ' + exc(e)); continue
    for c in calls:
        try: out.append(norm(eval('obj.' + c, dict(ns, obj=obj))))
        except Exception as e: out.append(exc(e))
    out.append('final ' + norm(obj))
sys.stdout.write(json.dumps(out))
"#;

fn exc(e: &PyErr) -> String {
    format!(
        "EXC {} {}",
        e.ty.name(),
        try_repr(&Value::tuple(e.args.clone())).unwrap()
    )
}

fn norm(v: &Value) -> String {
    match v {
        Value::Set(_) | Value::FrozenSet(_) => {
            let items = mpmanager_objects::args::iterate(v).unwrap();
            let mut reprs: Vec<String> = items.iter().map(|x| try_repr(x).unwrap()).collect();
            reprs.sort();
            let l = Value::list(reprs.iter().map(|s| Value::str(s)).collect());
            format!("set:{}", try_repr(&l).unwrap())
        }
        Value::Global(g) if g.is("builtins", "NotImplemented") => "NotImplemented".into(),
        Value::Object(o) => {
            let o = o.read_recursive();
            let g = o.global().cloned();
            match g {
                Some(g) if g.is("builtins", "reversed") => {
                    let items = mpmanager_objects::args::iterate(&o.args_slice()[0]).unwrap();
                    let upto = match &o.state {
                        Some(Value::Int(i)) => *i as usize + 1,
                        _ => 0,
                    };
                    let rev: Vec<Value> = items[..upto].iter().rev().cloned().collect();
                    format!("iter:{}", try_repr(&Value::list(rev)).unwrap())
                }
                Some(g) if g.is("types", "GenericAlias") => {
                    // The client unpickles this as set[x].
                    let a = o.args_slice();
                    let Value::Global(origin) = &a[0] else {
                        panic!()
                    };
                    format!("{}[{}]", origin.name, try_repr(&a[1]).unwrap())
                }
                Some(g) if g.is("builtins", "iter") => {
                    format!("iter:{}", try_repr(&o.args_slice()[0]).unwrap())
                }
                Some(g) if g.is("array", "array") => {
                    let a = o.args_slice();
                    ArrayObject::array(&a[0], &a[1]).unwrap().repr().unwrap()
                }
                _ => {
                    drop(o);
                    try_repr(v).unwrap()
                }
            }
        }
        _ => try_repr(v).unwrap(),
    }
}

fn construct(name: &str, a: &[Value], k: &Kwargs) -> Result<Arc<dyn Referent>, PyErr> {
    Ok(match name {
        "list" => Arc::new(ListObject::construct(a, k)?),
        "dict" => Arc::new(DictObject::construct(a, k)?),
        "set" => Arc::new(SetObject::construct(a, k)?),
        "Namespace" => Arc::new(NamespaceObject::construct(a, k)?),
        "Value" => Arc::new(ValueObject::construct(a, k)?),
        "Array" => Arc::new(ArrayObject::construct(a, k)?),
        other => panic!("unknown constructor {other}"),
    })
}

fn final_repr(obj: &Arc<dyn Referent>) -> String {
    if obj.class_name() == "set" {
        norm(&obj.get_value().unwrap())
    } else {
        obj.repr().unwrap()
    }
}

fn ours(scenarios: &[(&str, Vec<&str>)]) -> Vec<String> {
    let cx = CallContext::new(1);
    let mut out = Vec::new();
    for (ctor, calls) in scenarios {
        let (name, a, k) = parse_call(ctor);
        let obj = match construct(&name, &a, &k) {
            Ok(o) => o,
            Err(e) => {
                out.push(format!("create {}", exc(&e)));
                continue;
            }
        };
        out.push(format!("create {}", final_repr(&obj)));
        for c in calls {
            let mut p = Parser::new(c);
            let (m, a, k) = p.call();
            out.push(match obj.call(&cx, &m, &a, &k) {
                Ok(Outcome::Return(v)) => norm(&v),
                Ok(_) => "NEWOBJECT".into(),
                Err(CallError::Python(e)) => exc(&e),
                Err(e) => format!("TRACEBACK {e}"),
            });
        }
        out.push(format!("final {}", final_repr(&obj)));
    }
    out
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Parses the JSON list of strings the Python side prints.
fn parse_json_strings(s: &str) -> Vec<String> {
    let mut p = Parser::new(s);
    let Value::List(l) = p.value() else {
        panic!("not a list: {s}")
    };
    let items = l.read().items.clone();
    items
        .iter()
        .map(|v| match v {
            Value::Str(s) => s.to_string_lossy().into_owned(),
            _ => panic!(),
        })
        .collect()
}

fn check(scenarios: Vec<(&str, Vec<&str>)>) {
    let Some(py) = mpmanager_testutil::newest_python() else {
        return;
    };
    let input = format!(
        "[{}]",
        scenarios
            .iter()
            .map(|(c, calls)| format!(
                "[{}, [{}]]",
                json_str(c),
                calls
                    .iter()
                    .map(|x| json_str(x))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // json.dumps escapes non-ASCII as \uXXXX, which our parser reads.
    let expected =
        parse_json_strings(&String::from_utf8(py.run_ok(PY, &[], input.as_bytes())).unwrap());
    let got = ours(&scenarios);
    // Label every line with its scenario and call for readable failures.
    let mut labels = Vec::new();
    for (ctor, calls) in &scenarios {
        labels.push(ctor.to_string());
        for c in calls {
            labels.push(format!("{ctor} . {c}"));
        }
        labels.push(format!("{ctor} (final)"));
    }
    let mut bad = Vec::new();
    let (mut i, mut j) = (0, 0);
    // Scenarios whose constructor failed have only one line on each side
    // (if both failed); compare in lockstep and resync on 'create'.
    while i < expected.len() && j < got.len() {
        if expected[i] != got[j] {
            bad.push(format!(
                "  {}\n    CPython {}: {}\n    ours:       {}",
                labels.get(j).map(String::as_str).unwrap_or("?"),
                py.label(),
                expected[i],
                got[j]
            ));
        }
        i += 1;
        j += 1;
    }
    assert_eq!(
        expected.len(),
        got.len(),
        "line counts differ; mismatches:\n{}",
        bad.join("\n")
    );
    assert!(
        bad.is_empty(),
        "{} mismatches with CPython:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn list_semantics_match_cpython() {
    check(vec![
        // The seeds' example: squares, slices.
        (
            "list([0, 1, 4, 9, 16, 25, 36, 49, 64, 81])",
            vec![
                "__getitem__(slice(2, 5))",
                "__getitem__(slice(None, None, -3))",
                "__getitem__(-1)",
                "__getitem__(10)",
                "__getitem__(-11)",
                "__getitem__('a')",
                "__getitem__(1.0)",
                "__getitem__(True)",
                "__getitem__(2**70)",
                "__getitem__(slice(-100, 100, 4))",
                "__getitem__(slice(None, None, 0))",
                "__getitem__(slice('a', 2))",
                "__getitem__(slice(2**80, -2**80, -2**80))",
                "__getitem__()",
                "__getitem__(1, 2)",
                "__len__()",
                "__len__(1)",
                "__contains__(16)",
                "__contains__(16.0)",
                "__contains__('16')",
                "__contains__()",
                "count(1)",
                "count(True)",
                "count()",
                "index(49)",
                "index(49, 8)",
                "index(49, -3, -1)",
                "index(5)",
                "index('a')",
                "index(4, 0, 2)",
                "index(4, 0, 3)",
                "index()",
                "index(1, 'a')",
                "index(0, -2**80, 2**80)",
            ],
        ),
        (
            "list([1, 2, 3, 4, 5, 6])",
            vec![
                "__setitem__(0, 'x')",
                "__setitem__(-1, 'y')",
                "__setitem__(6, 1)",
                "__setitem__('a', 1)",
                "__setitem__(slice(1, 3), [7, 8, 9])",
                "__setitem__(slice(None, None, 2), [0, 0, 0])",
                "__setitem__(slice(None, None, 2), [1, 2])",
                "__setitem__(slice(0, 1), 5)",
                "__setitem__(slice(0, 2), 'ab')",
                "__setitem__(slice(0, 6, 3), (1, 2))",
                "__setitem__(slice(5, 1, -1), [1, 2, 3, 4])",
                "__setitem__(slice(None, None, -1), b'abcdefg')",
                "__setitem__(1)",
                "__delitem__(0)",
                "__delitem__(-1)",
                "__delitem__(40)",
                "__delitem__(slice(None, None, 2))",
                "__delitem__(slice(10, 20))",
                "__delitem__(slice(None, None, -1))",
                "__delitem__('x')",
            ],
        ),
        (
            "list((3, 1, 2))",
            vec![
                "append(4)",
                "append()",
                "append(1, 2)",
                "append(x=1)",
                "extend([5, 6])",
                "extend('ab')",
                "extend({'k': 1, 'j': 2})",
                "extend(b'\\x01\\x02')",
                "extend((7,))",
                "extend(frozenset([9]))",
                "extend(3)",
                "extend(None)",
                "extend()",
                "insert(0, 'first')",
                "insert(-2, 'neg')",
                "insert(100, 'end')",
                "insert(-100, 'start')",
                "insert(1)",
                "insert('a', 1)",
                "insert(2**80, 1)",
                "pop()",
                "pop(0)",
                "pop(-2)",
                "pop(100)",
                "pop('a')",
                "pop(1, 2)",
                "pop(x=1)",
                "remove('k')",
                "remove('zz')",
                "remove()",
                "reverse()",
                "reverse(1)",
                "copy()",
                "__reversed__()",
                "__reversed__(1)",
            ],
        ),
        (
            "list([1, 2])",
            vec![
                "__add__([3])",
                "__add__((3,))",
                "__add__('a')",
                "__add__()",
                "__mul__(3)",
                "__mul__(0)",
                "__mul__(-1)",
                "__mul__('a')",
                "__mul__(2.0)",
                "__mul__(True)",
                "__mul__(2**70)",
                "__rmul__(2)",
                "__imul__(2)",
                "__imul__('x')",
                "__imul__(2**70)",
                "__imul__(1)",
                "__imul__(0)",
                "__imul__(3)",
                "__len__(x=1)",
            ],
        ),
        (
            "list([3, 1, 2, 1.5, True, -7])",
            vec![
                "sort()",
                "sort(reverse=True)",
                "sort(reverse=0)",
                "sort(1)",
                "sort(foo=1)",
                "sort(key=None)",
                "clear()",
                "clear(1)",
                "pop()",
                "__reversed__()",
            ],
        ),
        (
            "list(['b', 'a', 'C'])",
            vec![
                "sort()",
                "sort(reverse=True)",
                "index('a')",
                "__contains__('C')",
            ],
        ),
        (
            "list([3, 'a', 1])",
            vec!["sort()", "index('x')", "remove(1.0)"],
        ),
        (
            "list([(1, 'b'), (1, 'a'), (0, 'z')])",
            vec!["sort()", "index((1, 'b'))", "count((0, 'z'))"],
        ),
        (
            "list([[1], [1, 2]])",
            vec!["__contains__([1, 2])", "index([1, 2])", "remove([1])"],
        ),
        (
            "list()",
            vec![
                "pop()",
                "__reversed__()",
                "index(1)",
                "remove(1)",
                "sort()",
                "__getitem__(0)",
            ],
        ),
        ("list('abc')", vec!["__len__()"]),
        ("list({'a': 1, 'b': 2})", vec![]),
        ("list(5)", vec![]),
        ("list([1], [2])", vec![]),
        ("list(x=1)", vec![]),
        ("list(b'hi')", vec![]),
    ]);
}

#[test]
fn dict_semantics_match_cpython() {
    check(vec![
        (
            "dict(ferrets=2)",
            vec![
                "__setitem__('a', 1)",
                "__setitem__(65, 'A')",
                "__setitem__((1, 2), [3])",
                "__setitem__([1], 2)",
                "__getitem__('a')",
                "__getitem__('zz')",
                "__getitem__(65.0)",
                "__getitem__([])",
                "__getitem__()",
                "__contains__('a')",
                "__contains__([])",
                "__len__()",
                "get('a')",
                "get('zz')",
                "get('zz', 5)",
                "get()",
                "get(1, 2, 3)",
                "get(1, x=2)",
                "keys()",
                "values()",
                "items()",
                "keys(1)",
                "copy()",
                "setdefault('a', 9)",
                "setdefault('new')",
                "setdefault('new2', [1])",
                "setdefault()",
                "pop('a')",
                "pop('a')",
                "pop('a', 'dflt')",
                "pop()",
                "pop(1, 2, 3)",
                "__delitem__('ferrets')",
                "__delitem__('ferrets')",
                "__delitem__([])",
                "popitem()",
                "popitem(1)",
                "__reversed__()",
            ],
        ),
        (
            "dict([(1, 2), (3, 4)])",
            vec![
                "update({5: 6})",
                "update([(7, 8)])",
                "update(x=1)",
                "update({1: 'one'}, y=2)",
                "update([[9, 10]], z=3)",
                "update(['ab'])",
                "update(1)",
                "update([1])",
                "update([(1, 2, 3)])",
                "update({}, {})",
                "update([(11, 12), 5])",
                "fromkeys([1, 2])",
                "fromkeys('ab', 0)",
                "fromkeys()",
                "fromkeys([1], 0, 1)",
                "__or__({1: 'x', 99: 'y'})",
                "__or__(1)",
                "__ror__({1: 'x', 98: 'z'})",
                "__ror__([1])",
                "__ior__({100: 1})",
                "__ior__([(101, 2)])",
                "__ior__(1)",
                "__ior__()",
            ],
        ),
        (
            "dict()",
            vec![
                "popitem()",
                "pop([])",
                "pop([], 1)",
                "pop(1)",
                "clear()",
                "__reversed__()",
            ],
        ),
        (
            "dict({'a': 1}, b=2)",
            vec!["popitem()", "popitem()", "popitem()", "clear()"],
        ),
        ("dict({1: 1}, {2: 2})", vec![]),
        ("dict([1])", vec![]),
        ("dict([(1, 2, 3)])", vec![]),
        ("dict(1)", vec![]),
        ("dict('ab')", vec![]),
        ("dict(['ab', (1, 2)])", vec![]),
    ]);
}

#[test]
fn namespace_value_array_semantics_match_cpython() {
    check(vec![
        // The seeds' example: Namespace(x=10, y='hello'), '_z' hidden.
        (
            "Namespace(x=10, y='hello', _z=12.3)",
            vec![
                "__getattribute__('x')",
                "__getattribute__('y')",
                "__getattribute__('nope')",
                "__getattribute__(1)",
                "__getattribute__()",
                "__setattr__('job', 'Builder')",
                "__setattr__('name', 'Bob')",
                "__setattr__('a b', [1, (2,)])",
                "__setattr__(1, 2)",
                "__delattr__('job')",
                "__delattr__('job')",
                "__delattr__(5)",
                "__getattribute__('__dict__')",
            ],
        ),
        ("Namespace()", vec!["__setattr__('_hidden', 1)"]),
        ("Namespace(1)", vec![]),
        (
            "Value('i', 3)",
            vec![
                "get()",
                "set(7)",
                "get()",
                "set(value='s')",
                "get(1)",
                "set()",
                "set(1, 2)",
            ],
        ),
        ("Value('i', 'text')", vec!["get()"]),
        ("Value('d', 1.5, lock=False)", vec!["get()"]),
        ("Value(typecode='u', value='x')", vec![]),
        ("Value('i')", vec![]),
        ("Value('i', 1, 2, 3)", vec![]),
        ("Value('i', 1, foo=2)", vec![]),
        ("Value('i', 1, typecode='d')", vec![]),
        (
            "Array('i', [0, 1])",
            vec![
                "__len__()",
                "__getitem__(0)",
                "__getitem__(-1)",
                "__getitem__(2)",
                "__getitem__('a')",
                "__getitem__(1.0)",
                "__getitem__(slice(None))",
                "__getitem__(slice(None, None, -1))",
                "__getitem__(2**70)",
                "__setitem__(0, 5)",
                "__setitem__(5, 1)",
                "__setitem__(5, 'x')",
                "__setitem__(0, 'x')",
                "__setitem__(0, 1.5)",
                "__setitem__(0, 2**31)",
                "__setitem__(0, -2147483649)",
                "__setitem__(0, -2**31)",
                "__setitem__(0, True)",
                "__setitem__('a', 1)",
                "__setitem__(slice(0, 1), [1])",
                "__setitem__(slice(0, 1), array('i', [7, 8, 9]))",
                "__setitem__(slice(0, 1), array('d', [7]))",
                "__setitem__(slice(None, None, 2), array('i', [1]))",
                "__setitem__(slice(None, None, 2), array('i', [4, 5]))",
                "__len__(1)",
            ],
        ),
        (
            "Array('d', [1.0, 2])",
            vec![
                "__getitem__(1)",
                "__setitem__(0, 'x')",
                "__setitem__(0, 2**1100)",
                "__setitem__(0, 7)",
            ],
        ),
        (
            "Array('f', [0.1, 1e300])",
            vec!["__getitem__(0)", "__getitem__(slice(0, 1))"],
        ),
        (
            "Array('b', [-128, 127])",
            vec![
                "__setitem__(0, 128)",
                "__setitem__(0, -129)",
                "__setitem__(0, 'x')",
            ],
        ),
        (
            "Array('B', [0, 255])",
            vec!["__setitem__(0, 256)", "__setitem__(0, -1)"],
        ),
        (
            "Array('h', [1])",
            vec!["__setitem__(0, 70000)", "__setitem__(0, -70000)"],
        ),
        (
            "Array('H', [1])",
            vec!["__setitem__(0, 70000)", "__setitem__(0, -1)"],
        ),
        (
            "Array('I', [4294967295])",
            vec!["__setitem__(0, 2**32)", "__setitem__(0, -1)"],
        ),
        (
            "Array('l', [-9223372036854775808])",
            vec![
                "__setitem__(0, 2**63)",
                "__setitem__(0, -9223372036854775809)",
            ],
        ),
        (
            "Array('L', [18446744073709551615])",
            vec![
                "__getitem__(0)",
                "__setitem__(0, 2**64)",
                "__setitem__(0, -1)",
            ],
        ),
        (
            "Array('q', [1])",
            vec![
                "__setitem__(0, 2**63)",
                "__setitem__(0, -9223372036854775809)",
            ],
        ),
        (
            "Array('Q', [1])",
            vec![
                "__setitem__(0, 2**64)",
                "__setitem__(0, -1)",
                "__setitem__(0, 2**63)",
            ],
        ),
        (
            "Array('u', 'ab')",
            vec![
                "__getitem__(0)",
                "__setitem__(0, 'z')",
                "__setitem__(0, 'zz')",
                "__setitem__(0, 1)",
            ],
        ),
        ("Array('w', 'x\\u00e9')", vec!["__getitem__(1)"]),
        ("Array('i', [])", vec![]),
        ("Array('d', [])", vec![]),
        ("Array('i', b'abcd')", vec![]),
        ("Array('i', b'abc')", vec![]),
        ("Array('i', 'ab')", vec![]),
        ("Array('z', [1])", vec![]),
        ("Array(1, [1])", vec![]),
        ("Array('ii', [1])", vec![]),
        ("Array('i', 5)", vec![]),
        ("Array('i', [1.5])", vec![]),
        ("Array('b', [200])", vec![]),
        ("Array('i')", vec![]),
        ("Array('i', [1], lock=False)", vec![]),
        ("Array('u', [1])", vec![]),
        ("Array('d', array('i', [1, 2]))", vec![]),
        ("Array('i', array('u', 'a'))", vec![]),
    ]);
}

#[test]
fn set_semantics_match_cpython() {
    check(vec![
        (
            "set([1, 2, 3])",
            vec![
                "__contains__(1)",
                "__contains__(1.0)",
                "__contains__([])",
                "__contains__(set([1]))",
                "__len__()",
                "__and__({2, 3, 4})",
                "__and__([2])",
                "__or__({9})",
                "__or__(frozenset([8]))",
                "__xor__({1, 7})",
                "__sub__({1})",
                "__rsub__({1, 2, 10})",
                "__rand__({1})",
                "__ror__({0})",
                "__rxor__({3})",
                "__le__({1, 2, 3, 4})",
                "__lt__({1, 2, 3})",
                "__ge__({1})",
                "__gt__({1, 2, 3})",
                "__le__([1])",
                "issubset([1, 2, 3, 4])",
                "issuperset((1,))",
                "isdisjoint('ab')",
                "issubset(1)",
                "isdisjoint()",
                "union([5], (6,))",
                "union()",
                "intersection([1, 2], {2})",
                "difference([1], [2])",
                "symmetric_difference([3, 4])",
                "union(1)",
                "copy()",
                "add(4)",
                "add([1])",
                "add()",
                "discard(4)",
                "discard(99)",
                "discard([])",
                "remove(1)",
                "remove(1)",
                "remove([])",
                "__iand__({2, 3, 5})",
                "__ior__({6})",
                "__ixor__({2, 7})",
                "__isub__({7})",
                "__ior__([1])",
                "update([10], (11,))",
                "intersection_update([3, 6, 10, 11])",
                "difference_update([11])",
                "symmetric_difference_update([3, 12])",
                "__iter__()",
                "__class_getitem__(1)",
                "copy(1)",
                "add(x=1)",
            ],
        ),
        ("set()", vec!["pop()", "remove('a')", "clear()", "update()"]),
        ("set('aa')", vec!["pop()", "pop()"]),
        ("set([[1]])", vec![]),
        ("set(1)", vec![]),
    ]);
}
