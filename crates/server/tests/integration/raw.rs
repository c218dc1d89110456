//! The server driven by a raw Rust client (the connection crate, hand-made
//! pickles and frames): exact reply bytes, one-shot operations, served
//! connections, bad input of every kind, limits, shutdown and rebinding.
//!
//! Every socket read has a timeout, so no test can hang.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mpmanager_connection::{auth, Address, Connection, ConnectionError};
use mpmanager_objects::{CallContext, CallError, Kwargs, Outcome, Referent, TypeSpec};
use mpmanager_pickle::PyErr;
use mpmanager_pickle::{decode, encode, encode_with, EncodeOptions, Value};
use mpmanager_protocol::{PublicOp, PyAddress, Reply, Request, Token};
use mpmanager_server::{BackgroundServer, Registry, Server, ServerConfig, ServerError};
use mpmanager_testutil::TempDir;
use std::sync::Arc;

const KEY: &[u8] = b"raw-test-key";
const IO: Duration = Duration::from_secs(10);

fn config(addr: &str) -> ServerConfig {
    let mut c = ServerConfig::new(addr.parse().unwrap(), KEY.to_vec());
    c.handshake_timeout = Duration::from_millis(500);
    c
}

fn spawn(c: ServerConfig) -> BackgroundServer {
    Server::bind(c).unwrap().spawn().unwrap()
}

fn tcp_server() -> BackgroundServer {
    spawn(config("127.0.0.1:0"))
}

/// Connects and authenticates.
fn client(addr: &Address) -> Connection {
    let c = Connection::connect(addr, Some(IO)).unwrap();
    c.stream().set_read_timeout(Some(IO)).unwrap();
    let mut c = c;
    auth::client_handshake(&mut c, KEY).unwrap();
    c
}

fn send(c: &mut Connection, v: &Value) {
    c.send(&encode(v).unwrap()).unwrap();
}

fn recv_raw(c: &mut Connection) -> Vec<u8> {
    c.recv(1 << 24).unwrap()
}

fn recv(c: &mut Connection) -> Reply {
    Reply::from_value(&decode(&recv_raw(c)).unwrap()).unwrap()
}

/// One one-shot operation on a new connection.
fn one_shot(addr: &Address, op: &str, args: Vec<Value>) -> Reply {
    let mut c = client(addr);
    send(
        &mut c,
        &Value::tuple(vec![
            Value::None,
            Value::str(op),
            Value::tuple(args),
            Value::dict(vec![]).unwrap(),
        ]),
    );
    let r = recv(&mut c);
    // One-shot connections are closed after the reply.
    assert!(matches!(c.recv(1024), Err(ConnectionError::Closed)));
    r
}

fn served(addr: &Address) -> Connection {
    let mut c = client(addr);
    send(
        &mut c,
        &Request::public(PublicOp::AcceptConnection, vec![Value::str("MainProcess")]).to_value(),
    );
    assert_eq!(recv(&mut c), Reply::none());
    c
}

fn call(c: &mut Connection, ident: &str, method: &str, args: Vec<Value>) -> Reply {
    send(c, &Request::call(ident, method, args, vec![]).to_value());
    recv(c)
}

fn create(addr: &Address, typeid: &str, args: Vec<Value>) -> String {
    let mut a = vec![Value::str(typeid)];
    a.extend(args);
    let Reply::Return(Value::Tuple(t)) = one_shot(addr, "create", a) else {
        panic!("create failed")
    };
    t[0].as_str().unwrap().to_string()
}

#[track_caller]
fn traceback(r: Reply) -> String {
    match r {
        Reply::Traceback(t) => t,
        other => panic!("expected #TRACEBACK, got {other:?}"),
    }
}

#[track_caller]
fn assert_closed(c: &mut Connection) {
    match c.recv(1 << 20) {
        Err(ConnectionError::Closed) | Err(ConnectionError::Io(_)) => {}
        other => panic!("expected the server to close the connection, got {other:?}"),
    }
}

// ------------------------------------------------------------ exact bytes

/// `('#RETURN', None)` exactly as CPython 3.8–3.13 pickles it (docs/PROTOCOL.md
/// Appendix B).
const RETURN_NONE_P4: &[u8] =
    b"\x80\x04\x95\x0e\x00\x00\x00\x00\x00\x00\x00\x8c\x07#RETURN\x94N\x86\x94.";

/// The request bytes CPython sends for `dummy` (docs/PROTOCOL.md §1.3).
const DUMMY_P4: &[u8] =
    b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00(N\x8c\x05dummy\x94)}\x94t\x94.";

#[test]
fn dummy_reply_bytes_are_cpythons() {
    let s = tcp_server();
    let mut c = client(s.address());
    c.send(DUMMY_P4).unwrap();
    assert_eq!(recv_raw(&mut c), RETURN_NONE_P4);
    assert!(matches!(c.recv(1024), Err(ConnectionError::Closed)));
}

#[test]
fn shutdown_replies_twice_then_stops() {
    let dir = TempDir::new("srv");
    let path = dir.0.join("mgr.sock");
    let s = spawn(config(&format!("unix:{}", path.display())));
    assert!(path.exists());
    let mut c = client(s.address());
    c.send(b"\x80\x04\x95\x13\x00\x00\x00\x00\x00\x00\x00(N\x8c\x08shutdown\x94)}\x94t\x94.")
        .unwrap();
    assert_eq!(recv_raw(&mut c), RETURN_NONE_P4);
    assert_eq!(recv_raw(&mut c), RETURN_NONE_P4);
    assert_closed(&mut c);
    let t = Instant::now();
    s.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(!path.exists(), "socket file must be removed");
}

#[test]
fn unknown_operation_is_an_assertion_traceback() {
    let s = tcp_server();
    let t = traceback(one_shot(s.address(), "foo", vec![]));
    assert!(t.starts_with("Traceback (most recent call last):\n"), "{t}");
    assert!(t.ends_with("\nAssertionError: 'foo' unrecognized\n"), "{t}");
    // Exact bytes: ('#TRACEBACK', text) at protocol 4.
    let mut c = client(s.address());
    send(
        &mut c,
        &Value::tuple(vec![
            Value::None,
            Value::str("foo"),
            Value::tuple(vec![]),
            Value::dict(vec![]).unwrap(),
        ]),
    );
    let text = mpmanager_protocol::traceback::unrecognized_operation("foo");
    // As CPython: 80 04 95 <u64 frame length> 8c 0a "#TRACEBACK" 94
    // 8c <n> text 94 86 94 2e (SHORT_BINUNICODE for the short text).
    assert!(text.len() < 256);
    let mut body = b"\x8c\x0a#TRACEBACK\x94\x8c".to_vec();
    body.push(text.len() as u8);
    body.extend_from_slice(text.as_bytes());
    body.extend_from_slice(b"\x94\x86\x94.");
    let mut expected = b"\x80\x04\x95".to_vec();
    expected.extend_from_slice(&(body.len() as u64).to_le_bytes());
    expected.extend_from_slice(&body);
    let raw = recv_raw(&mut c);
    assert_eq!(raw, expected, "{:?}", String::from_utf8_lossy(&raw));
}

#[test]
fn reply_protocol_follows_the_request() {
    let s = tcp_server();
    for proto in [2u8, 3, 4, 5] {
        let mut c = client(s.address());
        let req = Request::public(PublicOp::Dummy, vec![]).to_value();
        c.send(&encode_with(&req, &EncodeOptions::protocol(proto)).unwrap())
            .unwrap();
        let raw = recv_raw(&mut c);
        assert_eq!(&raw[..2], &[0x80, proto], "protocol {proto}");
        assert_eq!(
            Reply::from_value(&decode(&raw).unwrap()).unwrap(),
            Reply::none()
        );
    }
    // Protocol 0 (text) requests get protocol 4 replies.
    let mut c = client(s.address());
    c.send(b"(NVdummy\np0\n(t(dtp1\n.").unwrap();
    let raw = recv_raw(&mut c);
    assert_eq!(&raw[..2], &[0x80, 4]);
}

// ------------------------------------------------------------ one-shot ops

#[test]
fn one_shot_operations() {
    let s = tcp_server();
    let a = s.address();
    assert_eq!(one_shot(a, "dummy", vec![]), Reply::none());
    assert_eq!(
        one_shot(a, "number_of_objects", vec![]),
        Reply::Return(Value::Int(0))
    );
    let ident = create(a, "list", vec![Value::list(vec![Value::Int(7)])]);
    assert_eq!(
        one_shot(a, "number_of_objects", vec![]),
        Reply::Return(Value::Int(1))
    );
    let Reply::Return(info) = one_shot(a, "debug_info", vec![]) else {
        panic!()
    };
    assert_eq!(
        info.as_str().unwrap(),
        format!("  {ident}:       refcount=1\n    [7]")
    );
    assert_eq!(
        one_shot(a, "incref", vec![Value::str(&ident)]),
        Reply::none()
    );
    assert_eq!(s.registry().refcount(&ident), Some(2));
    // get_methods takes a Token.
    let token = Token::new("list", s.python_address().clone(), &ident);
    let Reply::Return(Value::Tuple(m)) = one_shot(a, "get_methods", vec![token.to_value()]) else {
        panic!()
    };
    assert!(m.iter().any(|x| x.as_str() == Some("append")));
    // ... and a str is an AttributeError traceback, as in CPython.
    let t = traceback(one_shot(a, "get_methods", vec![Value::str(&ident)]));
    assert!(
        t.ends_with("AttributeError: 'str' object has no attribute 'id'\n"),
        "{t}"
    );
    // Wrong argument counts.
    let t = traceback(one_shot(a, "dummy", vec![Value::Int(1)]));
    assert!(
        t.ends_with("TypeError: Server.dummy() takes 2 positional arguments but 3 were given\n"),
        "{t}"
    );
    let t = traceback(one_shot(a, "incref", vec![]));
    assert!(
        t.ends_with("TypeError: Server.incref() missing 1 required positional argument: 'ident'\n"),
        "{t}"
    );
    let t = traceback(one_shot(a, "create", vec![]));
    assert!(
        t.contains("missing 1 required positional argument: 'typeid'"),
        "{t}"
    );
    // Unknown typeid / ident.
    let t = traceback(one_shot(a, "create", vec![Value::str("nosuch")]));
    assert!(t.ends_with("KeyError: 'nosuch'\n"), "{t}");
    let t = traceback(one_shot(a, "incref", vec![Value::str("nosuch")]));
    assert!(t.ends_with("KeyError: 'nosuch'\n"), "{t}");
    let t = traceback(one_shot(a, "decref", vec![Value::Int(5)]));
    assert!(t.ends_with("KeyError: 5\n"), "{t}");
    // A failing constructor is a traceback, never #ERROR.
    let t = traceback(one_shot(
        a,
        "create",
        vec![Value::str("Array"), Value::str("z"), Value::list(vec![])],
    ));
    assert!(t.contains("ValueError: bad typecode"), "{t}");
    // Refcounts back to zero: the object is gone.
    assert_eq!(
        one_shot(a, "decref", vec![Value::str(&ident)]),
        Reply::none()
    );
    assert_eq!(
        one_shot(a, "decref", vec![Value::str(&ident)]),
        Reply::none()
    );
    assert_eq!(
        one_shot(a, "number_of_objects", vec![]),
        Reply::Return(Value::Int(0))
    );
    let t = traceback(one_shot(a, "decref", vec![Value::str(&ident)]));
    assert!(t.ends_with(&format!("KeyError: '{ident}'\n")), "{t}");
    // A non-4-tuple first request.
    let mut c = client(a);
    send(
        &mut c,
        &Value::tuple(vec![Value::None, Value::str("dummy")]),
    );
    let t = traceback(recv(&mut c));
    assert!(
        t.ends_with("ValueError: not enough values to unpack (expected 4, got 2)\n"),
        "{t}"
    );
    // Garbage as the first request.
    let mut c = client(a);
    c.send(b"this is not a pickle").unwrap();
    let t = traceback(recv(&mut c));
    assert!(t.contains("UnpicklingError"), "{t}");
    assert_closed(&mut c);
}

// ------------------------------------------------------- served connections

#[test]
fn served_connection_reply_kinds() {
    let s = tcp_server();
    let a = s.address();
    let l = create(a, "list", vec![Value::list(vec![Value::Int(1)])]);
    let d = create(
        a,
        "dict",
        vec![Value::dict(vec![(Value::str("k"), Value::Int(1))]).unwrap()],
    );
    let mut c = served(a);
    // #RETURN
    assert_eq!(
        call(&mut c, &l, "append", vec![Value::Int(2)]),
        Reply::none()
    );
    assert_eq!(
        call(&mut c, &l, "__len__", vec![]),
        Reply::Return(Value::Int(2))
    );
    // #ERROR with the real exception object.
    let r = call(&mut c, &l, "__getitem__", vec![Value::Int(9)]);
    let e = r.as_py_err().expect("#ERROR");
    assert_eq!(e.ty.name(), "IndexError");
    assert_eq!(e.message(), Some("list index out of range"));
    // #PROXY for dict.__iter__, with our address in the token.
    let Reply::Proxy { exposed, token } = call(&mut c, &d, "__iter__", vec![]) else {
        panic!("expected #PROXY")
    };
    assert_eq!(token.typeid, "Iterator");
    assert_eq!(&token.address, s.python_address());
    assert!(exposed.iter().any(|m| m == "__next__"));
    assert_eq!(
        call(&mut c, &token.id, "__next__", vec![]),
        Reply::Return(Value::str("k"))
    );
    let e = call(&mut c, &token.id, "__next__", vec![])
        .as_py_err()
        .unwrap();
    assert_eq!(e.ty.name(), "StopIteration");
    // #TRACEBACK: unknown ident, not exposed, ident None.
    let t = traceback(call(&mut c, "nosuch", "__len__", vec![]));
    assert!(t.ends_with("KeyError: 'nosuch'\n"), "{t}");
    let t = traceback(call(&mut c, &l, "nosuch", vec![]));
    assert!(t.contains("is not in exposed="), "{t}");
    send(
        &mut c,
        &Value::tuple(vec![
            Value::None,
            Value::str("__len__"),
            Value::tuple(vec![]),
            Value::dict(vec![]).unwrap(),
        ]),
    );
    assert!(traceback(recv(&mut c)).ends_with("KeyError: None\n"));
    // Wrong argument count: the method's own TypeError, as #ERROR.
    let e = call(&mut c, &l, "append", vec![]).as_py_err().unwrap();
    assert_eq!(e.ty.name(), "TypeError");
    // Fallbacks.
    assert_eq!(
        call(&mut c, &l, "__str__", vec![]),
        Reply::Return(Value::str("[1, 2]"))
    );
    // Public operations are not available on a served connection.
    send(
        &mut c,
        &Request::public(PublicOp::NumberOfObjects, vec![]).to_value(),
    );
    assert!(matches!(recv(&mut c), Reply::Traceback(_)));
    // Bad pickles and malformed requests keep the connection going.
    c.send(b"garbage!").unwrap();
    assert!(traceback(recv(&mut c)).contains("UnpicklingError"));
    send(&mut c, &Value::Int(3));
    assert!(matches!(recv(&mut c), Reply::Traceback(_)));
    send(
        &mut c,
        &Value::tuple(vec![
            Value::str(&l),
            Value::Int(1),
            Value::tuple(vec![]),
            Value::dict(vec![]).unwrap(),
        ]),
    );
    assert!(matches!(recv(&mut c), Reply::Traceback(_)));
    assert_eq!(
        call(&mut c, &l, "__len__", vec![]),
        Reply::Return(Value::Int(2))
    );
    // An empty frame is EOF for the served loop: the connection ends.
    c.send(b"").unwrap();
    assert_closed(&mut c);
}

/// A referent whose `deep` method returns a value nested deeper than the
/// encoder accepts.
struct Deep;

impl Referent for Deep {
    fn class_name(&self) -> &str {
        "Deep"
    }
    fn call(
        &self,
        _cx: &CallContext,
        method: &str,
        _a: &[Value],
        _kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        match method {
            "deep" => {
                let mut v = Value::Int(0);
                for _ in 0..5000 {
                    v = Value::list(vec![v]);
                }
                Ok(Outcome::Return(v))
            }
            "boom" => panic!("a bug in a referent"),
            _ => Ok(Outcome::Return(Value::Int(1))),
        }
    }
    fn repr(&self) -> Result<String, PyErr> {
        Ok("Deep()".into())
    }
    fn get_value(&self) -> Result<Value, PyErr> {
        Ok(Value::None)
    }
}

#[test]
fn unserializable_reply() {
    let reg = Arc::new(Registry::with_builtin_types());
    reg.register(
        TypeSpec::new(
            "Deep",
            Arc::new(|_, _| Ok(Arc::new(Deep) as Arc<dyn Referent>)),
        )
        .exposed(&["deep", "shallow", "boom"]),
    );
    let mut cfg = config("127.0.0.1:0");
    cfg.registry = Some(reg);
    let s = spawn(cfg);
    let d = create(s.address(), "Deep", vec![]);
    let mut c = served(s.address());
    let Reply::Unserializable(t) = call(&mut c, &d, "deep", vec![]) else {
        panic!("expected #UNSERIALIZABLE")
    };
    assert!(t.contains("RecursionError"), "{t}");
    // The connection goes on.
    assert_eq!(
        call(&mut c, &d, "shallow", vec![]),
        Reply::Return(Value::Int(1))
    );
    // A panic (a bug) closes only the connection it happened on.
    send(
        &mut c,
        &Request::call(d.as_str(), "boom", vec![], vec![]).to_value(),
    );
    assert_closed(&mut c);
    let mut c = served(s.address());
    assert_eq!(
        call(&mut c, &d, "shallow", vec![]),
        Reply::Return(Value::Int(1))
    );
    assert_eq!(
        one_shot(s.address(), "number_of_objects", vec![]),
        Reply::Return(Value::Int(1))
    );
}

// ------------------------------------------------------------- bad peers

fn raw_tcp(s: &BackgroundServer) -> TcpStream {
    let Address::Tcp(sa) = s.address() else {
        panic!()
    };
    let t = TcpStream::connect(sa).unwrap();
    t.set_read_timeout(Some(IO)).unwrap();
    t
}

/// Reads until EOF (or reset), returning how long it took.
fn wait_eof(t: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match t.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn silent_peer_is_dropped_after_the_handshake_timeout() {
    let s = tcp_server(); // 500 ms handshake timeout
    let mut t = raw_tcp(&s);
    let took = wait_eof(&mut t);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // A peer that dribbles one byte at a time is held to the same deadline.
    let mut t = raw_tcp(&s);
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let _ = t.read(&mut buf); // the challenge
    while start.elapsed() < Duration::from_secs(3) {
        if t.write_all(&[0]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let _ = t.set_nonblocking(true);
        if let Ok(0) = t.read(&mut buf) {
            break;
        }
        let _ = t.set_nonblocking(false);
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The server still works.
    assert_eq!(one_shot(s.address(), "dummy", vec![]), Reply::none());
}

#[test]
fn wrong_authkey_is_refused() {
    let s = tcp_server();
    let mut c = Connection::connect(s.address(), Some(IO)).unwrap();
    c.stream().set_read_timeout(Some(IO)).unwrap();
    let e = auth::client_handshake(&mut c, b"wrong").unwrap_err();
    assert!(e.is_auth_failure(), "{e}");
    assert_eq!(one_shot(s.address(), "dummy", vec![]), Reply::none());
}

#[test]
fn bad_frames_close_only_their_connection() {
    let s = tcp_server();
    let a = s.address().clone();
    let l = create(&a, "list", vec![]);
    let mut good = served(&a);
    let frames: Vec<Vec<u8>> = vec![
        // negative length
        (-5i32).to_be_bytes().to_vec(),
        // 2 GiB - 1 length header (over the 1 GiB limit: the server reads
        // and discards what comes, and the peer hangs up mid-frame)
        i32::MAX.to_be_bytes().to_vec(),
        // huge large-frame header
        [&[0xff, 0xff, 0xff, 0xff][..], &(1u64 << 40).to_be_bytes()].concat(),
    ];
    for f in frames {
        let mut c = served(&a);
        let mut raw = c.stream().try_clone().unwrap();
        raw.write_all(&f).unwrap();
        // (The server may have closed already: negative length.)
        let _ = raw.write_all(&[0x80; 1000]);
        let _ = raw.shutdown(std::net::Shutdown::Write);
        assert_closed(&mut c);
        assert_eq!(
            call(&mut good, &l, "append", vec![Value::Int(1)]),
            Reply::none()
        );
    }
    // A truncated frame: header says 100, 10 bytes arrive, then EOF.
    {
        let mut c = served(&a);
        let mut raw = c.stream().try_clone().unwrap();
        raw.write_all(&100i32.to_be_bytes()).unwrap();
        raw.write_all(&[0x80; 10]).unwrap();
        raw.shutdown(std::net::Shutdown::Write).unwrap();
        assert_closed(&mut c);
    }
    assert_eq!(
        call(&mut good, &l, "__len__", vec![]),
        Reply::Return(Value::Int(3))
    );
}

#[test]
fn frame_limit_is_configurable() {
    let mut cfg = config("127.0.0.1:0");
    cfg.max_frame = 1000;
    let s = spawn(cfg);
    let l = create(s.address(), "list", vec![]);
    let mut c = served(s.address());
    assert_eq!(
        call(&mut c, &l, "append", vec![Value::bytes(&[1; 500])]),
        Reply::none()
    );
    // Over the limit: read and thrown away, answered with a MemoryError
    // naming the limit and the flag; the connection goes on.
    let reply = call(&mut c, &l, "append", vec![Value::bytes(&[1; 2000])]);
    let Reply::Traceback(tb) = &reply else {
        panic!("{reply:?}")
    };
    assert!(
        tb.contains("MemoryError: request of ")
            && tb.contains(
                "exceeds the server's frame limit of 1000 bytes (mpmanager serve --max-frame)"
            ),
        "{tb}"
    );
    assert_eq!(
        call(&mut c, &l, "__len__", vec![]),
        Reply::Return(Value::Int(1))
    );
}

#[test]
fn request_memory_over_budget_gets_a_memory_error_and_the_connection_goes_on() {
    let mut cfg = config("127.0.0.1:0");
    cfg.request_memory = 4 << 20;
    cfg.request_memory_wait = Duration::from_millis(100);
    let s = spawn(cfg);
    let l = create(s.address(), "list", vec![]);
    let mut c = served(s.address());
    // 3 MiB of bytes: the frame and its decoded copy need 6 MiB.
    let reply = call(&mut c, &l, "append", vec![Value::bytes(&vec![1; 3 << 20])]);
    let Reply::Traceback(tb) = &reply else {
        panic!("{reply:?}")
    };
    assert!(tb.contains("MemoryError: "), "{tb}");
    assert!(tb.contains("--max-request-memory"), "{tb}");
    // 1 MiB fits.
    assert_eq!(
        call(&mut c, &l, "append", vec![Value::bytes(&vec![1; 1 << 20])]),
        Reply::none()
    );
    assert_eq!(
        call(&mut c, &l, "__len__", vec![]),
        Reply::Return(Value::Int(1))
    );
}

#[test]
fn only_authenticated_connections_count_toward_max_connections() {
    let mut cfg = config("127.0.0.1:0");
    cfg.max_connections = 2;
    let s = spawn(cfg);
    // Unauthenticated sockets take no slot.
    let _silent: Vec<TcpStream> = (0..4).map(|_| raw_tcp(&s)).collect();
    let _a = served(s.address());
    let _b = served(s.address());
    assert_eq!(s.handle().authenticated_connections(), 2);
    // A third client with the key is refused with a readable error naming
    // the limit and the flag, in reply to its first request.
    let mut c = client(s.address());
    send(&mut c, &Request::public(PublicOp::Dummy, vec![]).to_value());
    let r = recv(&mut c);
    let err = r.as_py_err().expect("an exception");
    assert_eq!(err.ty.name(), "ConnectionRefusedError", "{r:?}");
    let msg = err.message().unwrap();
    assert!(
        msg.contains("--max-connections") && msg.contains(" 2 connections"),
        "{msg}"
    );
    assert_closed(&mut c);
    drop((_a, _b));
    let start = Instant::now();
    while s.handle().authenticated_connections() > 0 && start.elapsed() < IO {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(one_shot(s.address(), "dummy", vec![]), Reply::none());
}

#[test]
fn xmlrpc_client_refused_for_max_connections_gets_a_traceback_naming_the_limit() {
    let mut cfg = config("127.0.0.1:0");
    cfg.max_connections = 1;
    cfg.serializer = mpmanager_server::Serializer::XmlRpc;
    let s = spawn(cfg);
    // An authenticated connection that has not sent its first request
    // holds the one slot.
    let _held = client(s.address());
    let mut c = client(s.address());
    let req = Request::public(PublicOp::Dummy, vec![]).to_value();
    c.send(&mpmanager_xmlrpc::encode(&req).unwrap()).unwrap();
    let reply =
        Reply::from_value(&mpmanager_xmlrpc::decode(&c.recv(1 << 20).unwrap()).unwrap()).unwrap();
    let tb = traceback(reply);
    assert!(tb.contains("--max-connections"), "{tb}");
    assert_closed(&mut c);
}

#[test]
fn oldest_pending_handshake_is_evicted_at_the_limit_and_held_until_its_deadline() {
    let mut cfg = config("127.0.0.1:0");
    cfg.max_pending_handshakes = 3;
    cfg.handshake_timeout = Duration::from_secs(2);
    let s = spawn(cfg);
    let start = Instant::now();
    let mut silent: Vec<TcpStream> = Vec::new();
    for _ in 0..3 {
        silent.push(raw_tcp(&s));
    }
    while s.handle().pending_handshakes() < 3 && start.elapsed() < IO {
        std::thread::sleep(Duration::from_millis(5));
    }
    // More silent peers evict the oldest ones, and a client with the key
    // still gets in.
    for _ in 0..3 {
        silent.push(raw_tcp(&s));
    }
    assert_eq!(one_shot(s.address(), "dummy", vec![]), Reply::none());
    assert!(s.handle().pending_handshakes() <= 3);
    // The evicted sockets are not closed at once (a peer that re-opens
    // what it loses would evict again at once), but at their deadline.
    let took = start.elapsed() + wait_eof(&mut silent[0]);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

// ------------------------------------------------------------ addresses

#[test]
fn abstract_and_ipv6_addresses() {
    let name = format!("mpm-test-{}", std::process::id());
    let s = spawn(config(&format!("unix:@{name}")));
    let mut expected = vec![0u8];
    expected.extend_from_slice(name.as_bytes());
    assert_eq!(s.python_address(), &PyAddress::Abstract(expected));
    assert_eq!(one_shot(s.address(), "dummy", vec![]), Reply::none());
    drop(s);

    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let s = spawn(config("[::1]:0"));
        let Address::Tcp(sa) = s.address() else {
            panic!()
        };
        assert_eq!(s.python_address(), &PyAddress::tcp("::1", sa.port()));
        assert_eq!(one_shot(s.address(), "dummy", vec![]), Reply::none());
    }
}

#[test]
fn empty_authkey_rules() {
    let e = Server::bind(ServerConfig::new("0.0.0.0:0".parse().unwrap(), vec![])).unwrap_err();
    assert!(matches!(e, ServerError::EmptyAuthkey { .. }), "{e}");
    // Allowing it does not make it fine on the network.
    let mut c = ServerConfig::new("0.0.0.0:0".parse().unwrap(), vec![]);
    c.allow_empty_authkey = true;
    let e = Server::bind(c).unwrap_err();
    assert!(matches!(e, ServerError::EmptyAuthkey { .. }), "{e}");
    // On loopback it must be asked for.
    let e = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap(), vec![])).unwrap_err();
    assert!(matches!(e, ServerError::EmptyAuthkeyNotAllowed), "{e}");
    assert!(e.to_string().contains("allow_empty_authkey"), "{e}");
    // Asked for, the handshake runs with the empty key.
    let mut c = ServerConfig::new("127.0.0.1:0".parse().unwrap(), vec![]);
    c.allow_empty_authkey = true;
    let s = spawn(c);
    let mut c = Connection::connect(s.address(), Some(IO)).unwrap();
    auth::client_handshake(&mut c, b"").unwrap();
}

#[test]
fn handle_shutdown_frees_the_port_at_once() {
    let s = tcp_server();
    let Address::Tcp(sa) = s.address().clone() else {
        panic!()
    };
    let mut c = served(s.address());
    let t = Instant::now();
    let h = s.handle();
    h.shutdown();
    h.wait();
    assert!(h.is_shutdown());
    s.join().unwrap();
    assert!(t.elapsed() < Duration::from_millis(500));
    // The served connection was shut down too.
    assert_closed(&mut c);
    // Rebind the same port immediately (with SO_REUSEADDR, as CPython).
    let again = Server::bind(config(&sa.to_string()))
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(one_shot(again.address(), "dummy", vec![]), Reply::none());
}

#[test]
fn named_shared_objects() {
    let mut cfg = config("127.0.0.1:0");
    cfg.objects.push("shared=list".parse().unwrap());
    cfg.objects.push("board=Namespace".parse().unwrap());
    cfg.objects.push("counter=Value:i".parse().unwrap());
    let s = spawn(cfg);
    let a = s.address();
    let x = create(a, "shared", vec![]);
    let y = create(a, "shared", vec![]);
    assert_eq!(x, y, "one and the same object");
    assert_eq!(s.registry().refcount(&x), Some(2));
    let mut c = served(a);
    call(&mut c, &x, "append", vec![Value::Int(5)]);
    assert_eq!(
        call(&mut c, &y, "__repr__", vec![]),
        Reply::Return(Value::str("[5]"))
    );
    let v = create(a, "counter", vec![]);
    assert_eq!(
        call(&mut c, &v, "get", vec![]),
        Reply::Return(Value::Int(0))
    );
    // Decref to 0 does not destroy a named object.
    one_shot(a, "decref", vec![Value::str(&x)]);
    one_shot(a, "decref", vec![Value::str(&x)]);
    let z = create(a, "shared", vec![]);
    assert_eq!(z, x);
    assert_eq!(
        call(&mut c, &z, "__len__", vec![]),
        Reply::Return(Value::Int(1))
    );
    // Duplicate names are refused.
    let mut cfg = config("127.0.0.1:0");
    cfg.objects.push("dup=list".parse().unwrap());
    cfg.objects.push("dup=dict".parse().unwrap());
    assert!(matches!(
        Server::bind(cfg).unwrap_err(),
        ServerError::InvalidObject { .. }
    ));
}

#[test]
fn many_concurrent_clients() {
    let s = tcp_server();
    let a = s.address().clone();
    let l = create(&a, "list", vec![]);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let a = a.clone();
            let l = l.clone();
            std::thread::spawn(move || {
                let mut c = served(&a);
                for j in 0..100 {
                    assert_eq!(
                        call(&mut c, &l, "append", vec![Value::Int(i * 1000 + j)]),
                        Reply::none()
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = served(&a);
    assert_eq!(
        call(&mut c, &l, "__len__", vec![]),
        Reply::Return(Value::Int(800))
    );
}
