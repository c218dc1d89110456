//! Shared helpers for the `mpmanager serve` tests: a guard around the
//! server process (killed on drop, so a failing test never leaves it
//! behind), temp dirs, and raw-client helpers.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpmanager_connection::{auth, Address, Connection};
use mpmanager_pickle::{decode, encode, Value};
use mpmanager_protocol::{PublicOp, Reply, Request};

pub use mpmanager_testutil::TempDir;

pub const IO: Duration = Duration::from_secs(20);

/// How the server gets its key.
pub enum Key<'a> {
    Env(&'a str),
    File(&'a Path),
    None,
}

/// A running `mpmanager serve`; killed (and reaped) on drop.
pub struct ServeProc {
    child: Option<Child>,
    pub address: Address,
    pub stderr_path: PathBuf,
    _dir: TempDir,
}

impl ServeProc {
    /// Starts the server and waits for `--print-address`.
    pub fn start(address: &str, key: Key<'_>, extra: &[&str]) -> ServeProc {
        match ServeProc::try_start(address, key, extra) {
            Ok(p) => p,
            Err(stderr) => panic!("server did not start:\n{stderr}"),
        }
    }

    /// Starts the server; `Err(stderr)` if it exits before printing its
    /// address.
    pub fn try_start(address: &str, key: Key<'_>, extra: &[&str]) -> Result<ServeProc, String> {
        let dir = TempDir::new("serve-log");
        let stderr_path = dir.path("stderr.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpmanager"));
        cmd.args([
            "serve",
            "--address",
            address,
            "--print-address",
            "--handshake-timeout",
            "1",
        ])
        .args(extra)
        .env_remove("MPMANAGER_AUTHKEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
        match key {
            Key::Env(k) => {
                cmd.env("MPMANAGER_AUTHKEY", k);
            }
            Key::File(p) => {
                cmd.arg("--authkey-file").arg(p);
            }
            Key::None => {}
        }
        let mut child = cmd.spawn().expect("start mpmanager serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(IO).unwrap_or_default();
        let mut proc = ServeProc {
            child: Some(child),
            address: "127.0.0.1:1".parse().unwrap(),
            stderr_path,
            _dir: dir,
        };
        // `error errno=N`: it could not listen, says why on stderr, exits.
        if line.starts_with("error ") {
            proc.wait_exit(IO);
        }
        if line.trim().is_empty() || line.starts_with("error ") {
            proc.kill();
            return Err(proc.stderr());
        }
        proc.address = line.trim().parse().expect("printed address parses");
        Ok(proc)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        let child = self.child.as_mut()?;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The address as a Python literal.
    pub fn py_address(&self) -> String {
        self.address.python_repr()
    }
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A numeric field of `/proc/PID/status` (`"Threads:"`, `"VmRSS:"` in
/// KiB, …).
pub fn proc_status(pid: i32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    proc_status(pid, "VmRSS:")
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Connects and authenticates.
pub fn client(addr: &Address, key: &[u8]) -> Connection {
    let mut c = Connection::connect(addr, Some(IO)).unwrap();
    c.stream().set_read_timeout(Some(IO)).unwrap();
    auth::client_handshake(&mut c, key).unwrap();
    c
}

pub fn send(c: &mut Connection, v: &Value) {
    c.send(&encode(v).unwrap()).unwrap();
}

pub fn recv(c: &mut Connection) -> Reply {
    Reply::from_value(&decode(&c.recv(1 << 24).unwrap()).unwrap()).unwrap()
}

pub fn one_shot(addr: &Address, key: &[u8], op: PublicOp, args: Vec<Value>) -> Reply {
    let mut c = client(addr, key);
    send(&mut c, &Request::public(op, args).to_value());
    recv(&mut c)
}

pub fn served(addr: &Address, key: &[u8]) -> Connection {
    let mut c = client(addr, key);
    send(
        &mut c,
        &Request::public(PublicOp::AcceptConnection, vec![Value::str("Attacker")]).to_value(),
    );
    assert_eq!(recv(&mut c), Reply::none());
    c
}

pub fn call(c: &mut Connection, ident: &str, method: &str, args: Vec<Value>) -> Reply {
    send(c, &Request::call(ident, method, args, vec![]).to_value());
    recv(c)
}

/// Python prologue: a hard time limit, the address and key from argv.
pub const PY_PRELUDE: &str = r#"
import sys, os, ast, gc, time, faulthandler
faulthandler.dump_traceback_later(90, exit=True)
import multiprocessing
from multiprocessing.managers import SyncManager, BaseManager, RemoteError
from multiprocessing.managers import ListProxy, DictProxy, NamespaceProxy, ValueProxy
address = ast.literal_eval(sys.argv[1])
key = bytes.fromhex(sys.argv[2])
# Proxies unpickled from replies (nested proxies) authenticate with the
# process key (docs/PROTOCOL.md §2.6).
multiprocessing.current_process().authkey = key
"#;
