//! Bad input costs nothing else: while a CPython client loops on its
//! objects, other connections send every kind of malformed or hostile
//! input; each fails only its own request or connection, and the looping
//! client never notices.

use crate::serve_common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use mpmanager_connection::{auth, Address, Connection, ConnectionError};
use mpmanager_pickle::{encode, Value};
use mpmanager_protocol::{PublicOp, Reply};
use mpmanager_testutil::newest_python;
use serve_common::*;

const KEY: &str = "robust-key";

/// Loops on a list, a dict and a Namespace until the stop file appears,
/// checking every result, then checks the objects are intact.
const LOOPER: &str = r#"
ready, stop = sys.argv[3], sys.argv[4]
m = SyncManager(address=address, authkey=key)
m.connect()
l = m.list()
d = m.dict()
n = m.Namespace()
i = 0
deadline = time.time() + 60
while not os.path.exists(stop):
    assert time.time() < deadline, 'stop file never came'
    l.append(i)
    d[i] = i * i
    n.last = i
    assert l[-1] == i and d[i] == i * i and n.last == i and len(l) == i + 1
    i += 1
    if i == 20:
        open(ready, 'w').close()
assert l[:] == list(range(i))
assert len(d) == i and all(d[k] == k * k for k in range(0, i, 97))
assert n.last == i - 1
print('OK', i)
"#;

fn raw(addr: &Address) -> std::net::TcpStream {
    let Address::Tcp(sa) = addr else { panic!() };
    let t = std::net::TcpStream::connect(sa).unwrap();
    t.set_read_timeout(Some(IO)).unwrap();
    t
}

/// True if the server closed `c` (EOF or reset) rather than answering.
fn closed(c: &mut Connection) -> bool {
    matches!(
        c.recv(1 << 20),
        Err(ConnectionError::Closed) | Err(ConnectionError::Io(_))
    )
}

fn tb(r: Reply) -> String {
    match r {
        Reply::Traceback(t) => t,
        other => panic!("expected #TRACEBACK, got {other:?}"),
    }
}

#[test]
fn hostile_connections_do_not_disturb_a_looping_client() {
    let Some(py) = newest_python() else {
        return;
    };
    let key = KEY.as_bytes();
    let srv = ServeProc::start("127.0.0.1:0", Key::Env(KEY), &[]);
    let addr = srv.address.clone();
    let dir = TempDir::new("robust");
    let ready = dir.path("ready");
    let stop = dir.path("stop");
    let code = format!("{PY_PRELUDE}{LOOPER}");
    let args = [
        srv.py_address(),
        hex(key),
        ready.display().to_string(),
        stop.display().to_string(),
    ];
    let looper = std::thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        py.run(&code, &a, b"")
    });
    let start = Instant::now();
    while !ready.exists() {
        assert!(start.elapsed() < IO, "the Python client did not start");
        std::thread::sleep(Duration::from_millis(10));
    }

    // A list of our own to check on the side.
    let Reply::Return(Value::Tuple(t)) = one_shot(
        &addr,
        key,
        PublicOp::Create,
        vec![Value::str("list"), Value::list(vec![Value::Int(1)])],
    ) else {
        panic!()
    };
    let mine = t[0].as_str().unwrap().to_string();

    // 1. A negative length header.
    let mut c = served(&addr, key);
    c.stream()
        .try_clone()
        .unwrap()
        .write_all(&(-7i32).to_be_bytes())
        .unwrap();
    assert!(closed(&mut c));
    // 2. A truncated frame.
    let mut c = served(&addr, key);
    let mut s = c.stream().try_clone().unwrap();
    s.write_all(&1000i32.to_be_bytes()).unwrap();
    s.write_all(&[0x80, 0x04, 0x95]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed(&mut c));
    // 3. A 2 GiB length header, over --max-frame: nothing is allocated,
    //    the server reads what comes to throw it away; the peer hangs up
    //    mid-frame and the connection is closed.
    let mut c = served(&addr, key);
    let mut s = c.stream().try_clone().unwrap();
    s.write_all(&i32::MAX.to_be_bytes()).unwrap();
    s.write_all(&[0x80; 5000]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed(&mut c));
    // ... also as the first message after authentication.
    let mut c = client(&addr, key);
    let mut s = c.stream().try_clone().unwrap();
    s.write_all(&i32::MAX.to_be_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed(&mut c));
    // 4. Garbage instead of a pickle: #TRACEBACK, and the connection goes on.
    let mut c = served(&addr, key);
    c.send(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(tb(recv(&mut c)).contains("UnpicklingError"));
    c.send(b"\x80\x04\x95\xff\xff").unwrap();
    assert!(tb(recv(&mut c)).contains("UnpicklingError"));
    // 5. Valid pickles that are not 4-tuples.
    send(
        &mut c,
        &Value::tuple(vec![Value::str("a"), Value::str("b")]),
    );
    assert!(tb(recv(&mut c)).contains("ValueError"));
    send(&mut c, &Value::list(vec![Value::Int(1)]));
    assert!(matches!(recv(&mut c), Reply::Traceback(_)));
    send(&mut c, &Value::dict(vec![]).unwrap());
    assert!(matches!(recv(&mut c), Reply::Traceback(_)));
    // 6. An unknown ident.
    assert!(tb(call(&mut c, "deadbeef", "__len__", vec![])).ends_with("KeyError: 'deadbeef'\n"));
    // 7. A method that is not exposed.
    assert!(tb(call(&mut c, &mine, "__class__", vec![])).contains("not in exposed"));
    assert!(tb(call(&mut c, &mine, "_private", vec![])).contains("not in exposed"));
    // 8. Wrong argument counts: the method's TypeError as #ERROR, one-shot
    //    operations' as #TRACEBACK.
    let e = call(&mut c, &mine, "append", vec![]).as_py_err().unwrap();
    assert_eq!(e.ty.name(), "TypeError");
    let e = call(
        &mut c,
        &mine,
        "__getitem__",
        vec![Value::Int(0), Value::Int(1)],
    )
    .as_py_err()
    .unwrap();
    assert_eq!(e.ty.name(), "TypeError");
    assert!(tb(one_shot(&addr, key, PublicOp::Incref, vec![])).contains("TypeError"));
    assert!(tb(one_shot(
        &addr,
        key,
        PublicOp::Decref,
        vec![Value::str("nosuch")]
    ))
    .contains("KeyError"));
    // The connection still works after all that.
    assert_eq!(
        call(&mut c, &mine, "__len__", vec![]),
        Reply::Return(Value::Int(1))
    );
    // 9. A wrong authkey.
    let mut w = Connection::connect(&addr, Some(IO)).unwrap();
    w.stream().set_read_timeout(Some(IO)).unwrap();
    assert!(auth::client_handshake(&mut w, b"wrong key")
        .unwrap_err()
        .is_auth_failure());
    // 10. A silent peer: dropped after the handshake timeout (1 s here).
    let mut silent = raw(&addr);
    let t0 = Instant::now();
    let mut buf = [0u8; 256];
    while let Ok(n) = silent.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "silent peer dropped after {took:?}"
    );
    // 11. Garbage before authentication, and a peer that hangs up at once.
    let mut g = raw(&addr);
    let _ = g.write_all(b"\x00\x00\x01\x00hello");
    drop(g);
    drop(raw(&addr));
    // A huge first auth frame.
    let mut h = raw(&addr);
    let _ = h.read(&mut buf);
    let _ = h.write_all(&(1i32 << 30).to_be_bytes());
    let mut rest = Vec::new();
    let _ = h.read_to_end(&mut rest);
    // 12. A request with an unknown public op and a non-str method.
    assert!(tb(one_shot(&addr, key, PublicOp::Dummy, vec![Value::Int(1)])).contains("TypeError"));
    let mut c = client(&addr, key);
    c.send(
        &encode(&Value::tuple(vec![
            Value::None,
            Value::Int(5),
            Value::tuple(vec![]),
            Value::dict(vec![]).unwrap(),
        ]))
        .unwrap(),
    )
    .unwrap();
    assert!(matches!(recv(&mut c), Reply::Traceback(_)));

    // Everything still served: our list, and the looping client.
    let mut c = served(&addr, key);
    assert_eq!(
        call(&mut c, &mine, "__repr__", vec![]),
        Reply::Return(Value::str("[1]"))
    );
    std::fs::write(&stop, b"").unwrap();
    let out = looper.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("OK"),
        "looping client: {}\n{stdout}\n{}\nserver log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        srv.stderr()
    );
    eprintln!("looping client: {}", stdout.trim());
    // The server is still healthy and logged the bad input.
    assert_eq!(one_shot(&addr, key, PublicOp::Dummy, vec![]), Reply::none());
    let log = srv.stderr();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
