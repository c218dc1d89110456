//! Shutdown of `mpmanager serve`: a CPython client's one-shot `shutdown`,
//! SIGTERM and SIGINT all end the process with status 0 within 1 s,
//! remove the unix socket file and free the TCP port at once (CPython's
//! manager restart test rebinds the same port right away).

use crate::serve_common;

use std::time::{Duration, Instant};

use mpmanager_connection::Address;
use mpmanager_pickle::Value;
use mpmanager_protocol::{PublicOp, Reply};
use mpmanager_testutil::{newest_python, pythons};
use serve_common::*;

const KEY: &str = "shutdown-key";

/// Connects, uses a list, then sends the one-shot `shutdown` exactly as
/// `BaseManager._finalize_manager` does, and checks both replies.
const PY_SHUTDOWN: &str = r#"
from multiprocessing.managers import dispatch
m = SyncManager(address=address, authkey=key)
m.connect()
l = m.list([1, 2, 3])
assert l[:] == [1, 2, 3]
conn = m._Client(m._address, authkey=m._authkey)
try:
    assert dispatch(conn, None, 'shutdown') is None
    # CPython's server (and ours) sends ('#RETURN', None) twice.
    assert conn.recv() == ('#RETURN', None)
finally:
    conn.close()
if isinstance(address, str):
    # The socket file disappears when the server has closed its listener.
    t = time.time()
    while os.path.exists(address) and time.time() - t < 2:
        time.sleep(0.001)
    print('GONE %.4f' % (time.time() - t))
print('OK')
"#;

fn wait_exit_ok(srv: &mut ServeProc, what: &str) -> Duration {
    let t = Instant::now();
    let st = srv
        .wait_exit(Duration::from_secs(1))
        .unwrap_or_else(|| panic!("{what}: server still running after 1 s:\n{}", srv.stderr()));
    assert!(st.success(), "{what}: exit status {st}\n{}", srv.stderr());
    t.elapsed()
}

#[test]
fn python_shutdown_over_unix_socket_removes_the_socket_file() {
    let dir = TempDir::new("shut-unix");
    let path = dir.path("mgr.sock");
    let mut ran = Vec::new();
    for py in pythons() {
        let mut srv = ServeProc::start(&format!("unix:{}", path.display()), Key::Env(KEY), &[]);
        assert!(path.exists());
        let out = py.run(
            &format!("{PY_PRELUDE}{PY_SHUTDOWN}"),
            &[&srv.py_address(), &hex(KEY.as_bytes())],
            b"",
        );
        assert!(
            out.status.success(),
            "python {}: {}\nserver log:\n{}",
            py.label(),
            String::from_utf8_lossy(&out.stderr),
            srv.stderr()
        );
        let took = wait_exit_ok(&mut srv, &py.label());
        assert!(!path.exists(), "socket file left behind");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let gone: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("GONE "))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no GONE line: {stdout}"));
        assert!(gone < 1.0, "socket file removed {gone} s after the reply");
        assert!(srv.stderr().contains("shutdown requested by a client"));
        ran.push(format!(
            "{} (socket gone {:.1} ms after the reply; exited {took:?} after the client)",
            py.label(),
            gone * 1000.0
        ));
    }
    assert!(!ran.is_empty(), "no CPython found");
    eprintln!("shutdown from: {}", ran.join(", "));
}

#[test]
fn python_shutdown_over_tcp_then_restart_on_the_same_port() {
    let Some(py) = newest_python() else {
        return;
    };
    let mut srv = ServeProc::start("127.0.0.1:0", Key::Env(KEY), &[]);
    let port = match &srv.address {
        Address::Tcp(sa) => sa.port(),
        _ => unreachable!(),
    };
    let code = format!("{PY_PRELUDE}{PY_SHUTDOWN}");
    let out = py.run(&code, &[&srv.py_address(), &hex(KEY.as_bytes())], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_exit_ok(&mut srv, "tcp shutdown");
    // Restart on the same port at once, and use it.
    let addr = format!("127.0.0.1:{port}");
    let mut again = ServeProc::start(&addr, Key::Env(KEY), &[]);
    let out = py.run(&code, &[&again.py_address(), &hex(KEY.as_bytes())], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_exit_ok(&mut again, "second shutdown");
}

#[test]
fn sigterm_and_sigint_exit_zero_and_free_the_port() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut srv = ServeProc::start("127.0.0.1:0", Key::Env(KEY), &[]);
        let Address::Tcp(sa) = srv.address.clone() else {
            unreachable!()
        };
        // A served connection and an object, so there is something to stop.
        let key = KEY.as_bytes();
        let Reply::Return(_) = one_shot(
            &srv.address,
            key,
            PublicOp::Create,
            vec![Value::str("dict")],
        ) else {
            panic!()
        };
        let mut c = served(&srv.address, key);
        srv.signal(sig);
        wait_exit_ok(&mut srv, &format!("signal {sig}"));
        // The port is free at once.
        std::net::TcpListener::bind(sa).unwrap_or_else(|e| panic!("rebind {sa}: {e}"));
        assert!(c.recv(1024).is_err());
    }
}

#[test]
fn sigterm_removes_the_socket_file() {
    let dir = TempDir::new("sig-unix");
    let path = dir.path("mgr.sock");
    let mut srv = ServeProc::start(&format!("unix:{}", path.display()), Key::Env(KEY), &[]);
    assert!(path.exists());
    srv.signal(libc::SIGTERM);
    wait_exit_ok(&mut srv, "SIGTERM");
    assert!(!path.exists());
}
