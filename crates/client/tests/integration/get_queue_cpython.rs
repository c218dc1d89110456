//! The docs' remote-manager pattern against CPython's own server: a CPython
//! `BaseManager` serving one queue as `register('get_queue', callable=lambda:
//! queue)`, a Rust client and a Python client exchanging items through it,
//! for each CPython of `pythons()` (the oldest and newest by default). The server's object count
//! returns to its start once the Rust proxy is dropped.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mpmanager_client::{Manager, QueueProxy};
use mpmanager_pickle::Value;
use mpmanager_testutil::{pythons, Python, ScriptOptions};

const KEY: &str = "abracadabra";

const SERVER: &str = r#"
import queue, sys
from multiprocessing.managers import BaseManager
q = queue.Queue()
class QueueManager(BaseManager): pass
QueueManager.register('get_queue', callable=lambda: q)
m = QueueManager(address=sys.argv[1], authkey=b'abracadabra')
s = m.get_server()
print(s.address, flush=True)
s.serve_forever()
"#;

const CLIENT: &str = r#"
import sys
from multiprocessing.managers import BaseManager
class QueueManager(BaseManager): pass
QueueManager.register('get_queue')
m = QueueManager(address=sys.argv[1], authkey=b'abracadabra')
m.connect()
queue = m.get_queue()
print(repr(queue.get(timeout=10)))
queue.put(('from python', [1, 2]))
"#;

struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn exchange(py: &Python) {
    let dir = std::env::temp_dir().join(format!("mpm-getq-{}-{}", std::process::id(), py.label()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("sock");
    let server_py = dir.join("server.py");
    let client_py = dir.join("client.py");
    std::fs::write(&server_py, SERVER).unwrap();
    std::fs::write(&client_py, CLIENT).unwrap();
    let mut server = Group(
        Command::new(&py.path)
            .arg(&server_py)
            .arg(&sock)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), sock.display().to_string(), "server address");

    let m = Manager::connect(&format!("unix:{}", sock.display()), KEY.as_bytes()).unwrap();
    let start = m.number_of_objects().unwrap();
    let q: QueueProxy<Value> =
        QueueProxy::from_proxy(m.create("get_queue", vec![], vec![]).unwrap());
    q.put(&Value::str("from rust")).unwrap();

    let out = py
        .run_script(
            &client_py,
            &[&sock.display().to_string()],
            &ScriptOptions::default(),
            Duration::from_secs(60),
        )
        .into_result("client.py")
        .unwrap();
    assert_eq!(out, "'from rust'\n", "Python {}", py.label());
    let back = q.get_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        mpmanager_pickle::repr(&back),
        "('from python', [1, 2])",
        "Python {}",
        py.label()
    );
    assert!(q.get_nowait().is_err(), "the queue is empty again");
    drop(q);
    assert_eq!(
        m.number_of_objects().unwrap(),
        start,
        "Python {}",
        py.label()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rust_and_python_clients_share_a_cpython_get_queue() {
    for py in &pythons() {
        exchange(py);
    }
}
