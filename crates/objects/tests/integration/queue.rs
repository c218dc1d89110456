//! `Queue`, `JoinableQueue` and `Event` through the registry, as the server
//! drives them: semantics and error texts of CPython's `queue.Queue` and
//! `threading.Event`, timeouts, blocking calls on one thread while other
//! threads keep using other objects, exactly-once delivery across threads,
//! `join`/`task_done`, `shutdown`.
//!
//! Timing assertions are loose (a shared, noisy machine): lower bounds are
//! what the deadline guarantees, upper bounds are generous.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use mpmanager_objects::{CallContext, CallError, Kwargs, Registry, Reply};
use mpmanager_pickle::{ExcType, Value};

fn cx() -> CallContext {
    CallContext::new(1)
}

fn kw(pairs: &[(&str, Value)]) -> Kwargs {
    Kwargs::from_pairs(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn new(reg: &Registry, typeid: &str, args: &[Value], kwargs: &Kwargs) -> String {
    reg.create(typeid, args, kwargs).unwrap().0
}

fn call(reg: &Registry, id: &str, m: &str, a: &[Value], k: &Kwargs) -> Result<Value, CallError> {
    match reg.call(&cx(), id, m, a, k)? {
        Reply::Return(v) => Ok(v),
        other => panic!("{m}: unexpected reply {other:?}"),
    }
}

fn ok(reg: &Registry, id: &str, m: &str, a: &[Value]) -> Value {
    call(reg, id, m, a, &Kwargs::new()).unwrap_or_else(|e| panic!("{m}{a:?}: {e}"))
}

/// The Python exception a call raised, as `Type: message`, and its class path.
fn err(reg: &Registry, id: &str, m: &str, a: &[Value], k: &Kwargs) -> (String, (String, String)) {
    match call(reg, id, m, a, k) {
        Err(CallError::Python(e)) => {
            let (module, name) = e.ty.path();
            (e.to_string(), (module.to_string(), name.to_string()))
        }
        other => panic!("{m}{a:?}: expected a Python exception, got {other:?}"),
    }
}

fn path(m: &str, n: &str) -> (String, String) {
    (m.to_string(), n.to_string())
}

fn as_bool(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        other => panic!("not a bool: {other:?}"),
    }
}

#[test]
fn fifo_sizes_and_exception_classes() {
    let reg = Registry::with_builtin_types();
    let q = new(&reg, "Queue", &[], &kw(&[("maxsize", Value::Int(2))]));
    assert!(as_bool(&ok(&reg, &q, "empty", &[])));
    assert!(!as_bool(&ok(&reg, &q, "full", &[])));
    ok(&reg, &q, "put", &[Value::Int(1)]);
    ok(&reg, &q, "put_nowait", &[Value::str("two")]);
    assert_eq!(ok(&reg, &q, "qsize", &[]).as_i64(), Some(2));
    assert!(as_bool(&ok(&reg, &q, "full", &[])));
    // put on a full queue: queue.Full(), no args, whatever the form.
    for (a, k) in [
        (vec![Value::Int(3), Value::Bool(false)], Kwargs::new()),
        (
            vec![Value::Int(3), Value::Bool(false), Value::Float(5.0)],
            Kwargs::new(),
        ),
        (vec![Value::Int(3)], kw(&[("timeout", Value::Float(0.01))])),
        (vec![Value::Int(3)], kw(&[("block", Value::Int(0))])),
    ] {
        assert_eq!(
            err(&reg, &q, "put", &a, &k),
            ("Full".into(), path("queue", "Full"))
        );
    }
    assert_eq!(
        err(&reg, &q, "put_nowait", &[Value::Int(3)], &Kwargs::new()).1,
        path("queue", "Full")
    );
    assert_eq!(ok(&reg, &q, "get", &[]).as_i64(), Some(1));
    assert_eq!(ok(&reg, &q, "get_nowait", &[]).as_str(), Some("two"));
    // get on an empty queue: queue.Empty, which is _queue.Empty.
    for (a, k) in [
        (vec![Value::Bool(false)], Kwargs::new()),
        (vec![Value::Bool(false), Value::Float(10.0)], Kwargs::new()),
        (vec![], kw(&[("timeout", Value::Int(0))])),
        (vec![Value::Bool(true), Value::Float(0.01)], Kwargs::new()),
    ] {
        assert_eq!(
            err(&reg, &q, "get", &a, &k),
            ("Empty".into(), path("_queue", "Empty"))
        );
    }
    assert_eq!(
        err(&reg, &q, "get_nowait", &[], &Kwargs::new()).1,
        path("_queue", "Empty")
    );
    assert!(ok(&reg, &q, "__repr__", &[])
        .as_str()
        .unwrap()
        .starts_with("<queue.Queue object at 0x"));
}

#[test]
fn argument_errors_as_cpython() {
    let reg = Registry::with_builtin_types();
    let q = new(&reg, "Queue", &[Value::Int(1)], &Kwargs::new());
    let bound = new(&reg, "Queue", &[Value::Int(1)], &Kwargs::new());
    ok(&reg, &bound, "put", &[Value::Int(0)]);
    let neg = "ValueError: 'timeout' must be a non-negative number";
    // get: checked only when blocking, even with items queued.
    ok(&reg, &q, "put", &[Value::Int(0)]);
    assert_eq!(
        err(
            &reg,
            &q,
            "get",
            &[Value::Bool(true), Value::Int(-1)],
            &Kwargs::new()
        )
        .0,
        neg
    );
    assert_eq!(
        ok(&reg, &q, "get", &[Value::Bool(false), Value::Int(-1)]).as_i64(),
        Some(0)
    );
    // put: only for a bounded queue, when blocking.
    assert_eq!(
        err(
            &reg,
            &bound,
            "put",
            &[Value::Int(1), Value::Bool(true), Value::Float(-0.5)],
            &Kwargs::new()
        )
        .0,
        neg
    );
    let unbounded = new(&reg, "JoinableQueue", &[], &Kwargs::new());
    ok(
        &reg,
        &unbounded,
        "put",
        &[Value::Int(1), Value::Bool(true), Value::Int(-1)],
    );
    assert_eq!(
        err(&reg, &q, "get", &[], &kw(&[("timeout", Value::str("x"))])).0,
        "TypeError: '<' not supported between instances of 'str' and 'int'"
    );
    assert_eq!(
        err(
            &reg,
            &q,
            "put",
            &[Value::Int(1)],
            &kw(&[("bogus", Value::Int(1))])
        )
        .0,
        "TypeError: Queue.put() got an unexpected keyword argument 'bogus'"
    );
    assert_eq!(
        err(&reg, &q, "qsize", &[Value::Int(1)], &Kwargs::new()).0,
        "TypeError: Queue.qsize() takes 1 positional argument but 2 were given"
    );
    let e = reg
        .create("Queue", &[Value::Int(1), Value::Int(2)], &Kwargs::new())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("Queue.__init__() takes from 1 to 2 positional arguments but 3 were given"),
        "{e}"
    );
    // maxsize is compared, not converted: floats work, strings fail on use.
    let f = new(&reg, "Queue", &[Value::Float(1.5)], &Kwargs::new());
    ok(&reg, &f, "put", &[Value::Int(1)]);
    assert!(!as_bool(&ok(&reg, &f, "full", &[])));
    ok(&reg, &f, "put", &[Value::Int(2)]);
    assert!(as_bool(&ok(&reg, &f, "full", &[])));
    let s = new(&reg, "Queue", &[Value::str("x")], &Kwargs::new());
    assert_eq!(
        err(&reg, &s, "put", &[Value::Int(1)], &Kwargs::new()).0,
        "TypeError: '>' not supported between instances of 'str' and 'int'"
    );
    assert_eq!(
        err(&reg, &s, "full", &[], &Kwargs::new()).0,
        "TypeError: '<' not supported between instances of 'int' and 'str'"
    );
    // A negative maxsize is unbounded.
    let n = new(&reg, "Queue", &[Value::Int(-1)], &Kwargs::new());
    for i in 0..5 {
        ok(&reg, &n, "put_nowait", &[Value::Int(i)]);
    }
    assert!(!as_bool(&ok(&reg, &n, "full", &[])));
}

#[test]
fn timeouts_wait_about_as_long_as_asked() {
    let reg = Registry::with_builtin_types();
    let q = new(&reg, "Queue", &[Value::Int(1)], &Kwargs::new());
    let t = Instant::now();
    err(
        &reg,
        &q,
        "get",
        &[Value::Bool(true), Value::Float(0.2)],
        &Kwargs::new(),
    );
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    ok(&reg, &q, "put", &[Value::Int(1)]);
    let t = Instant::now();
    err(
        &reg,
        &q,
        "put",
        &[Value::Int(2)],
        &kw(&[("timeout", Value::Float(0.2))]),
    );
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    // block=False ignores the timeout: returns at once.
    let t = Instant::now();
    err(
        &reg,
        &q,
        "put",
        &[Value::Int(2), Value::Bool(false), Value::Int(30)],
        &Kwargs::new(),
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // Longer than threading.TIMEOUT_MAX: OverflowError when it would wait.
    let (text, _) = err(
        &reg,
        &q,
        "put",
        &[Value::Int(2), Value::Bool(true), Value::Float(1e10)],
        &Kwargs::new(),
    );
    assert!(text.starts_with("OverflowError"), "{text}");
}

#[test]
fn blocked_get_does_not_block_other_callers() {
    let reg = Arc::new(Registry::with_builtin_types());
    let q = new(&reg, "Queue", &[], &Kwargs::new());
    let l = new(&reg, "list", &[], &Kwargs::new());
    let getter = {
        let (reg, q) = (reg.clone(), q.clone());
        thread::spawn(move || ok(&reg, &q, "get", &[]))
    };
    // While it waits, other threads use the queue itself and another object.
    thread::sleep(Duration::from_millis(100));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (reg, q, l) = (reg.clone(), q.clone(), l.clone());
            thread::spawn(move || {
                for i in 0..200 {
                    ok(&reg, &l, "append", &[Value::Int(i)]);
                    assert!(as_bool(&ok(&reg, &q, "empty", &[])));
                }
            })
        })
        .collect();
    let t = Instant::now();
    for w in workers {
        w.join().unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(!getter.is_finished());
    assert_eq!(ok(&reg, &l, "__len__", &[]).as_i64(), Some(800));
    ok(&reg, &q, "put", &[Value::str("wake")]);
    assert_eq!(getter.join().unwrap().as_str(), Some("wake"));
}

#[test]
fn every_item_delivered_exactly_once_across_threads() {
    const PRODUCERS: i64 = 4;
    const PER: i64 = 500;
    let reg = Arc::new(Registry::with_builtin_types());
    // Bounded, so producers block too.
    let q = new(&reg, "Queue", &[Value::Int(8)], &Kwargs::new());
    let start = Arc::new(Barrier::new(PRODUCERS as usize + 4));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (reg, q, start) = (reg.clone(), q.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..PER {
                    ok(&reg, &q, "put", &[Value::Int(p * PER + i)]);
                }
            })
        })
        .collect();
    let taken = Arc::new(AtomicUsize::new(0));
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let (reg, q, start, taken) = (reg.clone(), q.clone(), start.clone(), taken.clone());
            thread::spawn(move || {
                start.wait();
                let mut got = Vec::new();
                while taken.load(Ordering::SeqCst) < (PRODUCERS * PER) as usize {
                    match call(
                        &reg,
                        &q,
                        "get",
                        &[Value::Bool(true), Value::Float(0.05)],
                        &Kwargs::new(),
                    ) {
                        Ok(v) => {
                            taken.fetch_add(1, Ordering::SeqCst);
                            got.push(v.as_i64().unwrap());
                        }
                        Err(CallError::Python(e)) if e.ty.name() == "Empty" => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut all = Vec::new();
    for c in consumers {
        all.extend(c.join().unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), (PRODUCERS * PER) as usize);
    assert_eq!(unique, (0..PRODUCERS * PER).collect::<HashSet<_>>());
    assert!(as_bool(&ok(&reg, &q, "empty", &[])));
}

#[test]
fn joinable_queue_join_waits_for_task_done() {
    let reg = Arc::new(Registry::with_builtin_types());
    let q = new(&reg, "JoinableQueue", &[], &Kwargs::new());
    ok(&reg, &q, "join", &[]); // nothing unfinished: returns at once
    for i in 0..6 {
        ok(&reg, &q, "put", &[Value::Int(i)]);
    }
    let joined = Arc::new(AtomicBool::new(false));
    let joiner = {
        let (reg, q, joined) = (reg.clone(), q.clone(), joined.clone());
        thread::spawn(move || {
            ok(&reg, &q, "join", &[]);
            joined.store(true, Ordering::SeqCst);
        })
    };
    for _ in 0..6 {
        ok(&reg, &q, "get", &[]);
    }
    for _ in 0..5 {
        ok(&reg, &q, "task_done", &[]);
    }
    thread::sleep(Duration::from_millis(100));
    assert!(
        !joined.load(Ordering::SeqCst),
        "join returned with a task unfinished"
    );
    ok(&reg, &q, "task_done", &[]);
    joiner.join().unwrap();
    assert!(joined.load(Ordering::SeqCst));
    assert_eq!(
        err(&reg, &q, "task_done", &[], &Kwargs::new()),
        (
            "ValueError: task_done() called too many times".into(),
            path("builtins", "ValueError")
        )
    );
}

#[test]
fn shutdown_as_cpython_3_13() {
    let reg = Arc::new(Registry::with_builtin_types());
    let shut = path("queue", "ShutDown");
    // Graceful: puts fail, gets drain what is left, then fail.
    let q = new(&reg, "Queue", &[], &Kwargs::new());
    ok(&reg, &q, "put", &[Value::Int(1)]);
    ok(&reg, &q, "shutdown", &[]);
    assert_eq!(
        err(&reg, &q, "put", &[Value::Int(2)], &Kwargs::new()),
        ("ShutDown".into(), shut.clone())
    );
    assert_eq!(ok(&reg, &q, "get", &[]).as_i64(), Some(1));
    assert_eq!(err(&reg, &q, "get", &[], &Kwargs::new()).1, shut);
    // ShutDown wins over Empty and over a bad timeout.
    assert_eq!(err(&reg, &q, "get_nowait", &[], &Kwargs::new()).1, shut);
    assert_eq!(
        err(
            &reg,
            &q,
            "get",
            &[Value::Bool(true), Value::Int(-1)],
            &Kwargs::new()
        )
        .1,
        shut
    );

    // Blocked getters and putters are released.
    let empty = new(&reg, "Queue", &[], &Kwargs::new());
    let full = new(&reg, "Queue", &[Value::Int(1)], &Kwargs::new());
    ok(&reg, &full, "put", &[Value::Int(0)]);
    let g = {
        let (reg, q) = (reg.clone(), empty.clone());
        thread::spawn(move || err(&reg, &q, "get", &[], &Kwargs::new()).1)
    };
    let p = {
        let (reg, q) = (reg.clone(), full.clone());
        thread::spawn(move || err(&reg, &q, "put", &[Value::Int(1)], &Kwargs::new()).1)
    };
    thread::sleep(Duration::from_millis(100));
    ok(&reg, &empty, "shutdown", &[]);
    ok(&reg, &full, "shutdown", &[]);
    assert_eq!(g.join().unwrap(), shut);
    assert_eq!(p.join().unwrap(), shut);

    // Immediate: items dropped, their tasks done, join released.
    let j = new(&reg, "JoinableQueue", &[], &Kwargs::new());
    for i in 0..3 {
        ok(&reg, &j, "put", &[Value::Int(i)]);
    }
    let joiner = {
        let (reg, q) = (reg.clone(), j.clone());
        thread::spawn(move || ok(&reg, &q, "join", &[]))
    };
    thread::sleep(Duration::from_millis(50));
    call(
        &reg,
        &j,
        "shutdown",
        &[],
        &kw(&[("immediate", Value::Bool(true))]),
    )
    .unwrap();
    joiner.join().unwrap();
    assert_eq!(ok(&reg, &j, "qsize", &[]).as_i64(), Some(0));
    assert_eq!(err(&reg, &j, "get", &[], &Kwargs::new()).1, shut);
}

#[test]
fn queue_and_event_cannot_be_pickled() {
    let reg = Registry::with_builtin_types();
    for typeid in ["Queue", "JoinableQueue", "Event"] {
        let id = new(&reg, typeid, &[], &Kwargs::new());
        match reg
            .call(&cx(), &id, "#GETVALUE", &[], &Kwargs::new())
            .unwrap()
        {
            Reply::Unserializable(e) => {
                assert_eq!(e.ty, ExcType::TypeError);
                assert_eq!(
                    e.to_string(),
                    "TypeError: cannot pickle '_thread.lock' object"
                );
            }
            other => panic!("{typeid}: {other:?}"),
        }
    }
}

#[test]
fn queue_items_are_visited_for_nested_proxies() {
    use mpmanager_objects::types::QueueObject;
    use mpmanager_objects::Referent;
    let q = QueueObject::with_maxsize(0);
    q.call(&cx(), "put", &[Value::Int(7)], &Kwargs::new())
        .unwrap();
    q.call(&cx(), "put", &[Value::str("x")], &Kwargs::new())
        .unwrap();
    let mut seen = Vec::new();
    q.visit_values(&mut |v| seen.push(mpmanager_pickle::repr(v)));
    assert_eq!(seen, ["7", "'x'"]);
}

#[test]
fn event_set_wait_clear() {
    let reg = Arc::new(Registry::with_builtin_types());
    let e = new(&reg, "Event", &[], &Kwargs::new());
    assert!(!as_bool(&ok(&reg, &e, "is_set", &[])));
    // Non-positive and NaN timeouts do not wait.
    for t in [Value::Float(0.0), Value::Int(-1), Value::Float(f64::NAN)] {
        let start = Instant::now();
        assert!(!as_bool(&ok(&reg, &e, "wait", &[t])));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
    let start = Instant::now();
    assert!(!as_bool(&ok(&reg, &e, "wait", &[Value::Float(0.2)])));
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        err(&reg, &e, "wait", &[Value::str("x")], &Kwargs::new()).0,
        "TypeError: '>' not supported between instances of 'str' and 'int'"
    );
    // A waiter on another thread is woken by set() and returns True.
    let waiter = {
        let (reg, e) = (reg.clone(), e.clone());
        thread::spawn(move || as_bool(&ok(&reg, &e, "wait", &[])))
    };
    thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished());
    ok(&reg, &e, "set", &[]);
    assert!(waiter.join().unwrap());
    assert!(as_bool(&ok(&reg, &e, "is_set", &[])));
    // Set: wait returns at once, whatever the timeout (not even checked).
    assert!(as_bool(&ok(&reg, &e, "wait", &[Value::str("x")])));
    assert!(as_bool(
        &call(&reg, &e, "wait", &[], &kw(&[("timeout", Value::Int(0))])).unwrap()
    ));
    assert!(ok(&reg, &e, "__repr__", &[])
        .as_str()
        .unwrap()
        .ends_with(": set>"));
    ok(&reg, &e, "clear", &[]);
    assert!(!as_bool(&ok(&reg, &e, "is_set", &[])));
    assert!(ok(&reg, &e, "__repr__", &[])
        .as_str()
        .unwrap()
        .ends_with(": unset>"));
    assert_eq!(
        err(&reg, &e, "set", &[Value::Int(1)], &Kwargs::new()).0,
        "TypeError: Event.set() takes 1 positional argument but 2 were given"
    );
    // A timed wait ended early by set() returns True.
    let waiter = {
        let (reg, e) = (reg.clone(), e.clone());
        thread::spawn(move || {
            let t = Instant::now();
            (
                as_bool(&ok(&reg, &e, "wait", &[Value::Int(30)])),
                t.elapsed(),
            )
        })
    };
    thread::sleep(Duration::from_millis(100));
    ok(&reg, &e, "set", &[]);
    let (got, took) = waiter.join().unwrap();
    assert!(got);
    assert!(took < Duration::from_secs(20), "{took:?}");
}
