//! A call whose deadline expires is cancelled on the server: the client
//! closes that call's connection, and the server, seeing it close, ends the
//! call without taking anything. A queue `get` that timed out does not
//! swallow the next item put; a lock `acquire` that timed out does not
//! take the lock later.

use std::time::{Duration, Instant};

use mpmanager_client::{ClientError, Manager};
use mpmanager_pickle::Value;

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn expired_get_deadline_does_not_swallow_the_next_item() {
    let m = Manager::start_in_background(b"key").unwrap();
    let handle = m.server().unwrap().handle();
    let q = m.create("Queue", vec![], vec![]).unwrap();
    let idle = handle.active_connections();
    for round in 0..10 {
        let deadline = Instant::now() + Duration::from_millis(50);
        let err = q
            .call_with_deadline("get", vec![], vec![], deadline)
            .unwrap_err();
        assert!(matches!(err, ClientError::DeadlineExceeded { .. }), "{err}");
        // The server ends the cancelled call and frees its connection.
        wait_for("the cancelled call's connection to close", || {
            handle.active_connections() <= idle
        });
        q.call("put", vec![Value::Int(round)], vec![]).unwrap();
        let got = q
            .call_with_deadline(
                "get",
                vec![],
                vec![],
                Instant::now() + Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(got.into_value().as_i64(), Some(round), "round {round}");
    }
}

#[test]
fn expired_acquire_deadline_takes_no_lock() {
    let m = Manager::start_in_background(b"key").unwrap();
    let handle = m.server().unwrap().handle();
    let lock = m.create("Lock", vec![], vec![]).unwrap();
    let acquired = lock.call("acquire", vec![], vec![]).unwrap().into_value();
    assert!(matches!(acquired, Value::Bool(true)));
    let idle = handle.active_connections();
    for _ in 0..5 {
        // A plain Lock is not reentrant: this waits, then times out.
        let deadline = Instant::now() + Duration::from_millis(50);
        let err = lock
            .call_with_deadline("acquire", vec![], vec![], deadline)
            .unwrap_err();
        assert!(matches!(err, ClientError::DeadlineExceeded { .. }), "{err}");
        wait_for("the cancelled acquire to end", || {
            handle.active_connections() <= idle
        });
    }
    lock.call("release", vec![], vec![]).unwrap();
    // No timed-out acquire took it meanwhile.
    let r = lock
        .call("acquire", vec![Value::Bool(false)], vec![])
        .unwrap();
    assert!(
        matches!(r.into_value(), Value::Bool(true)),
        "a timed-out acquire took the lock"
    );
}
