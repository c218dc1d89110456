//! Pickled proxies, the proxy walk, the type table and traceback texts.

use mpmanager_pickle::hash::py_eq;
use mpmanager_pickle::{ExcType, Global, Object, PyErr, Value};
use mpmanager_protocol::registry::{builtin_typeids, lookup};
use mpmanager_protocol::traceback::{
    exception_line, for_error, format_chain, not_exposed, remote_error_str, unknown_ident,
    unknown_typeid, unrecognized_operation, Frame, TbEntry,
};
use mpmanager_protocol::{find_proxies, MessageError, ProxyRef, PyAddress, Token};

fn s(x: &str) -> Value {
    Value::str(x)
}
fn t(items: Vec<Value>) -> Value {
    Value::tuple(items)
}
fn d(pairs: Vec<(&str, Value)>) -> Value {
    Value::dict(pairs.into_iter().map(|(k, v)| (s(k), v)).collect()).unwrap()
}
#[track_caller]
fn assert_py_eq(a: &Value, b: &Value) {
    assert!(py_eq(a, b).unwrap(), "values differ");
}

fn token(id: &str) -> Token {
    Token::new("list", PyAddress::tcp("127.0.0.1", 50011), id)
}

fn rebuild(func: Value, token: Value, serializer: Value, kwds: Value) -> Value {
    Value::object(Object::reduce(
        Value::global("multiprocessing.managers", "RebuildProxy"),
        vec![func, token, serializer, kwds],
    ))
}

// ----------------------------------------------------------------- proxies

#[test]
fn list_proxy_wire_shape() {
    // §3.9: RebuildProxy(ListProxy, Token('list', addr, id), 'pickle', {})
    let expected = rebuild(
        Value::global("multiprocessing.managers", "ListProxy"),
        token("7f1c82a25580").to_value(),
        s("pickle"),
        d(vec![]),
    );
    let p = ProxyRef::class_proxy("ListProxy", token("7f1c82a25580"));
    assert_py_eq(&p.to_value(), &expected);
    let back = ProxyRef::from_value(&expected).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.serializer, "pickle");
    assert!(back.dropped_kwds.is_empty());
    // Shape details: REDUCE of a global, 4 args, callable globals.
    let Value::Object(o) = p.to_value() else {
        panic!()
    };
    let o = o.read();
    assert_eq!(o.construct, mpmanager_pickle::Construct::Reduce);
    assert!(o
        .global()
        .unwrap()
        .is("multiprocessing.managers", "RebuildProxy"));
    assert_eq!(o.args_slice().len(), 4);
    assert!(
        matches!(&o.args_slice()[0], Value::Global(g) if g.is("multiprocessing.managers", "ListProxy"))
    );
}

#[test]
fn auto_proxy_wire_shape() {
    let names = [
        "empty",
        "full",
        "get",
        "get_nowait",
        "join",
        "put",
        "put_nowait",
        "qsize",
        "task_done",
    ];
    let tok = Token::new("Queue", PyAddress::tcp("127.0.0.1", 50011), "7f00");
    let expected = rebuild(
        Value::global("multiprocessing.managers", "AutoProxy"),
        tok.to_value(),
        s("pickle"),
        d(vec![("exposed", t(names.iter().map(|n| s(n)).collect()))]),
    );
    let p = ProxyRef::auto(tok, names.map(String::from).to_vec());
    assert_py_eq(&p.to_value(), &expected);
    let back = ProxyRef::from_value(&expected).unwrap();
    assert!(back.is_auto());
    assert_eq!(back.class_name(), "AutoProxy");
    assert_eq!(back, p);
}

#[test]
fn authkey_incref_and_manager_owned_are_dropped() {
    let authkey = Value::object(Object::reduce(
        Value::global("multiprocessing.process", "AuthenticationString"),
        vec![Value::bytes(b"secret")],
    ));
    let v = rebuild(
        Value::global("multiprocessing.managers", "AutoProxy"),
        token("1").to_value(),
        s("pickle"),
        d(vec![
            ("authkey", authkey),
            ("exposed", t(vec![s("get")])),
            ("incref", Value::Bool(false)),
            ("manager_owned", Value::Bool(true)),
        ]),
    );
    let p = ProxyRef::from_value(&v).unwrap();
    assert_eq!(p.exposed, Some(vec!["get".to_string()]));
    assert_eq!(p.dropped_kwds, ["authkey", "incref", "manager_owned"]);
    let again = p.to_value();
    assert_py_eq(
        &again,
        &rebuild(
            Value::global("multiprocessing.managers", "AutoProxy"),
            token("1").to_value(),
            s("pickle"),
            d(vec![("exposed", t(vec![s("get")]))]),
        ),
    );
    // A class proxy re-emits {} even if kwds carried an `exposed`.
    let v = rebuild(
        Value::global("multiprocessing.managers", "DictProxy"),
        token("2").to_value(),
        s("pickle"),
        d(vec![
            ("exposed", t(vec![s("get")])),
            ("authkey", Value::bytes(b"k")),
        ]),
    );
    let p = ProxyRef::from_value(&v).unwrap();
    assert_eq!(p.exposed, None);
    assert_eq!(p.dropped_kwds, ["exposed", "authkey"]);
    let Value::Object(o) = p.to_value() else {
        panic!()
    };
    assert_py_eq(&o.read().args_slice()[3], &d(vec![]));
    // A user proxy class from another module is kept as is.
    let v = rebuild(
        Value::global("mymod", "MyProxy"),
        token("3").to_value(),
        s("xmlrpclib"),
        d(vec![]),
    );
    let p = ProxyRef::from_value(&v).unwrap();
    assert_eq!(p.func, Global::new("mymod", "MyProxy"));
    assert_eq!(p.serializer, "xmlrpclib");
    assert_py_eq(&p.to_value(), &v);
}

#[test]
fn malformed_proxies() {
    let bad = |v: Value| matches!(ProxyRef::from_value(&v), Err(MessageError::BadProxy { .. }));
    let good_token = token("1").to_value();
    assert!(bad(Value::Int(1)));
    assert!(bad(Value::object(Object::reduce(
        Value::global("multiprocessing.managers", "Rebuild"),
        vec![]
    ))));
    assert!(bad(Value::object(Object::reduce(
        Value::global("multiprocessing.managers", "RebuildProxy"),
        vec![Value::global("m", "P"), good_token.clone(), s("pickle")],
    ))));
    assert!(bad(rebuild(
        s("ListProxy"),
        good_token.clone(),
        s("pickle"),
        d(vec![])
    )));
    let func = || Value::global("multiprocessing.managers", "ListProxy");
    assert!(matches!(
        ProxyRef::from_value(&rebuild(func(), s("tok"), s("pickle"), d(vec![]))),
        Err(MessageError::BadToken { .. })
    ));
    assert!(matches!(
        ProxyRef::from_value(&rebuild(func(), good_token.clone(), Value::None, d(vec![]))),
        Err(MessageError::WrongType {
            field: "proxy serializer",
            ..
        })
    ));
    assert!(matches!(
        ProxyRef::from_value(&rebuild(func(), good_token.clone(), s("pickle"), t(vec![]))),
        Err(MessageError::WrongType {
            field: "proxy kwds",
            ..
        })
    ));
    assert!(matches!(
        ProxyRef::from_value(&rebuild(
            Value::global("multiprocessing.managers", "AutoProxy"),
            good_token,
            s("pickle"),
            d(vec![("exposed", Value::Int(3))])
        )),
        Err(MessageError::WrongType {
            field: "proxy exposed",
            ..
        })
    ));
}

// -------------------------------------------------------------- proxy walk

#[test]
fn walk_finds_nested_proxies_in_order() {
    let p = |id: &str| ProxyRef::class_proxy("ListProxy", token(id));
    // An opaque object holding proxies in its state, list items and dict items.
    let mut obj = Object::new_obj(
        Global::new("mymod", "Holder"),
        vec![],
        Some(d(vec![("x", p("o1").to_value())])),
    );
    obj.list_items.push(p("o2").to_value());
    obj.dict_items.push((s("k"), p("o3").to_value()));
    let root = Value::list(vec![
        Value::Int(0),
        t(vec![p("t1").to_value()]),
        d(vec![("a", Value::list(vec![p("d1").to_value()]))]),
        Value::dict(vec![(p("key").to_value(), Value::None)]).unwrap(),
        Value::set(vec![p("set").to_value()]).unwrap(),
        Value::object(obj),
    ]);
    let ids: Vec<String> = find_proxies(&root)
        .into_iter()
        .map(|p| p.token.id)
        .collect();
    assert_eq!(ids, ["t1", "d1", "key", "set", "o1", "o2", "o3"]);
    // A bare proxy is found; scalars hold none.
    assert_eq!(find_proxies(&p("r").to_value()), vec![p("r")]);
    assert!(find_proxies(&Value::Int(1)).is_empty());
    assert!(find_proxies(&token("x").to_value()).is_empty());
}

#[test]
fn walk_reports_a_shared_proxy_object_once_and_distinct_ones_each() {
    let shared = ProxyRef::class_proxy("ListProxy", token("a")).to_value();
    let other_same_token = ProxyRef::class_proxy("ListProxy", token("a")).to_value();
    let root = t(vec![
        shared.clone(),
        Value::list(vec![shared]),
        other_same_token,
    ]);
    assert_eq!(find_proxies(&root).len(), 2);
}

#[test]
fn walk_terminates_on_cycles() {
    let proxy = ProxyRef::class_proxy("ListProxy", token("cyc")).to_value();
    let l = Value::list(vec![proxy]);
    if let Value::List(inner) = &l {
        inner.write().push(l.clone());
    }
    assert_eq!(find_proxies(&l).len(), 1);
    // Two dicts holding each other.
    let a = d(vec![]);
    let b = d(vec![("a", a.clone())]);
    if let Value::Dict(ad) = &a {
        ad.write()
            .insert(mpmanager_pickle::Key::str("b"), b.clone());
    }
    assert!(find_proxies(&a).is_empty());
    // Break the cycles so that the test does not leak.
    if let Value::List(inner) = &l {
        inner.write().clear();
    }
    if let Value::Dict(ad) = &a {
        ad.write().clear();
    }
}

#[test]
fn walk_handles_100_000_deep_nesting() {
    let proxy = ProxyRef::class_proxy("DictProxy", token("deep"));
    let mut v = proxy.to_value();
    for i in 0..100_000 {
        v = match i % 3 {
            0 => Value::list(vec![v]),
            1 => t(vec![Value::Int(i), v]),
            _ => d(vec![("k", v)]),
        };
    }
    assert_eq!(find_proxies(&v), vec![proxy]);
}

#[test]
fn walk_searches_inside_malformed_rebuild_proxy() {
    let good = ProxyRef::class_proxy("ListProxy", token("inner"));
    let malformed = Value::object(Object::reduce(
        Value::global("multiprocessing.managers", "RebuildProxy"),
        vec![good.to_value()],
    ));
    assert_eq!(find_proxies(&malformed), vec![good]);
}

// -------------------------------------------------------------- type table

#[test]
fn type_table() {
    let ids: Vec<_> = builtin_typeids().iter().map(|s| s.typeid()).collect();
    assert_eq!(
        ids,
        [
            "Queue",
            "JoinableQueue",
            "Event",
            "Lock",
            "RLock",
            "Semaphore",
            "BoundedSemaphore",
            "Condition",
            "Barrier",
            "Pool",
            "list",
            "dict",
            "Value",
            "Array",
            "Namespace",
            "Iterator",
            "AsyncResult",
            "set"
        ]
    );
    for spec in builtin_typeids() {
        assert_eq!(lookup(spec.typeid()), Some(spec));
        // Every method_to_typeid key is exposed, appended at the end in
        // order, and names a registered typeid.
        let m2t = spec.method_to_typeid();
        let tail = &spec.exposed()[spec.exposed().len() - m2t.len()..];
        assert_eq!(tail, m2t.iter().map(|(m, _)| *m).collect::<Vec<_>>());
        for (m, target) in m2t {
            assert!(spec.exposes(m));
            assert_eq!(spec.typeid_for_method(m), Some(*target));
            assert!(lookup(target).is_some());
        }
        assert_eq!(
            spec.proxy_func().module.as_ref(),
            "multiprocessing.managers"
        );
    }
    assert!(lookup("nosuch").is_none());
}

#[test]
fn type_table_matches_captured_exposed_tuples() {
    // 3.11 server's create replies (§3.3, §4.1): every name still exposed.
    let dict311 = [
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__iter__",
        "__len__",
        "__setitem__",
        "clear",
        "copy",
        "get",
        "items",
        "keys",
        "pop",
        "popitem",
        "setdefault",
        "update",
        "values",
        "__iter__",
    ];
    let list311 = [
        "__add__",
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__len__",
        "__mul__",
        "__reversed__",
        "__rmul__",
        "__setitem__",
        "append",
        "count",
        "extend",
        "index",
        "insert",
        "pop",
        "remove",
        "reverse",
        "sort",
        "__imul__",
    ];
    for (typeid, old) in [("dict", &dict311[..]), ("list", &list311[..])] {
        let spec = lookup(typeid).unwrap();
        for n in old {
            assert!(spec.exposes(n), "{typeid} lacks {n}");
        }
    }
    let dict = lookup("dict").unwrap();
    assert_eq!(
        dict.exposed().iter().filter(|n| **n == "__iter__").count(),
        2
    );
    assert_eq!(dict.exposed().last(), Some(&"__iter__"));
    for n in ["__ior__", "__or__", "__ror__", "__reversed__", "fromkeys"] {
        assert!(dict.exposes(n));
    }
    let list = lookup("list").unwrap();
    assert!(list.exposes("clear") && list.exposes("copy"));
    assert!(list.typeid_for_method("__iter__").is_none());
    // Queue: the computed (sorted) names with 3.13's `shutdown`.
    let q = lookup("Queue").unwrap();
    assert_eq!(
        q.exposed(),
        [
            "empty",
            "full",
            "get",
            "get_nowait",
            "join",
            "put",
            "put_nowait",
            "qsize",
            "shutdown",
            "task_done"
        ]
    );
    assert!(q.is_auto() && lookup("JoinableQueue").unwrap().is_auto());
    let mut sorted = q.exposed().to_vec();
    sorted.sort();
    assert_eq!(sorted, q.exposed());
    // Pool: 11 names then the five method_to_typeid keys.
    let pool = lookup("Pool").unwrap();
    assert_eq!(pool.exposed().len(), 16);
    assert_eq!(pool.typeid_for_method("imap"), Some("Iterator"));
    assert_eq!(pool.typeid_for_method("map_async"), Some("AsyncResult"));
    assert_eq!(pool.typeid_for_method("map"), None);
    // Creators, versions, proxies.
    assert!(!lookup("Iterator").unwrap().has_creator());
    assert!(!lookup("AsyncResult").unwrap().has_creator());
    assert!(lookup("AsyncResult").unwrap().is_auto());
    assert!(lookup("list").unwrap().has_creator());
    assert_eq!(lookup("set").unwrap().since(), (3, 14));
    assert_eq!(lookup("set").unwrap().exposed().len(), 37);
    assert!(lookup("set")
        .unwrap()
        .typeid_for_method("__iter__")
        .is_none());
    assert_eq!(
        lookup("Lock").unwrap().exposed(),
        ["acquire", "release", "locked"]
    );
    assert_eq!(
        lookup("Barrier").unwrap().exposed(),
        ["__getattribute__", "wait", "abort", "reset"]
    );
    assert_eq!(lookup("Event").unwrap().proxy_class(), "EventProxy");
}

#[test]
fn type_spec_builds_the_proxy_a_client_would_pickle() {
    let tok = Token::new("Queue", PyAddress::tcp("127.0.0.1", 1), "q");
    let p = lookup("Queue").unwrap().proxy_ref(tok.clone());
    assert!(p.is_auto());
    assert_eq!(p.exposed.as_ref().unwrap().len(), 10);
    let p = lookup("list").unwrap().proxy_ref(Token {
        typeid: "list".into(),
        ..tok
    });
    assert_eq!(p.class_name(), "ListProxy");
    assert_eq!(p.exposed, None);
}

// --------------------------------------------------------------- tracebacks

#[test]
fn remote_error_text() {
    let rule = "-".repeat(75);
    assert_eq!(remote_error_str("x\n"), format!("\n{rule}\nx\n{rule}"));
    assert_eq!(remote_error_str("").len(), 1 + 75 + 1 + 75);
}

#[test]
fn not_exposed_matches_cpython_shape() {
    // CPython 3.11 (frames differ): AttributeError, then the chained
    // KeyError of the fallback lookup.
    let text = not_exposed("nosuch", "list", &["count", "__reversed__", "count"]);
    let expected = "Traceback (most recent call last):\n  File \"<mpmanager>\", line 0, in serve_client\n\
AttributeError: method 'nosuch' of <class 'list'> object is not in exposed={'count', '__reversed__'}\n\
\nDuring handling of the above exception, another exception occurred:\n\n\
Traceback (most recent call last):\n  File \"<mpmanager>\", line 0, in serve_client\n\
KeyError: 'nosuch'\n";
    assert_eq!(text, expected);
    assert!(not_exposed::<&str>("_h", "queue.Queue", &[])
        .contains("<class 'queue.Queue'> object is not in exposed=set()\n"));
}

#[test]
fn standard_tracebacks_end_like_cpython() {
    let last = |text: &str| {
        text.trim_end_matches('\n')
            .rsplit('\n')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(last(&unknown_ident("nonexist")), "KeyError: 'nonexist'");
    assert_eq!(
        last(&unknown_typeid("nosuchtype")),
        "KeyError: 'nosuchtype'"
    );
    assert_eq!(
        last(&unrecognized_operation("foo")),
        "AssertionError: 'foo' unrecognized"
    );
    for text in [
        unknown_ident("a"),
        unknown_typeid("b"),
        unrecognized_operation("c"),
    ] {
        assert!(text.starts_with("Traceback (most recent call last):\n  File "));
        assert!(text.ends_with('\n'));
    }
    let e = PyErr::with_args(
        ExcType::Other(Global::new("threading", "BrokenBarrierError").into()),
        vec![],
    );
    assert_eq!(exception_line(&e), "threading.BrokenBarrierError");
    assert_eq!(
        exception_line(&PyErr::key_error(Value::Int(3))),
        "KeyError: 3"
    );
    assert_eq!(exception_line(&PyErr::key_error(s(""))), "KeyError: ''");
    assert_eq!(
        exception_line(&PyErr::with_args(
            ExcType::OverflowError,
            vec![Value::Int(1), s("x")]
        )),
        "OverflowError: (1, 'x')"
    );
    assert_eq!(
        exception_line(&PyErr::with_args(ExcType::StopIteration, vec![])),
        "StopIteration"
    );
    assert_eq!(
        last(&for_error(
            &PyErr::new(
                ExcType::AttributeError,
                "'Namespace' object has no attribute 'y'"
            ),
            "f"
        )),
        "AttributeError: 'Namespace' object has no attribute 'y'"
    );
    let chain = format_chain(&[TbEntry {
        frames: vec![Frame {
            file: "m.py".into(),
            line: 3,
            function: "f".into(),
            source: Some("raise X".into()),
        }],
        exception: "X: y".into(),
    }]);
    assert_eq!(
        chain,
        "Traceback (most recent call last):\n  File \"m.py\", line 3, in f\n    raise X\nX: y\n"
    );
}
