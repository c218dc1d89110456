//! The Rust client against real servers: an in-process mpmanager server
//! and CPython `SyncManager` servers (oldest and newest interpreter).

use crate::common;

use std::time::{Duration, Instant};

use common::{peers, python_client, test_pythons, PyServer, KEY};
use mpmanager_client::{ClientError, DictProxy, ListProxy, Manager, Proxy, Value};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Job {
    id: u32,
    name: String,
    weights: Vec<f64>,
}

#[test]
fn typed_round_trips() {
    for peer in peers() {
        let m = &peer.manager;
        let who = &peer.name;
        // Namespace
        let ns = m.namespace().unwrap();
        ns.set("x", &10).unwrap();
        ns.set("name", &"Bob").unwrap();
        assert_eq!(ns.get::<i64>("x").unwrap(), 10, "{who}");
        assert_eq!(ns.to_string(), "Namespace(name='Bob', x=10)", "{who}");
        ns.del("x").unwrap();
        assert!(!ns.contains("x").unwrap(), "{who}");
        assert!(
            matches!(ns.get::<i64>("_x"), Err(ClientError::PrivateName(_))),
            "{who}"
        );
        // list of structs
        let job = Job {
            id: 1,
            name: "a".into(),
            weights: vec![0.5, 1.5],
        };
        let l = m.list(std::slice::from_ref(&job)).unwrap();
        let job2 = Job {
            id: 2,
            name: "b".into(),
            weights: vec![],
        };
        l.push(&job2).unwrap();
        assert_eq!(l.len().unwrap(), 2, "{who}");
        assert_eq!(l.get(-1).unwrap(), job2, "{who}");
        assert_eq!(
            l.to_vec().unwrap(),
            vec![job.clone(), job2.clone()],
            "{who}"
        );
        assert_eq!(l.pop(0).unwrap(), job, "{who}");
        assert_eq!(l.index(&job2).unwrap(), 0, "{who}");
        // dict
        let d: DictProxy<String, i64> = m.dict().unwrap();
        for (i, k) in ["z", "a", "m"].iter().enumerate() {
            d.insert(&k.to_string(), &(i as i64)).unwrap();
        }
        assert_eq!(d.keys().unwrap(), ["z", "a", "m"], "{who}");
        assert_eq!(d.get(&"a".into()).unwrap(), Some(1), "{who}");
        assert_eq!(d.get(&"q".into()).unwrap(), None, "{who}");
        assert_eq!(d.remove(&"z".into()).unwrap(), 0, "{who}");
        assert_eq!(d.to_string(), "{'a': 1, 'm': 2}", "{who}");
        // raw values
        let raw = m
            .create(
                "dict",
                vec![],
                vec![(
                    "k".into(),
                    Value::tuple(vec![Value::None, Value::Float(2.5)]),
                )],
            )
            .unwrap();
        let got: Value = raw.get_value().unwrap();
        assert_eq!(mpmanager_pickle::repr(&got), "{'k': (None, 2.5)}", "{who}");
        // Value
        let v = m.value("i", &3).unwrap();
        v.set(&4).unwrap();
        assert_eq!(v.get().unwrap(), 4, "{who}");
        assert_eq!(v.to_string(), "Value('i', 4)", "{who}");
        // Queue
        let q = m.queue::<Job>(2).unwrap();
        q.put(&job).unwrap();
        q.put_timeout(&job2, Duration::from_secs(1)).unwrap();
        assert!(q.is_full().unwrap(), "{who}");
        assert_eq!(q.get().unwrap(), job, "{who}");
        assert_eq!(q.get_nowait().unwrap(), job2, "{who}");
        assert!(q.is_empty().unwrap(), "{who}");
        let jq = m.joinable_queue::<i64>(0).unwrap();
        jq.put(&1).unwrap();
        let worker = {
            let jq = jq.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                assert_eq!(jq.get().unwrap(), 1);
                jq.task_done().unwrap();
            })
        };
        jq.join().unwrap(); // returns once the worker marked the item done
        worker.join().unwrap();
        assert!(
            jq.task_done().unwrap_err().is_exception("ValueError"),
            "{who}"
        );
        // Event
        let e = m.event().unwrap();
        assert!(!e.is_set().unwrap(), "{who}");
        e.set().unwrap();
        assert!(e.wait(Some(Duration::from_secs(1))).unwrap(), "{who}");
        // Lock and RLock (reentrant on the guard's connection)
        let lock = m.lock().unwrap();
        let g = lock.acquire().unwrap();
        assert!(
            lock.try_acquire_for(Duration::from_millis(20))
                .unwrap()
                .is_none(),
            "{who}"
        );
        g.release().unwrap();
        assert!(
            lock.try_acquire_for(Duration::ZERO).unwrap().is_some(),
            "{who}"
        );
        let rlock = m.rlock().unwrap();
        {
            let _g = rlock.acquire().unwrap();
        }
        let g = rlock.acquire().unwrap();
        g.release().unwrap();
        assert!(rlock.to_string().contains("unlocked"), "{who}: {rlock}");
    }
}

#[test]
fn remote_exceptions_carry_python_types() {
    for peer in peers() {
        let m = &peer.manager;
        let who = &peer.name;
        let l = m.list::<i64>(&[1]).unwrap();
        let e = l.get(7).unwrap_err();
        let exc = e.exception().unwrap_or_else(|| panic!("{who}: {e}"));
        assert_eq!(
            (exc.module(), exc.type_name()),
            ("builtins", "IndexError"),
            "{who}"
        );
        assert_eq!(exc.message(), Some("list index out of range"), "{who}");
        assert!(!e.is_transport() && !e.reconnect_may_help(), "{who}");
        let e = l.index(&5).unwrap_err();
        assert!(e.is_exception("ValueError"), "{who}: {e}");

        let d: DictProxy<String, i64> = m.dict().unwrap();
        let e = d.get_item(&"zz".into()).unwrap_err();
        let exc = e.exception().unwrap();
        assert!(exc.is("KeyError") && exc.is("builtins.KeyError"), "{who}");
        assert_eq!(mpmanager_pickle::repr(&exc.args()[0]), "'zz'", "{who}");

        let ns = m.namespace().unwrap();
        let e = ns.get::<i64>("nope").unwrap_err();
        assert!(e.is_exception("AttributeError"), "{who}: {e}");

        let q = m.queue::<i64>(1).unwrap();
        assert!(matches!(q.get_nowait(), Err(ClientError::Empty)), "{who}");
        let t = Instant::now();
        assert!(
            matches!(
                q.get_timeout(Duration::from_millis(100)),
                Err(ClientError::Empty)
            ),
            "{who}"
        );
        assert!(t.elapsed() >= Duration::from_millis(90), "{who}");
        q.put(&1).unwrap();
        assert!(matches!(q.put_nowait(&2), Err(ClientError::Full)), "{who}");
        assert!(ClientError::Empty.is_exception("_queue.Empty"));

        // Failures outside the referent's call: RemoteError (#TRACEBACK).
        let e = l
            .proxy()
            .call("no_such_method", vec![], vec![])
            .unwrap_err();
        match &e {
            ClientError::RemoteError(text) => {
                assert!(text.contains("no_such_method"), "{who}: {text}")
            }
            other => panic!("{who}: {other:?}"),
        }
        let e = m.create("NoSuchType", vec![], vec![]).unwrap_err();
        assert!(matches!(e, ClientError::RemoteError(_)), "{who}: {e:?}");
        // Still usable after errors.
        assert_eq!(l.len().unwrap(), 1, "{who}");
    }
}

#[test]
fn wrong_authkey_is_an_auth_failure() {
    let m = Manager::start_in_background(KEY).unwrap();
    let e = Manager::connect(&m.address().to_string(), b"wrong").unwrap_err();
    match &e {
        ClientError::Connection(c) => assert!(c.is_auth_failure(), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(e.is_transport() && !e.reconnect_may_help());
    if let Some(p) = test_pythons().pop() {
        let s = PyServer::start(&p);
        let e = Manager::connect(&s.address, b"wrong").unwrap_err();
        assert!(
            matches!(&e, ClientError::Connection(c) if c.is_auth_failure()),
            "{e:?}"
        );
    }
}

#[test]
fn unreachable_server_says_reconnect_may_help() {
    let m = Manager::start_in_background(KEY).unwrap();
    let addr = m.address().to_string();
    drop(m);
    let e = Manager::connect(&addr, KEY).unwrap_err();
    assert!(e.is_transport() && e.reconnect_may_help(), "{e:?}");
}

#[test]
fn python_processes_see_rust_changes() {
    let Some(py) = test_pythons().pop() else {
        return;
    };
    for peer in peers() {
        let m = &peer.manager;
        let who = &peer.name;
        let address = peer
            .py
            .as_ref()
            .map_or_else(|| m.address().to_string(), |s| s.address.clone());
        let ns = m.namespace().unwrap();
        ns.set("x", &42).unwrap();
        ns.set("greeting", &"hi from Rust").unwrap();
        let l = m.list(&[1.5, 2.5]).unwrap();
        let code = r#"
ns = rebuild(sys.argv[3])
l = rebuild(sys.argv[4])
print(ns.x, ns.greeting, list(l[:]))
ns.y = 'set by Python'
l.append(99.0)
"#;
        let out = python_client(
            &py,
            &address,
            code,
            &[
                &ns.proxy().to_proxy_string().unwrap(),
                &l.proxy().to_proxy_string().unwrap(),
            ],
        );
        assert_eq!(out.trim(), "42 hi from Rust [1.5, 2.5]", "{who}");
        assert_eq!(ns.get::<String>("y").unwrap(), "set by Python", "{who}");
        assert_eq!(l.to_vec().unwrap(), [1.5, 2.5, 99.0], "{who}");
    }
}

#[test]
fn nested_proxies_cross_between_rust_and_python() {
    let Some(py) = test_pythons().pop() else {
        return;
    };
    for peer in peers() {
        let m = &peer.manager;
        let who = &peer.name;
        let address = peer
            .py
            .as_ref()
            .map_or_else(|| m.address().to_string(), |s| s.address.clone());
        let start = m.number_of_objects().unwrap();
        {
            // Rust nests a proxy; Python reads it as a live proxy and nests
            // one of its own (whose only Python reference dies on exit).
            let inner = m.list(&[1i64]).unwrap();
            let outer = m.list::<ListProxy<i64>>(&[]).unwrap();
            outer.push(&inner).unwrap();
            let code = r#"
outer = rebuild(sys.argv[3])
first = outer[0]
print(type(first).__name__, list(first[:]))
first.append(2)
outer.append(m.list([7, 8]))
"#;
            let out = python_client(
                &py,
                &address,
                code,
                &[&outer.proxy().to_proxy_string().unwrap()],
            );
            assert_eq!(out.trim(), "ListProxy [1]", "{who}");
            assert_eq!(inner.to_vec().unwrap(), [1, 2], "{who}");
            // The list Python made lives on inside `outer`; reading it revives it.
            let made_by_python = outer.get(1).unwrap();
            assert_eq!(made_by_python.to_vec().unwrap(), [7, 8], "{who}");
        }
        assert_eq!(
            m.number_of_objects().unwrap(),
            start,
            "{who}: {}",
            m.debug_info().unwrap()
        );
    }
}

#[test]
fn refcounts_return_to_start_after_clone_and_drop_storms() {
    for peer in peers() {
        let m = &peer.manager;
        let who = &peer.name;
        let start = m.number_of_objects().unwrap();
        {
            let l = m.list(&[1, 2, 3]).unwrap();
            let ns = m.namespace().unwrap();
            assert_eq!(m.number_of_objects().unwrap(), start + 2, "{who}");
            // Cheap clones share one reference; new_reference takes more.
            let clones: Vec<_> = (0..100).map(|_| l.clone()).collect();
            let refs: Vec<Proxy> = (0..20)
                .map(|_| ns.proxy().new_reference().unwrap())
                .collect();
            assert_eq!(m.number_of_objects().unwrap(), start + 2, "{who}");
            drop(ns);
            // The namespace lives on through the other references.
            assert_eq!(refs[0].repr().unwrap(), "Namespace()", "{who}");
            drop(l);
            assert_eq!(clones[99].len().unwrap(), 3, "{who}");
            // Clones and drops from several threads at once.
            std::thread::scope(|s| {
                for t in 0..4 {
                    let refs = &refs;
                    let clones = &clones;
                    s.spawn(move || {
                        for i in 0..10 {
                            let r = refs[(t + i) % refs.len()].new_reference().unwrap();
                            let c = clones[i].clone();
                            drop(r);
                            drop(c);
                        }
                    });
                }
            });
            assert_eq!(m.number_of_objects().unwrap(), start + 2, "{who}");
        }
        assert_eq!(
            m.number_of_objects().unwrap(),
            start,
            "{who}: {}",
            m.debug_info().unwrap()
        );
    }
}

#[test]
fn nested_proxies_are_live_and_counted() {
    for peer in peers() {
        let m = &peer.manager;
        let who = &peer.name;
        let start = m.number_of_objects().unwrap();
        {
            let inner = m.list(&[1i64]).unwrap();
            let outer = m.list::<ListProxy<i64>>(&[]).unwrap();
            outer.push(&inner).unwrap();
            outer.push(&inner).unwrap();
            let d: DictProxy<String, ListProxy<i64>> = m.dict().unwrap();
            d.insert(&"in".into(), &inner).unwrap();
            drop(inner); // only the containers hold it now
            let a = outer.get(0).unwrap();
            a.push(&2).unwrap();
            let b = d.get_item(&"in".into()).unwrap();
            assert_eq!(b.to_vec().unwrap(), [1, 2], "{who}");
            assert!(a.proxy().same_object(b.proxy()), "{who}");
            // Storm of reads: each read takes a reference, each drop gives it back.
            for _ in 0..30 {
                let x = outer.get(1).unwrap();
                drop(x);
            }
            let all = outer.to_vec().unwrap();
            assert_eq!(all.len(), 2, "{who}");
            assert_eq!(all[1].len().unwrap(), 2, "{who}");
            let keys: Vec<String> = d.iter().unwrap().collect::<Result<_, _>>().unwrap();
            assert_eq!(keys, ["in"], "{who}");
            let mut it = d.iter().unwrap();
            d.insert(&"new".into(), &outer.get(0).unwrap()).unwrap();
            let e = it.next().unwrap().unwrap_err();
            assert!(e.is_exception("RuntimeError"), "{who}: {e}");
            assert!(it.next().is_none(), "{who}");
            d.remove(&"new".into()).unwrap();
            // Raw access: the pickled proxy inside a returned value.
            let r = outer
                .proxy()
                .call("__getitem__", vec![Value::Int(0)], vec![])
                .unwrap();
            let found = r.proxies().unwrap();
            assert_eq!(found.len(), 1, "{who}");
            assert_eq!(found[0].typeid(), "list", "{who}");
            // A #PROXY reply: iter(dict) gives an Iterator proxy.
            let it = d.proxy().call("__iter__", vec![], vec![]).unwrap();
            assert!(it.is_proxy(), "{who}");
            let it = it.into_proxy().unwrap();
            assert_eq!(it.typeid(), "Iterator", "{who}");
            let k: String = it.call("__next__", vec![], vec![]).unwrap().get().unwrap();
            assert_eq!(k, "in", "{who}");
            let e = it.call("__next__", vec![], vec![]).unwrap_err();
            assert!(e.is_exception("StopIteration"), "{who}: {e}");
        }
        assert_eq!(
            m.number_of_objects().unwrap(),
            start,
            "{who}: {}",
            m.debug_info().unwrap()
        );
    }
}

#[test]
fn deadlines_expire_and_the_proxy_stays_usable() {
    for peer in peers() {
        let m = &peer.manager;
        let who = &peer.name;
        let q = m.queue::<i64>(0).unwrap();
        let t = Instant::now();
        let e = q
            .proxy()
            .call_with_deadline(
                "get",
                vec![],
                vec![],
                Instant::now() + Duration::from_millis(150),
            )
            .unwrap_err();
        let took = t.elapsed();
        assert!(
            matches!(e, ClientError::DeadlineExceeded { ref method } if method == "get"),
            "{who}: {e:?}"
        );
        assert!(
            took >= Duration::from_millis(140) && took < Duration::from_secs(5),
            "{who}: {took:?}"
        );
        assert!(e.is_transport() && e.reconnect_may_help());
        // A deadline in the past fails at once, without sending.
        let e = q
            .proxy()
            .call_with_deadline("qsize", vec![], vec![], Instant::now())
            .unwrap_err();
        assert!(matches!(e, ClientError::DeadlineExceeded { .. }), "{who}");
        // Calls that answer in time are unaffected.
        let n: usize = q
            .proxy()
            .call_with_deadline(
                "qsize",
                vec![],
                vec![],
                Instant::now() + Duration::from_secs(5),
            )
            .unwrap()
            .get()
            .unwrap();
        assert_eq!(n, 0, "{who}");
        let l = m.list(&[1]).unwrap();
        assert_eq!(l.len().unwrap(), 1, "{who}");
    }
}

#[test]
fn pipelined_results_equal_sequential_ones() {
    for peer in peers() {
        let m = &peer.manager;
        let who = &peer.name;
        let seq = m.list::<Value>(&[]).unwrap();
        let pip = m.list::<Value>(&[]).unwrap();
        let d: DictProxy<String, i64> = m.dict().unwrap();
        let ops = |l: &Proxy| -> Vec<(Proxy, &'static str, Vec<Value>)> {
            let mut v = Vec::new();
            for i in 0..150 {
                v.push((l.clone(), "append", vec![Value::Int(i * i)]));
                if i % 7 == 0 {
                    v.push((l.clone(), "__getitem__", vec![Value::Int(i / 2)]));
                    v.push((l.clone(), "__getitem__", vec![Value::Int(10_000)])); // IndexError
                    v.push((
                        d.proxy().clone(),
                        "get",
                        vec![Value::str("k"), Value::Int(-1)],
                    ));
                    v.push((
                        d.proxy().clone(),
                        "__setitem__",
                        vec![Value::str("k"), Value::Int(i)],
                    ));
                }
            }
            v.push((l.clone(), "__len__", vec![]));
            v.push((l.clone(), "__repr__", vec![]));
            v
        };
        let show = |r: mpmanager_client::Result<mpmanager_client::Response>| match r {
            Ok(v) => mpmanager_pickle::repr(&v.into_value()),
            Err(e) => format!(
                "error {}",
                e.exception()
                    .map(|x| x.to_string())
                    .unwrap_or(e.to_string())
            ),
        };
        let sequential: Vec<String> = ops(seq.proxy())
            .into_iter()
            .map(|(p, meth, args)| show(p.call(meth, args, vec![])))
            .collect();
        d.clear().unwrap();
        let mut batch = pip.proxy().pipeline();
        for (p, meth, args) in ops(pip.proxy()) {
            batch.call(&p, meth, args, vec![]);
        }
        assert_eq!(batch.len(), sequential.len());
        let piped: Vec<String> = batch.run().unwrap().into_iter().map(show).collect();
        assert_eq!(piped, sequential, "{who}");
        assert!(
            piped.iter().any(|s| s.starts_with("error IndexError")),
            "{who}"
        );
        assert_eq!(seq.to_vec().unwrap().len(), 150, "{who}");
        assert_eq!(
            mpmanager_pickle::repr(&pip.proxy().get_value::<Value>().unwrap()),
            mpmanager_pickle::repr(&seq.proxy().get_value::<Value>().unwrap()),
            "{who}"
        );
        // Manager::batch works the same way and the connection is reused after.
        let mut b = m.batch();
        b.call(pip.proxy(), "__len__", vec![], vec![]);
        let r: Vec<usize> = b
            .run()
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap().get().unwrap())
            .collect();
        assert_eq!(r, [150], "{who}");
    }
}

#[test]
fn proxies_are_shared_across_threads() {
    for peer in peers() {
        let m = &peer.manager;
        let l = m.list::<i64>(&[]).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let l = l.clone();
                s.spawn(move || {
                    for i in 0..25 {
                        l.push(&(t * 100 + i)).unwrap();
                    }
                });
            }
        });
        let mut all = l.to_vec().unwrap();
        all.sort();
        let mut want: Vec<i64> = (0..8)
            .flat_map(|t| (0..25).map(move |i| t * 100 + i))
            .collect();
        want.sort();
        assert_eq!(all, want, "{}", peer.name);
    }
}

#[test]
fn shutdown_stops_a_cpython_server() {
    let Some(p) = test_pythons().pop() else {
        return;
    };
    let mut s = PyServer::start(&p);
    let m = s.connect();
    let ns = m.namespace().unwrap();
    m.shutdown().unwrap();
    let t = Instant::now();
    loop {
        if s.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "CPython server still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(
        ns.get::<i64>("x"),
        Err(ClientError::ManagerShutDown)
    ));
    drop(ns); // no decref attempted
}

#[test]
fn cpython_server_on_a_unix_socket() {
    let Some(p) = test_pythons().into_iter().next() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("mpm-client-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mgr");
    let s = PyServer::start_at(&p, path.to_str().unwrap());
    assert!(s.address.starts_with("unix:"), "{}", s.address);
    let m = s.connect();
    let start = m.number_of_objects().unwrap();
    let d: DictProxy<String, String> = m.dict().unwrap();
    d.insert(&"k".into(), &"v".into()).unwrap();
    let inner = m.list(&[1]).unwrap();
    let outer = m.list::<ListProxy<i64>>(&[]).unwrap();
    outer.push(&inner).unwrap();
    assert_eq!(outer.get(0).unwrap().to_vec().unwrap(), [1]);
    assert_eq!(d.items().unwrap(), [("k".to_string(), "v".to_string())]);
    drop((d, inner, outer));
    assert_eq!(m.number_of_objects().unwrap(), start);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rebuilt in a child process: the test binary runs itself with the proxy
/// string and the authkey in the environment.
#[test]
fn proxy_string_rebuilt_in_a_child_process() {
    if let Ok(s) = std::env::var("MPM_CLIENT_CHILD_PROXY") {
        // In the child.
        let key = std::env::var("MPM_CLIENT_CHILD_KEY").unwrap();
        let p = Proxy::from_proxy_string(&s, key.as_bytes()).unwrap();
        let ns = mpmanager_client::Namespace::from_proxy(p);
        let x: i64 = ns.get("x").unwrap();
        ns.set("from_child", &(x * 2)).unwrap();
        return;
    }
    for peer in peers() {
        let m = &peer.manager;
        let start = m.number_of_objects().unwrap();
        let ns = m.namespace().unwrap();
        ns.set("x", &21).unwrap();
        let s = ns.proxy().to_proxy_string().unwrap();
        assert!(!s.contains(std::str::from_utf8(KEY).unwrap()));
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                // This test's name, as the harness names its thread.
                std::thread::current().name().unwrap(),
                "--test-threads=1",
            ])
            .env("MPM_CLIENT_CHILD_PROXY", &s)
            .env("MPM_CLIENT_CHILD_KEY", std::str::from_utf8(KEY).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            peer.name,
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(ns.get::<i64>("from_child").unwrap(), 42, "{}", peer.name);
        // The child's reference was given back when it exited.
        drop(ns);
        assert_eq!(m.number_of_objects().unwrap(), start, "{}", peer.name);
        // Without the right key the child cannot connect.
        let e = Proxy::from_proxy_string(
            &m.namespace().unwrap().proxy().to_proxy_string().unwrap(),
            b"bad",
        )
        .unwrap_err();
        assert!(
            matches!(&e, ClientError::Connection(c) if c.is_auth_failure()),
            "{e:?}"
        );
        assert!(matches!(
            Proxy::from_proxy_string("garbage", KEY),
            Err(ClientError::NotAProxy(_))
        ));
    }
}

#[test]
fn proxies_outliving_an_in_process_manager_fail_cleanly() {
    let m = Manager::start_in_background(KEY).unwrap();
    let l = m.list(&[1]).unwrap();
    let addr = m.address().to_string();
    drop(m); // stops the server
    assert!(matches!(l.len(), Err(ClientError::ManagerShutDown)));
    let t = Instant::now();
    drop(l); // no decref attempted
    assert!(t.elapsed() < Duration::from_millis(500));
    assert!(Manager::connect(&addr, KEY)
        .unwrap_err()
        .reconnect_may_help());
}

/// After the server restarts at the same address, the idle pooled
/// connection to the old one is noticed and dropped before use: the next
/// call reaches the new server (which does not know the object) instead of
/// failing on the dead connection.
#[test]
fn stale_pooled_connections_are_not_used() {
    let Some(p) = test_pythons().pop() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("mpm-client-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mgr");
    let s1 = PyServer::start_at(&p, path.to_str().unwrap());
    let m = s1.connect();
    let l = m.list(&[1]).unwrap();
    assert_eq!(l.len().unwrap(), 1); // leaves one idle served connection
    drop(s1); // killed
    let _ = std::fs::remove_file(&path);
    let _s2 = PyServer::start_at(&p, path.to_str().unwrap());
    std::thread::sleep(Duration::from_millis(50));
    let e = l.len().unwrap_err();
    assert!(matches!(e, ClientError::RemoteError(_)), "{e:?}");
    drop(l);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn synchronisation_proxies_on_both_servers() {
    for peer in peers() {
        let m = &peer.manager;
        let who = &peer.name;
        let start = m.number_of_objects().unwrap();
        // Semaphore / BoundedSemaphore
        let s = m.bounded_semaphore(1).unwrap();
        s.acquire().unwrap();
        assert!(
            !s.try_acquire_for(Duration::from_millis(20)).unwrap(),
            "{who}"
        );
        s.release().unwrap();
        match s.release() {
            Err(ClientError::Exception(e)) => assert!(e.is("ValueError"), "{who}: {e}"),
            other => panic!("{who}: {other:?}"),
        }
        // Condition: a notifier thread, a waiter with wait_for.
        let cond = m.condition().unwrap();
        let flag = m.value("i", &0).unwrap();
        std::thread::scope(|sc| {
            sc.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                let g = cond.acquire().unwrap();
                flag.set(&1).unwrap();
                g.notify_all().unwrap();
            });
            let g = cond.acquire().unwrap();
            let ok = g
                .wait_for(
                    || flag.get().map(|v| v == 1).unwrap_or(false),
                    Some(Duration::from_secs(20)),
                )
                .unwrap();
            assert!(ok, "{who}");
            assert!(!g.wait(Some(Duration::from_millis(20))).unwrap(), "{who}");
        });
        // Barrier: three threads; then a lone waiter times out and breaks it.
        let b = m.barrier(3).unwrap();
        let mut idx: Vec<usize> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..3).map(|_| sc.spawn(|| b.wait(None).unwrap())).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        idx.sort();
        assert_eq!(idx, [0, 1, 2], "{who}");
        match b.wait(Some(Duration::from_millis(30))) {
            Err(ClientError::Exception(e)) => assert!(e.is("BrokenBarrierError"), "{who}: {e}"),
            other => panic!("{who}: {other:?}"),
        }
        assert!(b.broken().unwrap(), "{who}");
        b.reset().unwrap();
        assert_eq!(
            (b.parties().unwrap(), b.n_waiting().unwrap()),
            (3, 0),
            "{who}"
        );
        // Array
        let a = m.array::<i64>("i", &[1, 2, 3]).unwrap();
        a.set(-1, &30).unwrap();
        assert_eq!(a.to_vec().unwrap(), [1, 2, 30], "{who}");
        assert_eq!(a.to_string(), "array('i', [1, 2, 30])", "{who}");
        drop((s, cond, flag, b, a));
        assert_eq!(m.number_of_objects().unwrap(), start, "{who}");
    }
}
