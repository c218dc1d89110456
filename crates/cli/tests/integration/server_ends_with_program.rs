//! A Python program that starts an `mpmanager serve` through the package
//! (`mpmanager.install()`) and is killed leaves nothing behind: its server
//! stops at once, the port is free, and the next run of the program binds
//! it (CPython's own server dies with its process, so does ours).
//!
//! Both ways a program starts a server: `get_server().serve_forever()`
//! (killed with SIGTERM) and `start()` (killed with SIGKILL), for the
//! oldest and the newest installed CPython.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpmanager_connection::{auth, Address, Connection};
use mpmanager_pickle::{decode, encode, Value};
use mpmanager_protocol::{PublicOp, Reply, Request};
use mpmanager_testutil::{pythons, Python};

const KEY: &[u8] = b"lifetime-key";
const IO: Duration = Duration::from_secs(30);

const PROGRAM: &str = r#"
import sys, time
import mpmanager
mpmanager.install()
from multiprocessing.managers import SyncManager
port, mode = int(sys.argv[1]), sys.argv[2]
m = SyncManager(address=('127.0.0.1', port), authkey=b'lifetime-key')
if mode == 'serve_forever':
    s = m.get_server()
    print('serving', flush=True)
    s.serve_forever()
else:
    m.start()
    print('serving', flush=True)
    time.sleep(120)
"#;

/// A Python program in its own process group; the group is killed on drop.
struct Program {
    child: Child,
    pgid: i32,
}

impl Program {
    /// Runs the program and waits for it to print `serving`; `Err` with its
    /// output if it exits first.
    fn start(py: &Python, port: u16, mode: &str) -> Result<Program, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut child = Command::new(&py.path)
            .args(["-c", PROGRAM, &port.to_string(), mode])
            .env("MPMANAGER_BIN", env!("CARGO_BIN_EXE_mpmanager"))
            .env("PYTHONPATH", root.join("python"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(IO).unwrap_or_default();
        let mut p = Program { child, pgid };
        if line.trim() != "serving" {
            p.kill_group();
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
            return Err(format!("stdout: {line:?}\nstderr:\n{err}"));
        }
        // Keep draining stderr so that the program never blocks on it.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        });
        Ok(p)
    }

    fn kill_group(&mut self) {
        // SAFETY: kill(2) on the process group of our own child.
        unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill_group();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn one_shot(port: u16, op: PublicOp, args: Vec<Value>) -> Reply {
    let addr: Address = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Connection::connect(&addr, Some(IO)).unwrap();
    c.stream().set_read_timeout(Some(IO)).unwrap();
    auth::client_handshake(&mut c, KEY).unwrap();
    c.send(&encode(&Request::public(op, args).to_value()).unwrap())
        .unwrap();
    Reply::from_value(&decode(&c.recv(1 << 20).unwrap()).unwrap()).unwrap()
}

fn number_of_objects(port: u16) -> Reply {
    one_shot(port, PublicOp::NumberOfObjects, vec![])
}

/// `mpmanager serve` processes listening on `port`, by their command line.
fn servers_on(port: u16) -> Vec<i32> {
    let needle = format!("127.0.0.1:{port}");
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.contains(&&b"serve"[..]) && args.contains(&needle.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

fn check(py: &Python, mode: &str, signal: i32) {
    let port = free_port();
    let mut first = Program::start(py, port, mode)
        .unwrap_or_else(|e| panic!("python {} {mode}: first run: {e}", py.label()));
    assert_eq!(
        one_shot(
            port,
            PublicOp::Create,
            vec![Value::str("list"), Value::list(vec![Value::Int(1)])]
        )
        .kind(),
        "#RETURN"
    );
    assert_eq!(number_of_objects(port), Reply::Return(Value::Int(1)));
    let old = servers_on(port);
    assert_eq!(old.len(), 1, "{old:?}");
    // SAFETY: kill(2) on our own child (the Python program alone, not its
    // group: the server must notice by itself).
    unsafe { libc::kill(first.child.id() as i32, signal) };
    let status = first.child.wait().unwrap();
    assert!(!status.success());
    // The next run at once: it binds the same port, with new objects.
    let start = Instant::now();
    let second = Program::start(py, port, mode).unwrap_or_else(|e| {
        panic!(
            "python {} {mode}: the next run did not bind the port after the first was killed \
             with signal {signal}: {e}",
            py.label()
        )
    });
    eprintln!(
        "python {} {mode}, signal {signal}: next run serving after {:?}",
        py.label(),
        start.elapsed()
    );
    assert_eq!(number_of_objects(port), Reply::Return(Value::Int(0)));
    // The old server process is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while old.iter().any(|p| servers_on(port).contains(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = servers_on(port)
        .into_iter()
        .filter(|p| old.contains(p))
        .collect();
    assert!(left.is_empty(), "old server still running: {left:?}");
    drop(second);
}

fn oldest_and_newest() -> Vec<Python> {
    let mut all = pythons();
    if all.len() > 2 {
        all = vec![all[0].clone(), all.pop().unwrap()];
    }
    all
}

#[test]
fn sigterm_of_a_program_in_serve_forever_frees_the_port_for_the_next_run() {
    for py in oldest_and_newest() {
        check(&py, "serve_forever", libc::SIGTERM);
    }
}

#[test]
fn sigkill_of_a_program_that_started_a_manager_frees_the_port_for_the_next_run() {
    for py in oldest_and_newest() {
        check(&py, "start", libc::SIGKILL);
    }
}
