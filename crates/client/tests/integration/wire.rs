//! The client against fake servers that misbehave on purpose.

use std::time::Duration;

use mpmanager_client::{Manager, Value};
use mpmanager_connection::{auth, Connection, Listener};
use mpmanager_pickle::{decode, encode};
use mpmanager_protocol::{Reply, Request};

const N: usize = 20;

fn serve_one(mut c: Connection, key: &[u8]) -> Option<bool> {
    auth::server_handshake(&mut c, key).ok()?;
    let first = Request::from_value(&decode(&c.recv(1 << 20).ok()?).ok()?).ok()?;
    let send = |c: &mut Connection, r: Reply| c.send(&encode(&r.to_value()).unwrap()).unwrap();
    match first.method.as_str() {
        "create" => {
            let v = Value::tuple(vec![Value::str("abc1"), Value::tuple(vec![])]);
            send(&mut c, Reply::Return(v));
            None
        }
        "accept_connection" => {
            send(&mut c, Reply::none());
            c.stream()
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut reqs = Vec::new();
            for _ in 0..N {
                match c.recv(1 << 20) {
                    Ok(f) => reqs.push(Request::from_value(&decode(&f).unwrap()).unwrap()),
                    Err(_) => return Some(false), // the client is waiting for a reply
                }
            }
            for r in reqs {
                send(&mut c, Reply::Return(r.args[0].clone()));
            }
            Some(true)
        }
        _ => {
            send(&mut c, Reply::none());
            None
        }
    }
}

#[test]
fn pipeline_sends_all_requests_before_reading() {
    let key = b"k".to_vec();
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let address = listener.local_address().to_string();
    let k2 = key.clone();
    let server = std::thread::spawn(move || {
        let mut verdict = None;
        for _ in 0..8 {
            let Ok(s) = listener.accept() else { break };
            if let Some(v) = serve_one(Connection::new(s), &k2) {
                verdict = Some(v);
                break;
            }
        }
        verdict
    });
    let m = Manager::connect(&address, &key).unwrap();
    let p = m.create("list", vec![], vec![]).unwrap();
    let mut batch = m.batch();
    for i in 0..N {
        batch.call(&p, "echo", vec![Value::Int(i as i64)], vec![]);
    }
    let out: Vec<i64> = batch
        .run()
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().get().unwrap())
        .collect();
    assert_eq!(out, (0..N as i64).collect::<Vec<_>>());
    assert_eq!(server.join().unwrap(), Some(true));
    std::mem::forget(p); // the fake server is gone: no decref
}

/// A deadline also bounds opening a new connection: a server that accepts
/// the TCP connection (in its backlog) but never authenticates.
#[test]
fn deadline_covers_connecting_and_authenticating() {
    let key = b"k".to_vec();
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let address = listener.local_address().to_string();
    let k2 = key.clone();
    // Serve `dummy` and `create`, then stop accepting.
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let s = listener.accept().unwrap();
            serve_one(Connection::new(s), &k2);
        }
        listener // keep listening (connections wait in the backlog)
    });
    let m = Manager::connect(&address, &key).unwrap();
    let p = m.create("list", vec![], vec![]).unwrap();
    let _listener = server.join().unwrap();
    let t = std::time::Instant::now();
    let e = p
        .call_with_deadline("__len__", vec![], vec![], t + Duration::from_millis(200))
        .unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(e, mpmanager_client::ClientError::DeadlineExceeded { .. }),
        "{e:?}"
    );
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "{took:?}"
    );
    std::mem::forget(p); // no decref to a server that does not answer
}
