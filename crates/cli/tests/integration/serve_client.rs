//! The native Rust client (`mpmanager-client`) against the `mpmanager
//! serve` binary: named shared objects, typed proxies, refcounts,
//! pipelining and a client-requested shutdown.

use crate::serve_common;

use std::time::Duration;

use mpmanager_client::{ClientError, ListProxy, Manager, Namespace, QueueProxy, Value};
use serve_common::{Key, ServeProc};

#[test]
fn rust_client_against_mpmanager_serve() {
    let mut server = ServeProc::start(
        "127.0.0.1:0",
        Key::Env("serve-client-key"),
        &["--object", "board=Namespace", "--object", "jobs=Queue"],
    );
    let address = server.address.to_string();
    let key = b"serve-client-key";
    let m1 = Manager::connect(&address, key).unwrap();
    let m2 = Manager::connect(&address, key).unwrap();
    let start = m1.number_of_objects().unwrap();

    // A named shared object is the same object for every client.
    let b1 = Namespace::from_proxy(m1.create("board", vec![], vec![]).unwrap());
    let b2 = Namespace::from_proxy(m2.create("board", vec![], vec![]).unwrap());
    assert!(b1.proxy().same_object(b2.proxy()));
    b1.set("x", &1).unwrap();
    assert_eq!(b2.get::<i64>("x").unwrap(), 1);
    let jobs: QueueProxy<String> =
        QueueProxy::from_proxy(m2.create("jobs", vec![], vec![]).unwrap());
    jobs.put(&"build".into()).unwrap();
    let jobs1: QueueProxy<String> =
        QueueProxy::from_proxy(m1.create("jobs", vec![], vec![]).unwrap());
    assert_eq!(jobs1.get_timeout(Duration::from_secs(1)).unwrap(), "build");
    assert!(matches!(jobs1.get_nowait(), Err(ClientError::Empty)));

    // Nested proxies and refcounts.
    {
        let inner = m1.list(&[1i64]).unwrap();
        let outer = m1.list::<ListProxy<i64>>(&[]).unwrap();
        outer.push(&inner).unwrap();
        drop(inner);
        let again = outer.get(0).unwrap();
        again.push(&2).unwrap();
        assert_eq!(again.to_vec().unwrap(), [1, 2]);
        // Pipelined results equal sequential ones.
        let mut batch = m2.batch();
        for i in 0..100 {
            batch.call(again.proxy(), "append", vec![Value::Int(i)], vec![]);
            batch.call(again.proxy(), "__len__", vec![], vec![]);
        }
        let lens: Vec<usize> = batch
            .run()
            .unwrap()
            .into_iter()
            .skip(1)
            .step_by(2)
            .map(|r| r.unwrap().get().unwrap())
            .collect();
        assert_eq!(lens, (3..103).collect::<Vec<_>>());
    }
    drop((b1, b2, jobs, jobs1));
    assert_eq!(
        m1.number_of_objects().unwrap(),
        start,
        "{}",
        m1.debug_info().unwrap()
    );

    m2.shutdown().unwrap();
    assert!(
        server.wait_exit(Duration::from_secs(10)).is_some(),
        "server still running"
    );
}

#[test]
fn rust_manager_starts_and_stops_a_server_process() {
    let bin = env!("CARGO_BIN_EXE_mpmanager");
    let key = b"\x00\xffbinary key";
    let m = Manager::start_server_process(bin, "127.0.0.1:0", key).unwrap();
    let ns = m.namespace().unwrap();
    ns.set("x", &1).unwrap();
    assert_eq!(ns.get::<i64>("x").unwrap(), 1);
    // A second client with the same (binary) key sees the object.
    let other = Manager::connect_to(m.address().clone(), key).unwrap();
    assert_eq!(other.number_of_objects().unwrap(), 1);
    let addr = m.address().clone();
    drop(ns);
    drop(other);
    drop(m); // shuts the process down
    let err = Manager::connect_to(addr, key).unwrap_err();
    assert!(err.reconnect_may_help(), "server still there? {err}");

    // A server that cannot start is a clear error, not a hang.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    match Manager::start_server_process(bin, &busy, key) {
        Err(ClientError::ServerProcess(msg)) => {
            assert!(msg.contains("did not start listening"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    match Manager::start_server_process("/nonexistent/mpmanager", "127.0.0.1:0", key) {
        Err(ClientError::ServerProcess(msg)) => assert!(msg.contains("cannot run"), "{msg}"),
        other => panic!("{other:?}"),
    }
}
