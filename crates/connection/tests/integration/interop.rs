//! Interop with every installed CPython 3.8+: their `multiprocessing.connection`
//! Listener/Client against our Connection + handshake, over TCP (IPv4, IPv6),
//! unix path and abstract sockets, including hand-written large-header frames.
//!
//! Every Python process kills itself with `signal.alarm`, and every socket we
//! use has a read timeout, so nothing can hang.

use std::io::Write;
use std::time::{Duration, Instant};

use mpmanager_connection::{
    auth, Address, AuthFailure, Connection, ConnectionError, Listener, NO_LIMIT,
};
use mpmanager_testutil::{pythons, Python, TempDir};

const KEY: &[u8] = b"interop-secret";
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Python prologue: a hard time limit and helpers shared by both scripts.
const PRELUDE: &str = r#"
import sys, os, signal, struct, socket, ast
signal.alarm(40)
import multiprocessing.connection as mc
from multiprocessing import AuthenticationError
"#;

/// Python runs a listener on argv family/address and echoes frames reversed.
/// `raw-large` asks it to write a hand-made `ff ff ff ff` + u64 frame.
const PY_LISTENER: &str = r#"
fam, spec, key, out = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), sys.argv[4]
if fam == 'tcp6':
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.bind(('::1', 0)); s.listen(1)
    address = s.getsockname()
else:
    a = {'tcp4': ('127.0.0.1', 0), 'unix': spec, 'abstract': '\0' + spec}[fam]
    l = mc.Listener(a, authkey=key)
    address = l.address
with open(out + '.tmp', 'w') as f:
    f.write(repr(address))
os.rename(out + '.tmp', out)
try:
    if fam == 'tcp6':
        c = mc.Connection(s.accept()[0].detach())
        mc.deliver_challenge(c, key)
        mc.answer_challenge(c, key)
    else:
        c = l.accept()
except AuthenticationError as e:
    print('AuthenticationError', e)
    sys.exit(0)
n = 0
while True:
    try:
        m = c.recv_bytes()
    except EOFError:
        break
    n += 1
    if m == b'raw-large':
        c._send(b'\xff\xff\xff\xff' + struct.pack('!Q', 5) + b'world')
    else:
        c.send_bytes(m[::-1])
print('OK', n)
"#;

/// Python connects as a client to the address given as a Python literal.
const PY_CLIENT: &str = r#"
address, key = ast.literal_eval(sys.argv[1]), bytes.fromhex(sys.argv[2])
try:
    if isinstance(address, tuple) and len(address) == 4:
        s = socket.create_connection(address[:2])
        c = mc.Connection(s.detach())
        mc.answer_challenge(c, key)
        mc.deliver_challenge(c, key)
    else:
        c = mc.Client(address, authkey=key)
except AuthenticationError as e:
    print('AuthenticationError', e)
    sys.exit(0)
for m in [b'hello', b'', bytes(range(256)) * 400]:
    c.send_bytes(m)
    r = c.recv_bytes()
    assert r == m[::-1], (len(m), len(r))
c.send_bytes(b'raw-large')
assert c.recv_bytes() == b'world'
c._send(b'\xff\xff\xff\xff' + struct.pack('!Q', 5) + b'hello')
assert c.recv_bytes() == b'olleh'
c.close()
print('OK')
"#;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    Tcp4,
    Tcp6,
    Unix,
    Abstract,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Tcp4 => "tcp4",
            Family::Tcp6 => "tcp6",
            Family::Unix => "unix",
            Family::Abstract => "abstract",
        }
    }
}

fn ipv6_available() -> bool {
    Listener::bind(&"[::1]:0".parse().unwrap()).is_ok()
}

/// Our echo server side for a Python client: reversed echo, and a raw
/// large-header frame for `raw-large`.
fn serve_echo(conn: &mut Connection) -> Result<usize, ConnectionError> {
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        match conn.recv_into(&mut buf, NO_LIMIT) {
            Ok(()) => {}
            Err(ConnectionError::Closed) => return Ok(n),
            Err(e) => return Err(e),
        }
        n += 1;
        if buf == b"raw-large" {
            let mut frame = vec![0xff, 0xff, 0xff, 0xff];
            frame.extend_from_slice(&5u64.to_be_bytes());
            frame.extend_from_slice(b"world");
            conn.stream().write_all(&frame).unwrap();
        } else {
            buf.reverse();
            conn.send(&buf)?;
        }
    }
}

/// Our client side against a Python echo listener.
fn drive_echo(conn: &mut Connection) {
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    for m in [&b"hello"[..], b"", &big] {
        conn.send(m).unwrap();
        let r = conn.recv(NO_LIMIT).unwrap();
        let mut expect = m.to_vec();
        expect.reverse();
        assert!(r == expect, "echo of {} bytes differs", m.len());
    }
    // CPython's recv_bytes accepts a small payload in the large-header form.
    let mut frame = vec![0xff, 0xff, 0xff, 0xff];
    frame.extend_from_slice(&5u64.to_be_bytes());
    frame.extend_from_slice(b"hello");
    conn.stream().write_all(&frame).unwrap();
    assert_eq!(conn.recv(NO_LIMIT).unwrap(), b"olleh");
    // Our reader accepts one CPython writes by hand.
    conn.send(b"raw-large").unwrap();
    assert_eq!(conn.recv(NO_LIMIT).unwrap(), b"world");
}

/// Starts a Python listener, waits for its address, connects to it.
/// Returns our connection, the address Python reported (repr), and the
/// Python process's join handle.
fn python_listener(
    py: &Python,
    family: Family,
    key: &[u8],
    dir: &TempDir,
) -> (
    Connection,
    Address,
    String,
    std::thread::JoinHandle<std::process::Output>,
) {
    let tag = format!("{}-{}-{}", py.label(), family.name(), hex(key));
    let out = dir.0.join(format!("addr-{tag}"));
    let _ = std::fs::remove_file(&out);
    let spec = match family {
        Family::Unix => dir
            .0
            .join(format!("s-{tag}"))
            .to_string_lossy()
            .into_owned(),
        Family::Abstract => format!("mpm-io-{}-{tag}-{}", std::process::id(), hex(key)),
        _ => String::new(),
    };
    let code = format!("{PRELUDE}{PY_LISTENER}");
    let py2 = py.clone();
    let args = [
        family.name().to_string(),
        spec.clone(),
        hex(key),
        out.to_string_lossy().into_owned(),
    ];
    let handle = std::thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        py2.run(&code, &a, b"")
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let reported = loop {
        if let Ok(s) = std::fs::read_to_string(&out) {
            break s;
        }
        if handle.is_finished() {
            let o = handle.join().unwrap();
            panic!(
                "python {} listener died: {}",
                py.label(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "python {} listener did not start",
            py.label()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let address = match family {
        Family::Tcp4 | Family::Tcp6 => {
            // "('127.0.0.1', 41234)" or "('::1', 41234, 0, 0)"
            let inner = reported.trim_start_matches('(').trim_end_matches(')');
            let mut parts = inner.split(", ");
            let host = parts.next().unwrap().trim_matches('\'');
            let port: u16 = parts.next().unwrap().parse().unwrap();
            Address::Tcp((host.parse::<std::net::IpAddr>().unwrap(), port).into())
        }
        Family::Unix => Address::Unix(spec.into()),
        Family::Abstract => Address::Abstract(spec.into_bytes()),
    };
    let stream =
        mpmanager_connection::Stream::connect(&address, Some(Duration::from_secs(10))).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    (Connection::new(stream), address, reported, handle)
}

fn check_python_listener(family: Family) {
    if family == Family::Tcp6 && !ipv6_available() {
        eprintln!("skipping: ::1 unavailable");
        return;
    }
    let dir = TempDir::new(&format!("pl-{}", family.name()));
    let pys = pythons();
    if pys.is_empty() {
        return;
    }
    for py in &pys {
        // Right key: full exchange.
        let (mut conn, address, reported, handle) = python_listener(py, family, KEY, &dir);
        assert_eq!(
            address.python_repr(),
            reported,
            "python {} reported address",
            py.label()
        );
        auth::client_handshake(&mut conn, KEY)
            .unwrap_or_else(|e| panic!("python {}: {e}", py.label()));
        drive_echo(&mut conn);
        drop(conn);
        let out = handle.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim() == "OK 5",
            "python {} {family:?}: {stdout} {}",
            py.label(),
            String::from_utf8_lossy(&out.stderr)
        );

        // Wrong key: both sides fail with an authentication error.
        let (mut conn, _, _, handle) = python_listener(py, family, b"other-key", &dir);
        let e = auth::client_handshake(&mut conn, KEY).unwrap_err();
        assert!(
            matches!(
                e,
                ConnectionError::AuthenticationFailed {
                    reason: AuthFailure::DigestRejected
                }
            ),
            "python {}: {e:?}",
            py.label()
        );
        drop(conn);
        let out = handle.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with("AuthenticationError"),
            "python {} {family:?}: {stdout} {}",
            py.label(),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("python {} listener over {}: ok", py.label(), family.name());
    }
}

fn check_python_client(family: Family) {
    if family == Family::Tcp6 && !ipv6_available() {
        eprintln!("skipping: ::1 unavailable");
        return;
    }
    let dir = TempDir::new(&format!("pc-{}", family.name()));
    let pys = pythons();
    if pys.is_empty() {
        return;
    }
    for py in &pys {
        for (py_key, ok) in [(KEY, true), (&b"wrong-key"[..], false)] {
            let address = match family {
                Family::Tcp4 => "127.0.0.1:0".parse().unwrap(),
                Family::Tcp6 => "[::1]:0".parse().unwrap(),
                Family::Unix => Address::Unix(dir.0.join(format!("s-{}-{ok}", py.label()))),
                Family::Abstract => Address::Abstract(
                    format!("mpm-io-{}-{}-{ok}", std::process::id(), py.label()).into_bytes(),
                ),
            };
            let listener = Listener::bind(&address).unwrap();
            // Hand Python the address exactly as a Token would carry it.
            let repr = listener.local_address().python_repr();
            listener.set_nonblocking(true).unwrap();
            let server = std::thread::spawn(move || {
                let deadline = Instant::now() + IO_TIMEOUT;
                let stream = loop {
                    match listener.accept() {
                        Ok(s) => break s,
                        Err(ConnectionError::Io(e))
                            if e.kind() == std::io::ErrorKind::WouldBlock =>
                        {
                            if Instant::now() > deadline {
                                return Err(ConnectionError::Closed);
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => return Err(e),
                    }
                };
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut conn = Connection::new(stream);
                auth::server_handshake(&mut conn, KEY)?;
                serve_echo(&mut conn)
            });
            let code = format!("{PRELUDE}{PY_CLIENT}");
            let out = py.run(&code, &[&repr, &hex(py_key)], b"");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let served = server.join().unwrap();
            assert!(
                out.status.success(),
                "python {} {family:?} {repr}: {stdout} {stderr}",
                py.label()
            );
            if ok {
                assert_eq!(
                    stdout.trim(),
                    "OK",
                    "python {} {family:?}: {stderr}",
                    py.label()
                );
                assert_eq!(served.unwrap(), 5, "python {} {family:?}", py.label());
            } else {
                assert!(
                    stdout.starts_with("AuthenticationError"),
                    "python {}: {stdout} {stderr}",
                    py.label()
                );
                let e = served.unwrap_err();
                assert!(
                    matches!(
                        e,
                        ConnectionError::AuthenticationFailed {
                            reason: AuthFailure::DigestWrong
                        }
                    ),
                    "python {}: {e:?}",
                    py.label()
                );
            }
        }
        eprintln!("python {} client over {}: ok", py.label(), family.name());
    }
}

#[test]
fn python_listener_tcp4() {
    check_python_listener(Family::Tcp4);
}
#[test]
fn python_listener_tcp6() {
    check_python_listener(Family::Tcp6);
}
#[test]
fn python_listener_unix() {
    check_python_listener(Family::Unix);
}
#[test]
fn python_listener_abstract() {
    check_python_listener(Family::Abstract);
}
#[test]
fn python_client_tcp4() {
    check_python_client(Family::Tcp4);
}
#[test]
fn python_client_tcp6() {
    check_python_client(Family::Tcp6);
}
#[test]
fn python_client_unix() {
    check_python_client(Family::Unix);
}
#[test]
fn python_client_abstract() {
    check_python_client(Family::Abstract);
}
