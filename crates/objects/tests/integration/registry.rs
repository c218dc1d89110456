//! Registry behaviour: refcounts, idents, named shared objects, one-shot
//! operation formats, dispatch and fallbacks, nested proxies (stash, revive,
//! collection) and concurrency.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mpmanager_objects::proxy::{ProxyRef, PyAddress, Token};

fn make_proxy(class: &str, typeid: &str, address: PyAddress, ident: &str) -> Value {
    ProxyRef::class_proxy(class, Token::new(typeid, address, ident)).to_value()
}
use mpmanager_objects::types::ListObject;

fn table(typeid: &str) -> &'static [&'static str] {
    mpmanager_protocol::registry::lookup(typeid)
        .unwrap()
        .exposed()
}
use mpmanager_objects::{
    args, CallContext, CallError, Kwargs, Outcome, Referent, Registry, RegistryConfig, Reply,
    TypeSpec,
};
use mpmanager_pickle::{repr, ExcType, PyErr, Value};

fn kw() -> Kwargs {
    Kwargs::new()
}

fn create(reg: &Registry, typeid: &str, a: &[Value]) -> String {
    reg.create(typeid, a, &kw()).expect("create").0
}

fn call(reg: &Registry, ident: &str, m: &str, a: &[Value]) -> Result<Value, CallError> {
    match reg.call(&CallContext::new(1), ident, m, a, &kw())? {
        Reply::Return(v) => Ok(v),
        other => panic!("unexpected reply {other:?}"),
    }
}

fn ok(reg: &Registry, ident: &str, m: &str, a: &[Value]) -> Value {
    call(reg, ident, m, a).unwrap_or_else(|e| panic!("{m} failed: {e}"))
}

fn proxy(reg: &Registry, ident: &str) -> Value {
    let typeid = reg.typeid_of(ident).expect("held");
    let class = if typeid == "list" {
        "ListProxy"
    } else {
        "DictProxy"
    };
    make_proxy(class, &typeid, PyAddress::tcp("127.0.0.1", 50011), ident)
}

fn traceback(e: Result<impl std::fmt::Debug, CallError>) -> String {
    match e {
        Err(CallError::Traceback(t)) => t,
        other => panic!("expected a #TRACEBACK, got {other:?}"),
    }
}

fn no_grace() -> Registry {
    let mut cfg = RegistryConfig::default();
    cfg.revive_grace = Duration::ZERO;
    let reg = Registry::with_config(cfg);
    mpmanager_objects::types::register_builtin_types(&reg);
    reg
}

#[test]
fn refcounts_follow_incref_and_decref() {
    let reg = Registry::with_builtin_types();
    let id = create(&reg, "list", &[]);
    assert_eq!(reg.refcount(&id), Some(1));
    reg.incref(&id).unwrap();
    assert_eq!(reg.refcount(&id), Some(2));
    reg.decref(&id).unwrap();
    assert_eq!(reg.refcount(&id), Some(1));
    assert_eq!(reg.number_of_objects(), 1);
    reg.decref(&id).unwrap();
    assert_eq!(reg.refcount(&id), None);
    assert_eq!(reg.number_of_objects(), 0);
    assert!(reg.is_empty());
    // Unknown idents: KeyError tracebacks, as CPython's one-shot ops.
    assert!(traceback(reg.decref(&id)).ends_with(&format!("KeyError: '{id}'\n")));
    assert!(traceback(reg.incref(&id)).ends_with(&format!("KeyError: '{id}'\n")));
    assert!(traceback(reg.incref("nonsense")).ends_with("KeyError: 'nonsense'\n"));
    let t = traceback(call(&reg, &id, "append", &[Value::Int(1)]));
    assert!(t.ends_with(&format!("KeyError: '{id}'\n")), "{t}");
}

#[test]
fn idents_are_unique_hex_and_never_reused() {
    let reg = Registry::with_builtin_types();
    let mut seen = HashSet::new();
    for round in 0..3 {
        let ids: Vec<String> = (0..500).map(|_| create(&reg, "dict", &[])).collect();
        for id in &ids {
            assert!(id.len() == 12 && id.starts_with("7f"), "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "{id}"
            );
            assert!(
                seen.insert(id.clone()),
                "ident {id} reused in round {round}"
            );
        }
        for id in &ids {
            reg.decref(id).unwrap();
        }
    }
    // Two registries do not hand out the same idents either (random base).
    let other = Registry::with_builtin_types();
    let x = create(&other, "list", &[]);
    let y = create(&reg, "list", &[]);
    assert_ne!(x, y);
}

#[test]
fn create_reports_cpython_exposed_lists_and_tracebacks() {
    let reg = Registry::with_builtin_types();
    let (_, exposed) = reg.create("list", &[], &kw()).unwrap();
    assert_eq!(exposed, table("list"));
    let (d, exposed) = reg.create("dict", &[], &kw()).unwrap();
    // The table's wire order already holds `'__iter__'` twice.
    assert_eq!(exposed, table("dict"));
    assert_eq!(exposed.iter().filter(|m| *m == "__iter__").count(), 2);
    // get_methods: no duplicates.
    let m = reg.get_methods(&d).unwrap();
    assert_eq!(m.len(), table("dict").len() - 1);
    let (_, exposed) = reg.create("Namespace", &[], &kw()).unwrap();
    assert_eq!(exposed, ["__getattribute__", "__setattr__", "__delattr__"]);
    let (_, exposed) = reg
        .create("Value", &[Value::str("i"), Value::Int(1)], &kw())
        .unwrap();
    assert_eq!(exposed, ["get", "set"]);
    let (_, exposed) = reg
        .create("Array", &[Value::str("i"), Value::list(vec![])], &kw())
        .unwrap();
    assert_eq!(exposed, ["__len__", "__getitem__", "__setitem__"]);

    // Errors in create are #TRACEBACK (one-shot ops never send #ERROR).
    let t = traceback(reg.create("nosuch", &[], &kw()));
    assert!(t.starts_with("Traceback (most recent call last):\n"), "{t}");
    assert!(t.ends_with("KeyError: 'nosuch'\n"), "{t}");
    let t = traceback(reg.create("list", &[Value::Int(1), Value::Int(2)], &kw()));
    assert!(
        t.ends_with("TypeError: list expected at most 1 argument, got 2\n"),
        "{t}"
    );
    let t = traceback(reg.create(
        "Array",
        &[Value::str("b"), Value::list(vec![Value::Int(300)])],
        &kw(),
    ));
    assert!(
        t.ends_with("OverflowError: signed char is greater than maximum\n"),
        "{t}"
    );
    let t = traceback(reg.create("Iterator", &[], &kw()));
    assert!(t.contains("TypeError"), "{t}");
    // dict(*args, **kwds) as manager.dict(ferrets=2) sends it.
    let kws = Kwargs::from_pairs(vec![("ferrets".into(), Value::Int(2))]);
    let (d, _) = reg.create("dict", &[], &kws).unwrap();
    assert_eq!(repr(&ok(&reg, &d, "copy", &[])), "{'ferrets': 2}");
}

#[test]
fn debug_info_and_number_of_objects_have_cpython_format() {
    let reg = Registry::with_builtin_types();
    let a = create(
        &reg,
        "list",
        &[Value::list(vec![Value::Int(1), Value::Int(2)])],
    );
    let long = Value::list((0..100).map(Value::Int).collect());
    let b = create(&reg, "list", &[long]);
    let n = create(&reg, "Namespace", &[]);
    ok(&reg, &n, "__setattr__", &[Value::str("x"), Value::Int(1)]);
    reg.incref(&b).unwrap();
    assert_eq!(reg.number_of_objects(), 3);
    let mut ids = vec![(a.clone(), 1, "[1, 2]".to_string())];
    let full = repr(&ok(&reg, &b, "copy", &[]));
    ids.push((b.clone(), 2, full.chars().take(75).collect()));
    ids.push((n.clone(), 1, "Namespace(x=1)".to_string()));
    ids.sort();
    // '  %s:       refcount=%s\n    %s' % (ident, rc, str(obj)[:75]), '\n'-joined
    let want: Vec<String> = ids
        .iter()
        .map(|(i, rc, s)| format!("  {i}:       refcount={rc}\n    {s}"))
        .collect();
    assert_eq!(reg.debug_info(), want.join("\n"));
    assert_eq!(ids[0].2.len().min(75), ids[0].2.len());
    reg.decref(&a).unwrap();
    reg.decref(&n).unwrap();
    reg.decref(&b).unwrap();
    assert_eq!(reg.number_of_objects(), 1);
    assert_eq!(reg.debug_info().lines().count(), 2);
    reg.decref(&b).unwrap();
    assert_eq!(reg.debug_info(), "");
}

#[test]
fn dispatch_fallbacks_and_errors() {
    let reg = Registry::with_builtin_types();
    let l = create(&reg, "list", &[Value::list(vec![Value::Int(1)])]);
    // Python exceptions are #ERROR with the real type.
    match call(&reg, &l, "__getitem__", &[Value::Int(5)]) {
        Err(CallError::Python(e)) => {
            assert_eq!(e.ty, ExcType::IndexError);
            assert_eq!(e.message(), Some("list index out of range"));
        }
        other => panic!("{other:?}"),
    }
    match call(&reg, &l, "index", &[Value::Int(7)]) {
        Err(CallError::Python(e)) => assert_eq!(e.to_string(), "ValueError: 7 is not in list"),
        other => panic!("{other:?}"),
    }
    // Fallbacks for names not exposed.
    assert_eq!(ok(&reg, &l, "__repr__", &[]).as_str(), Some("[1]"));
    assert_eq!(ok(&reg, &l, "__str__", &[]).as_str(), Some("[1]"));
    assert_eq!(repr(&ok(&reg, &l, "#GETVALUE", &[])), "[1]");
    // Anything else: a traceback chaining the AttributeError and a KeyError.
    let t = traceback(call(&reg, &l, "nosuch", &[]));
    assert!(t.contains("AttributeError: method 'nosuch' of <class 'list'> object is not in exposed={'__add__', "), "{t}");
    assert!(
        t.contains("During handling of the above exception, another exception occurred:"),
        "{t}"
    );
    assert!(t.ends_with("KeyError: 'nosuch'\n"), "{t}");

    // Namespace: missing attribute is #ERROR AttributeError; #GETVALUE is
    // the NEWOBJ form with the state dict.
    let n = create(&reg, "Namespace", &[]);
    ok(
        &reg,
        &n,
        "__setattr__",
        &[Value::str("name"), Value::str("Bob")],
    );
    ok(
        &reg,
        &n,
        "__setattr__",
        &[Value::str("job"), Value::str("Builder")],
    );
    ok(&reg, &n, "__delattr__", &[Value::str("job")]);
    match call(&reg, &n, "__getattribute__", &[Value::str("job")]) {
        Err(CallError::Python(e)) => {
            assert_eq!(
                e.to_string(),
                "AttributeError: 'Namespace' object has no attribute 'job'"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ok(&reg, &n, "__repr__", &[]).as_str(),
        Some("Namespace(name='Bob')")
    );
    let Value::Object(o) = ok(&reg, &n, "#GETVALUE", &[]) else {
        panic!()
    };
    let o = o.read();
    assert!(o
        .global()
        .unwrap()
        .is("multiprocessing.managers", "Namespace"));
    assert_eq!(o.construct, mpmanager_pickle::Construct::NewObj);
    assert_eq!(repr(o.state.as_ref().unwrap()), "{'name': 'Bob'}");
    let v = create(&reg, "Value", &[Value::str("i"), Value::Int(3)]);
    assert_eq!(ok(&reg, &v, "__str__", &[]).as_str(), Some("Value('i', 3)"));
    let Value::Object(o) = ok(&reg, &v, "#GETVALUE", &[]) else {
        panic!()
    };
    assert_eq!(
        repr(o.read().state.as_ref().unwrap()),
        "{'_typecode': 'i', '_value': 3}"
    );
    let a = create(
        &reg,
        "Array",
        &[
            Value::str("d"),
            Value::list(vec![Value::Float(1.0), Value::Float(2.0)]),
        ],
    );
    assert_eq!(
        ok(&reg, &a, "__repr__", &[]).as_str(),
        Some("array('d', [1.0, 2.0])")
    );
    let Value::Object(o) = ok(&reg, &a, "#GETVALUE", &[]) else {
        panic!()
    };
    let o = o.read();
    assert!(o.global().unwrap().is("array", "array"));
    let mut raw = 1.0f64.to_ne_bytes().to_vec();
    raw.extend_from_slice(&2.0f64.to_ne_bytes());
    assert_eq!(repr(&o.args_slice()[1]), repr(&Value::bytes(&raw)));
}

#[test]
fn dict_iterator_is_a_new_object_over_the_live_dict() {
    let reg = Registry::with_builtin_types();
    let d = create(&reg, "dict", &[]);
    for k in 65..70 {
        ok(
            &reg,
            &d,
            "__setitem__",
            &[Value::Int(k), Value::str(&format!("{}", k as u8 as char))],
        );
    }
    let cx = CallContext::new(1);
    let Reply::Proxy {
        typeid,
        ident: it,
        exposed,
    } = reg.call(&cx, &d, "__iter__", &[], &kw()).unwrap()
    else {
        panic!()
    };
    assert_eq!(typeid, "Iterator");
    assert_eq!(exposed, ["__next__", "send", "throw", "close"]);
    assert_eq!(reg.refcount(&it), Some(1));
    let keys: Vec<i64> = (0..5)
        .map(|_| ok(&reg, &it, "__next__", &[]).as_i64().unwrap())
        .collect();
    assert_eq!(keys, [65, 66, 67, 68, 69]);
    for _ in 0..2 {
        match call(&reg, &it, "__next__", &[]) {
            Err(CallError::Python(e)) => {
                assert_eq!(e.ty, ExcType::StopIteration);
                assert!(e.args.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
    // Exhausted stays exhausted even when the dict grows.
    ok(&reg, &d, "__setitem__", &[Value::Int(1), Value::Int(1)]);
    assert!(
        matches!(call(&reg, &it, "__next__", &[]), Err(CallError::Python(e)) if e.ty == ExcType::StopIteration)
    );
    // A size change mid-iteration: RuntimeError, and again after.
    let Reply::Proxy { ident: it2, .. } = reg.call(&cx, &d, "__iter__", &[], &kw()).unwrap() else {
        panic!()
    };
    ok(&reg, &it2, "__next__", &[]);
    ok(&reg, &d, "clear", &[]);
    for _ in 0..2 {
        match call(&reg, &it2, "__next__", &[]) {
            Err(CallError::Python(e)) => {
                assert_eq!(
                    e.to_string(),
                    "RuntimeError: dictionary changed size during iteration"
                )
            }
            other => panic!("{other:?}"),
        }
    }
    // send/throw/close are exposed but dict_keyiterator lacks them.
    let t = traceback(call(&reg, &it2, "send", &[Value::None]));
    assert!(
        t.contains("AttributeError: 'dict_keyiterator' object has no attribute 'send'"),
        "{t}"
    );
    assert!(t.ends_with("KeyError: 'send'\n"), "{t}");
    assert!(ok(&reg, &it2, "__repr__", &[])
        .as_str()
        .unwrap()
        .starts_with("<dict_keyiterator object at 0x"));
}

#[test]
fn named_shared_object_keeps_its_ident_and_state() {
    let reg = Registry::with_builtin_types();
    let q: Arc<dyn Referent> = Arc::new(ListObject::new(vec![]));
    reg.register(TypeSpec::shared("get_queue", q).exposed(&["append", "pop", "__len__"]));
    let (a, exposed) = reg.create("get_queue", &[], &kw()).unwrap();
    assert_eq!(exposed, ["append", "pop", "__len__"]);
    let (b, _) = reg.create("get_queue", &[], &kw()).unwrap();
    assert_eq!(a, b);
    assert_eq!(reg.refcount(&a), Some(2));
    ok(&reg, &a, "append", &[Value::Int(123)]);
    reg.decref(&a).unwrap();
    reg.decref(&a).unwrap();
    assert_eq!(reg.number_of_objects(), 0);
    assert!(traceback(reg.decref(&a)).ends_with(&format!("KeyError: '{a}'\n")));
    let (c, _) = reg.create("get_queue", &[], &kw()).unwrap();
    assert_eq!(c, a);
    assert_eq!(reg.refcount(&c), Some(1));
    assert_eq!(ok(&reg, &c, "pop", &[]).as_i64(), Some(123));
}

#[test]
fn nested_proxies_are_stashed_revived_and_freed_when_unreachable() {
    let reg = no_grace();
    let a = create(
        &reg,
        "list",
        &[Value::list(vec![
            Value::Int(1),
            Value::Int(2),
            Value::Int(3),
        ])],
    );
    let b = create(&reg, "list", &[Value::list(vec![Value::Int(4)])]);
    // e = manager.list([a, b])
    let e = create(
        &reg,
        "list",
        &[Value::list(vec![proxy(&reg, &a), proxy(&reg, &b)])],
    );
    assert!(reg.is_stashed(&a) && reg.is_stashed(&b) && !reg.is_stashed(&e));
    // The client drops its a and b proxies: they survive in the stash.
    reg.decref(&a).unwrap();
    reg.decref(&b).unwrap();
    assert_eq!(reg.number_of_objects(), 1);
    assert_eq!(reg.len(), 3);
    // A decref of a stashed object at 0 is a silent no-op, as in CPython.
    reg.decref(&a).unwrap();
    // e[0] sends the proxy; calls on the stash-only object work (§5.3).
    let p = ok(&reg, &e, "__getitem__", &[Value::Int(0)]);
    assert_eq!(ProxyRef::from_value(&p).unwrap().token.id, a);
    ok(&reg, &a, "__setitem__", &[Value::Int(-1), Value::Int(55)]);
    assert_eq!(repr(&ok(&reg, &a, "copy", &[])), "[1, 2, 55]");
    // The client unpickles it and increfs: revived.
    reg.incref(&a).unwrap();
    assert_eq!(reg.refcount(&a), Some(1));
    assert_eq!(reg.number_of_objects(), 2);
    reg.decref(&a).unwrap();
    assert_eq!(reg.collect().freed, 0, "a and b are reachable from e");
    // Removing b from e makes it unreachable: the next collection frees it.
    ok(&reg, &e, "pop", &[]);
    let s = reg.collect();
    assert_eq!(s.freed, 1);
    assert!(reg.refcount(&b).is_none());
    assert!(reg.refcount(&a).is_some());
    // Dropping the container frees everything it kept alive.
    reg.decref(&e).unwrap();
    assert_eq!(reg.len(), 1, "a is only freed by a collection (stashed)");
    reg.collect();
    assert!(reg.is_empty(), "{}", reg.debug_info());
}

#[test]
fn list_containing_itself_is_freed_without_deadlock() {
    let reg = no_grace();
    let b = create(&reg, "list", &[]);
    ok(&reg, &b, "append", &[proxy(&reg, &b)]);
    assert!(reg.is_stashed(&b));
    let (tx, rx) = mpsc::channel();
    let reg = Arc::new(reg);
    let r2 = reg.clone();
    std::thread::spawn(move || {
        r2.decref(&b).unwrap(); // del b: triggers a collection
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("decref deadlocked");
    assert!(reg.is_empty(), "b must be freed: {}", reg.debug_info());
}

#[test]
fn cycles_and_chains_of_stashed_objects_are_collected() {
    let reg = no_grace();
    // x <-> y cycle, both only referenced by each other after the client drops them.
    let x = create(&reg, "list", &[]);
    let y = create(&reg, "dict", &[]);
    ok(&reg, &x, "append", &[proxy(&reg, &y)]);
    ok(&reg, &y, "__setitem__", &[Value::str("x"), proxy(&reg, &x)]);
    // A chain root -> c1 -> c2 with the client keeping only root.
    let c2 = create(&reg, "list", &[]);
    let c1 = create(&reg, "list", &[Value::list(vec![proxy(&reg, &c2)])]);
    let root = create(&reg, "dict", &[]);
    let kws = Kwargs::from_pairs(vec![("pets".into(), proxy(&reg, &c1))]);
    ok(&reg, &root, "update", &[]);
    reg.call(&CallContext::new(1), &root, "update", &[], &kws)
        .unwrap();
    for id in [&x, &y, &c1, &c2] {
        reg.decref(id).unwrap();
    }
    reg.collect();
    assert!(
        reg.refcount(&x).is_none() && reg.refcount(&y).is_none(),
        "cycle not collected"
    );
    assert!(
        reg.refcount(&c1).is_some() && reg.refcount(&c2).is_some(),
        "chain freed too early"
    );
    // d.clear() must not destroy objects still referenced by client proxies.
    reg.incref(&c1).unwrap();
    ok(&reg, &root, "clear", &[]);
    reg.collect();
    assert!(reg.refcount(&c1) == Some(1));
    assert!(
        reg.refcount(&c2).is_some(),
        "c2 is reachable through client-held c1"
    );
    reg.decref(&c1).unwrap();
    reg.decref(&root).unwrap();
    reg.collect();
    assert!(reg.is_empty(), "{}", reg.debug_info());
}

#[test]
fn stale_proxy_to_a_freed_object_fails_the_request() {
    let reg = no_grace();
    let a = create(&reg, "list", &[]);
    let pa = proxy(&reg, &a);
    reg.decref(&a).unwrap();
    let l = create(&reg, "list", &[]);
    let t = traceback(call(&reg, &l, "append", std::slice::from_ref(&pa)));
    assert!(t.ends_with(&format!("KeyError: '{a}'\n")), "{t}");
    let t = traceback(reg.create("list", &[Value::list(vec![pa])], &kw()));
    assert!(t.ends_with(&format!("KeyError: '{a}'\n")), "{t}");
    // A proxy to another manager (an ident that is not ours) is a plain value.
    let foreign = make_proxy(
        "ListProxy",
        "list",
        PyAddress::Path("/tmp/other".into()),
        "7f0000000001",
    );
    ok(&reg, &l, "append", &[foreign]);
}

#[test]
fn proxies_sent_to_clients_get_a_revive_lease() {
    // Default grace: a proxy popped out of its only container stays
    // revivable until the client's incref arrives.
    let reg = Registry::with_builtin_types();
    let inner = create(&reg, "list", &[]);
    let outer = create(&reg, "list", &[Value::list(vec![proxy(&reg, &inner)])]);
    reg.decref(&inner).unwrap();
    let p = ok(&reg, &outer, "pop", &[]);
    assert_eq!(reg.collect().freed, 0);
    reg.incref(&ProxyRef::from_value(&p).unwrap().token.id)
        .unwrap();
    assert_eq!(reg.refcount(&inner), Some(1));
    // Without a grace period the same object would have been freed.
    let reg = no_grace();
    let inner = create(&reg, "list", &[]);
    let outer = create(&reg, "list", &[Value::list(vec![proxy(&reg, &inner)])]);
    reg.decref(&inner).unwrap();
    ok(&reg, &outer, "pop", &[]);
    assert_eq!(reg.collect().freed, 1);
    assert!(traceback(reg.incref(&inner)).contains("KeyError"));
}

/// A referent whose `block` method waits until released.
struct Gate {
    rx: parking_lot::Mutex<mpsc::Receiver<()>>,
}

impl Referent for Gate {
    fn class_name(&self) -> &str {
        "Gate"
    }
    fn call(
        &self,
        _cx: &CallContext,
        m: &str,
        _a: &[Value],
        _k: &Kwargs,
    ) -> Result<Outcome, CallError> {
        match m {
            "block" => {
                self.rx
                    .lock()
                    .recv_timeout(Duration::from_secs(20))
                    .map_err(|_| {
                        CallError::Python(PyErr::new(ExcType::RuntimeError, "gate never opened"))
                    })?;
                Ok(Outcome::none())
            }
            _ => Err(CallError::Python(args::no_attribute("Gate", m))),
        }
    }
    fn repr(&self) -> Result<String, PyErr> {
        Ok("<Gate>".into())
    }
    fn get_value(&self) -> Result<Value, PyErr> {
        Ok(Value::None)
    }
}

#[test]
fn a_blocked_method_does_not_block_other_objects_or_the_registry() {
    let reg = Arc::new(Registry::with_builtin_types());
    let (tx, rx) = mpsc::channel();
    reg.register(
        TypeSpec::shared(
            "gate",
            Arc::new(Gate {
                rx: parking_lot::Mutex::new(rx),
            }),
        )
        .exposed(&["block"]),
    );
    let (g, _) = reg.create("gate", &[], &kw()).unwrap();
    let l = create(&reg, "list", &[]);
    let r2 = reg.clone();
    let blocked = std::thread::spawn(move || call(&r2, &g, "block", &[]).is_ok());
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    for i in 0..1000 {
        ok(&reg, &l, "append", &[Value::Int(i)]);
    }
    let x = create(&reg, "dict", &[]);
    reg.decref(&x).unwrap();
    assert!(reg.debug_info().contains("<Gate>"));
    reg.collect();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(!blocked.is_finished());
    tx.send(()).unwrap();
    assert!(blocked.join().unwrap());
}

#[test]
fn concurrent_calls_are_consistent_and_do_not_deadlock() {
    let reg = Arc::new(Registry::with_builtin_types());
    let shared_list = create(&reg, "list", &[]);
    let counter = create(&reg, "dict", &[]);
    ok(
        &reg,
        &counter,
        "__setitem__",
        &[Value::str("n"), Value::Int(0)],
    );
    // Nested proxy juggling while other threads collect.
    let inner = create(&reg, "list", &[Value::list(vec![Value::Int(42)])]);
    let outer = create(&reg, "list", &[Value::list(vec![proxy(&reg, &inner)])]);
    reg.decref(&inner).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..8i64 {
        let reg = reg.clone();
        let (shared_list, outer, done_tx) = (shared_list.clone(), outer.clone(), done_tx.clone());
        handles.push(std::thread::spawn(move || {
            let mine = create(&reg, "list", &[]);
            for i in 0..300 {
                ok(&reg, &mine, "append", &[Value::Int(i)]);
                ok(&reg, &shared_list, "append", &[Value::Int(t * 1000 + i)]);
                // churn: short-lived objects and refcount traffic
                let tmp = create(&reg, "Namespace", &[]);
                reg.incref(&tmp).unwrap();
                reg.decref(&tmp).unwrap();
                reg.decref(&tmp).unwrap();
                if t % 2 == 0 {
                    // pop the nested proxy and put it back
                    if let Ok(p) = call(&reg, &outer, "pop", &[]) {
                        ok(&reg, &outer, "append", &[p]);
                    }
                }
            }
            assert_eq!(ok(&reg, &mine, "__len__", &[]).as_i64(), Some(300));
            reg.decref(&mine).unwrap();
            done_tx.send(()).unwrap();
        }));
    }
    {
        let reg = reg.clone();
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                reg.collect();
                let _ = reg.debug_info();
                let _ = reg.number_of_objects();
            }
        }));
    }
    for _ in 0..8 {
        done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("worker deadlocked");
    }
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        ok(&reg, &shared_list, "__len__", &[]).as_i64(),
        Some(8 * 300)
    );
    let mut all: Vec<i64> = match ok(&reg, &shared_list, "copy", &[]) {
        Value::List(l) => l.read().iter().map(|v| v.as_i64().unwrap()).collect(),
        _ => panic!(),
    };
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 8 * 300, "lost or duplicated appends");
    // The juggled inner list was never freed while it was reachable.
    assert_eq!(ok(&reg, &outer, "__len__", &[]).as_i64(), Some(1));
    assert_eq!(repr(&ok(&reg, &inner, "copy", &[])), "[42]");
    assert_eq!(reg.number_of_objects(), 3); // shared_list, counter, outer
}

/// A list whose `slow_append` waits for a signal before storing its argument.
struct SlowList {
    inner: ListObject,
    rx: parking_lot::Mutex<mpsc::Receiver<()>>,
}

impl Referent for SlowList {
    fn class_name(&self) -> &str {
        "SlowList"
    }
    fn call(
        &self,
        cx: &CallContext,
        m: &str,
        a: &[Value],
        k: &Kwargs,
    ) -> Result<Outcome, CallError> {
        if m == "slow_append" {
            self.rx
                .lock()
                .recv_timeout(Duration::from_secs(20))
                .expect("signal");
            return self.inner.call(cx, "append", a, k);
        }
        self.inner.call(cx, m, a, k)
    }
    fn repr(&self) -> Result<String, PyErr> {
        self.inner.repr()
    }
    fn get_value(&self) -> Result<Value, PyErr> {
        self.inner.get_value()
    }
    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        self.inner.visit_values(f)
    }
}

#[test]
fn collection_is_deferred_while_a_call_may_be_moving_proxies() {
    let reg = Arc::new(no_grace());
    let (tx, rx) = mpsc::channel();
    reg.register(
        TypeSpec::shared(
            "slow",
            Arc::new(SlowList {
                inner: ListObject::new(vec![]),
                rx: parking_lot::Mutex::new(rx),
            }),
        )
        .exposed(&["slow_append", "__len__"]),
    );
    let (s, _) = reg.create("slow", &[], &kw()).unwrap();
    let x = create(&reg, "list", &[]);
    let px = proxy(&reg, &x);
    let r2 = reg.clone();
    let s2 = s.clone();
    let t = std::thread::spawn(move || call(&r2, &s2, "slow_append", &[px]).is_ok());
    // Wait until the call has stashed x and is blocked.
    let start = Instant::now();
    while !reg.is_stashed(&x) {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    // The client drops x while its proxy is still on its way into s.
    reg.decref(&x).unwrap();
    let st = reg.collect();
    assert!(st.deferred, "{st:?}");
    assert_eq!(st.freed, 0);
    assert!(
        reg.refcount(&x).is_some(),
        "x freed while a call was storing its proxy"
    );
    tx.send(()).unwrap();
    assert!(t.join().unwrap());
    let st = reg.collect();
    assert!(!st.deferred);
    assert_eq!(st.freed, 0, "x is reachable from the shared object");
    assert_eq!(ok(&reg, &x, "__len__", &[]).as_i64(), Some(0));
}
