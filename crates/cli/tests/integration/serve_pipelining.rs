//! Pipelined requests on one served connection: `mpmanager serve` holds
//! back replies while the client's next requests are already buffered and
//! writes them together, without ever holding a reply behind a call that
//! can wait for another client.

use crate::serve_common;

use std::time::{Duration, Instant};

use mpmanager_pickle::{encode, Value};
use mpmanager_protocol::{PublicOp, Reply, Request};
use serve_common::{one_shot, recv, served, Key, ServeProc, TempDir};

fn create(server: &ServeProc, typeid: &str, args: Vec<Value>) -> String {
    let mut all = vec![Value::str(typeid)];
    all.extend(args);
    match one_shot(&server.address, b"k", PublicOp::Create, all) {
        Reply::Return(v) => {
            let Value::Tuple(t) = v else { panic!("{v:?}") };
            t[0].as_str().unwrap().to_string()
        }
        other => panic!("create {typeid}: {other:?}"),
    }
}

fn frame(ident: &str, method: &str, args: Vec<Value>) -> Vec<u8> {
    encode(&Request::call(ident, method, args, vec![]).to_value()).unwrap()
}

#[test]
fn pipelined_replies_come_back_in_order() {
    let dir = TempDir::new("pipe");
    let server = ServeProc::start(
        &format!("unix:{}", dir.path("sock").display()),
        Key::Env("k"),
        &[],
    );
    let list = create(&server, "list", vec![]);
    let mut c = served(&server.address, b"k");
    // 200 appends and a len, all written before any reply is read.
    let mut frames: Vec<Vec<u8>> = (0..200)
        .map(|i| frame(&list, "append", vec![Value::Int(i)]))
        .collect();
    frames.push(frame(&list, "__len__", vec![]));
    frames.push(frame(&list, "__getitem__", vec![Value::Int(199)]));
    frames.push(frame(&list, "no_such_method", vec![]));
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    c.send_many(&refs).unwrap();
    for _ in 0..200 {
        assert_eq!(recv(&mut c), Reply::none());
    }
    assert_eq!(recv(&mut c), Reply::Return(Value::Int(200)));
    assert_eq!(recv(&mut c), Reply::Return(Value::Int(199)));
    assert!(matches!(recv(&mut c), Reply::Traceback(_)));
}

/// Regression: a reply held back for batching must not wait behind a
/// pipelined call that blocks. Here the client needs the first reply
/// before it sets the event the second call waits for.
#[test]
fn held_replies_are_sent_before_a_call_that_may_wait() {
    let dir = TempDir::new("pipe-block");
    let server = ServeProc::start(
        &format!("unix:{}", dir.path("sock").display()),
        Key::Env("k"),
        &[],
    );
    let list = create(&server, "list", vec![]);
    let event = create(&server, "Event", vec![]);
    let mut c = served(&server.address, b"k");
    let frames = [
        frame(&list, "append", vec![Value::Int(1)]),
        frame(&list, "__len__", vec![]),
        frame(&event, "wait", vec![Value::Float(20.0)]),
    ];
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let t0 = Instant::now();
    c.send_many(&refs).unwrap();
    assert_eq!(recv(&mut c), Reply::none());
    assert_eq!(recv(&mut c), Reply::Return(Value::Int(1)));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the replies waited for the blocked call"
    );
    // Now let the waiting call finish, from another connection.
    let mut other = served(&server.address, b"k");
    c.send_many(&[]).unwrap();
    serve_common::send(
        &mut other,
        &Request::call(event.as_str(), "set", vec![], vec![]).to_value(),
    );
    assert_eq!(recv(&mut other), Reply::none());
    assert_eq!(recv(&mut c), Reply::Return(Value::Bool(true)));
}
