//! Peers for the client's interop tests: an in-process mpmanager server,
//! and CPython `SyncManager` servers run by Python subprocesses.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use mpmanager_client::Manager;
use mpmanager_testutil::{pythons, Python};

pub const KEY: &[u8] = b"client-test-key";

/// A CPython manager server (`SyncManager(...).get_server().serve_forever()`)
/// in a Python subprocess, killed on drop.
pub struct PyServer {
    pub child: Child,
    pub address: String,
    pub python: Python,
}

const SERVE: &str = r#"
import sys, multiprocessing
from multiprocessing.managers import SyncManager
key = sys.argv[1].encode()
addr = sys.argv[2]
if addr == 'tcp':
    address = ('127.0.0.1', 0)
else:
    address = addr
multiprocessing.current_process().authkey = key
m = SyncManager(address=address, authkey=key)
s = m.get_server()
a = s.address
print('%s:%d' % a if isinstance(a, tuple) else 'unix:' + a, flush=True)
s.serve_forever()
"#;

impl PyServer {
    /// Starts one on `127.0.0.1` (any free port).
    pub fn start(python: &Python) -> PyServer {
        PyServer::start_at(python, "tcp")
    }

    /// Starts one at `address` (`"tcp"` or a unix socket path).
    pub fn start_at(python: &Python, address: &str) -> PyServer {
        let mut child = Command::new(&python.path)
            .args(["-c", SERVE, std::str::from_utf8(KEY).unwrap(), address])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            !line.is_empty(),
            "python {} server printed no address",
            python.label()
        );
        PyServer {
            child,
            address: line.trim().to_string(),
            python: python.clone(),
        }
    }

    pub fn connect(&self) -> Manager {
        Manager::connect(&self.address, KEY).expect("connect to CPython server")
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The interpreters to test against: `mpmanager_testutil::pythons()` (the
/// oldest and the newest installed, or as `MPMANAGER_TEST_PYTHONS` says).
pub fn test_pythons() -> Vec<Python> {
    pythons()
}

/// A peer under test: its name, the manager, and what keeps it alive.
pub struct Peer {
    pub name: String,
    pub manager: Manager,
    pub py: Option<PyServer>,
}

/// An in-process mpmanager server, then one CPython server per
/// [`test_pythons`] interpreter.
pub fn peers() -> Vec<Peer> {
    let mut out = vec![Peer {
        name: "mpmanager".into(),
        manager: Manager::start_in_background(KEY).unwrap(),
        py: None,
    }];
    for p in test_pythons() {
        let s = PyServer::start(&p);
        out.push(Peer {
            name: format!("CPython {}", p.label()),
            manager: s.connect(),
            py: Some(s),
        });
    }
    out
}

/// Runs a Python client snippet with the manager's address and key in
/// `sys.argv[1:3]` and extra arguments after; returns its stdout.
pub fn python_client(python: &Python, address: &str, code: &str, extra: &[&str]) -> String {
    let prelude = r#"
import sys, pickle, multiprocessing
from multiprocessing.managers import SyncManager
address, key = sys.argv[1], sys.argv[2].encode()
multiprocessing.current_process().authkey = key
if address.startswith('unix:'):
    address = address[5:]
else:
    host, port = address.rsplit(':', 1)
    address = (host, int(port))
m = SyncManager(address=address, authkey=key)
m.connect()
def rebuild(s):
    assert s.startswith('mpproxy:')
    return pickle.loads(bytes.fromhex(s[8:]))
"#;
    let full = format!("{prelude}\n{code}");
    let mut args = vec![address, std::str::from_utf8(KEY).unwrap()];
    args.extend_from_slice(extra);
    String::from_utf8(python.run_ok(&full, &args, b"")).unwrap()
}
