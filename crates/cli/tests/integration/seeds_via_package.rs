//! The seed's "Using a remote manager" examples, unchanged
//! (`tests/seeds_unchanged/`), run with plain CPython and with
//! `python -m mpmanager --strict` (the Python package, which makes their
//! `BaseManager` servers mpmanager's binary), for every installed CPython.
//! Both runs must print the same, and what the documentation shows.
//!
//! Only the addresses are replaced (`('', 50000)`, `('foo.bar.org', 50000)`
//! → a free loopback port): tests bind to loopback only.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mpmanager_testutil::{pythons, Python, ScriptOptions};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn seed_script(name: &str, port: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/seeds_unchanged")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let addr = format!("('127.0.0.1', {port})");
    text.replace("('', 50000)", &addr)
        .replace("('foo.bar.org', 50000)", &addr)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Server {
    CPython,
    Mpmanager,
}

fn python_command(py: &Python, server: Server, script: &Path) -> Command {
    let mut cmd = Command::new(&py.path);
    if server == Server::Mpmanager {
        cmd.args(["-m", "mpmanager", "--strict"]);
    }
    cmd.arg(script)
        .current_dir(script.parent().unwrap())
        .env("MPMANAGER_BIN", env!("CARGO_BIN_EXE_mpmanager"))
        .env("PYTHONPATH", repo_root().join("python"))
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::null())
        .process_group(0);
    cmd
}

/// Kills the process group on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// The pids of the processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces, so split after ')'.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == pid {
            out.push(child);
        }
    }
    out
}

fn run_client(py: &Python, server: Server, script: &Path) -> String {
    // Clients are plain CPython programs in both runs.
    let run = py.run_script(
        script,
        &[],
        &ScriptOptions::default(),
        Duration::from_secs(60),
    );
    run.into_result(&format!(
        "{} ({server:?} server, Python {})",
        script.display(),
        py.label()
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Starts `server_script`, runs `clients` in order, returns their output.
fn scenario(py: &Python, server: Server, server_script: &str, clients: &[&str]) -> String {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!(
        "mpm-seeds-{}-{}-{server:?}-{server_script}",
        std::process::id(),
        py.label()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for name in std::iter::once(&server_script).chain(clients) {
        std::fs::write(dir.join(name), seed_script(name, port)).unwrap();
    }
    let mut srv = Group(
        python_command(py, server, &dir.join(server_script))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(st) = srv.0.try_wait().unwrap() {
            panic!(
                "{server_script} ({server:?}, Python {}) exited: {st}",
                py.label()
            );
        }
        assert!(Instant::now() < deadline, "{server_script} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    if server == Server::Mpmanager {
        // The listening process is the mpmanager binary, a child of Python.
        let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_mpmanager")).unwrap();
        let ours = children_of(srv.0.id())
            .into_iter()
            .any(|c| std::fs::read_link(format!("/proc/{c}/exe")).is_ok_and(|exe| exe == bin));
        assert!(ours, "no mpmanager binary under the server script");
    }
    let mut out = String::new();
    for c in clients {
        out += &run_client(py, server, &dir.join(c));
    }
    assert!(
        srv.0.try_wait().unwrap().is_none(),
        "the server script exited early"
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn each_python(f: impl Fn(&Python)) {
    let all = pythons();
    for py in &all {
        f(py);
    }
}

#[test]
fn remote_queue_server_and_two_clients() {
    each_python(|py| {
        let clients = ["remote_queue_client_put.py", "remote_queue_client_get.py"];
        let reference = scenario(py, Server::CPython, "remote_queue_server.py", &clients);
        assert_eq!(reference, "'hello'\n", "CPython {}", py.label());
        let ours = scenario(py, Server::Mpmanager, "remote_queue_server.py", &clients);
        assert_eq!(ours, reference, "Python {}", py.label());
    });
}

#[test]
fn local_worker_puts_into_the_served_multiprocessing_queue() {
    each_python(|py| {
        let clients = ["remote_queue_client_get.py"];
        let reference = scenario(py, Server::CPython, "local_worker_server.py", &clients);
        assert_eq!(reference, "'local hello'\n", "CPython {}", py.label());
        let ours = scenario(py, Server::Mpmanager, "local_worker_server.py", &clients);
        assert_eq!(ours, reference, "Python {}", py.label());
    });
}
