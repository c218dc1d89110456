//! A client that dies loses nothing and blocks no one: unmodified CPython
//! clients (the oldest and the newest interpreter installed) are SIGKILLed
//! while blocked in `Queue.get`/`put`/`join`, `Condition.wait`,
//! `Semaphore.acquire`, `Barrier.wait`, `Event.wait`, or while holding an
//! `RLock` or a `Lock`, over unix sockets and TCP, with and without
//! `--release-on-disconnect` (`tests/scenarios/faults.py`, 10 rounds per
//! scenario; `MPMANAGER_FAULT_ROUNDS` changes that). Live clients then find
//! every item, permit and notification, and every primitive usable; the
//! server's threads go back to their idle count.

use crate::serve_common;

use std::time::{Duration, Instant};

use mpmanager_testutil::{pythons, Python, ScriptOptions};
use serve_common::{proc_status, Key, ServeProc, TempDir};

const DRIVER: &str = include_str!("scenarios/faults.py");
const KEY: &str = "mpm-faults-key";
const OBJECTS: &[&str] = &[
    "get_q=Queue",
    "get_q1=Queue:1",
    "get_jq=JoinableQueue",
    "get_rl=RLock",
    "get_l=Lock",
    "get_s=Semaphore:0",
    "get_c=Condition",
    "get_b=Barrier:2",
    "get_e=Event",
];

fn rounds() -> String {
    std::env::var("MPMANAGER_FAULT_ROUNDS").unwrap_or_else(|_| "10".to_string())
}

/// The oldest (`oldest = true`) or newest interpreter selected, or `None`
/// (reported as skipped by `pythons()`).
fn interpreter(oldest: bool) -> Option<Python> {
    let all = pythons();
    if oldest { all.first() } else { all.last() }.cloned()
}

fn threads(server: &ServeProc) -> u64 {
    proc_status(server.pid(), "Threads:")
}

fn run_faults(py: &Python, tcp: bool, release_on_disconnect: bool) {
    let dir = TempDir::new("faults");
    let address = if tcp {
        "127.0.0.1:0".to_string()
    } else {
        format!("unix:{}", dir.path("s.sock").display())
    };
    let mut extra: Vec<&str> = Vec::new();
    for o in OBJECTS {
        extra.extend(["--object", o]);
    }
    if release_on_disconnect {
        extra.push("--release-on-disconnect");
    }
    let server = ServeProc::start(&address, Key::Env(KEY), &extra);
    let idle = threads(&server);
    let script = dir.path("faults.py");
    std::fs::write(&script, DRIVER).unwrap();
    let target = match &server.address {
        mpmanager_connection::Address::Tcp(sa) => sa.to_string(),
        other => other.to_string().trim_start_matches("unix:").to_string(),
    };
    let policy = if release_on_disconnect { "1" } else { "0" };
    let started = Instant::now();
    let run = py.run_script(
        &script,
        &[&target, KEY, &rounds(), policy],
        &ScriptOptions::default(),
        Duration::from_secs(600),
    );
    let label = format!(
        "CPython {} over {}{}",
        py.label(),
        if tcp { "TCP" } else { "a unix socket" },
        if release_on_disconnect {
            " with --release-on-disconnect"
        } else {
            ""
        }
    );
    eprintln!(
        "{label} ({:.1} s):\n{}",
        started.elapsed().as_secs_f64(),
        run.stdout
    );
    assert!(
        run.stdout.contains("FAULTS OK"),
        "{label}: the fault scenarios failed\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
        run.stdout,
        run.stderr,
        server.stderr()
    );
    // Every dead client's thread and connection slot is freed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads(&server) > idle && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        threads(&server),
        idle,
        "{label}: server threads not back to idle\n{}",
        server.stderr()
    );
    let log = server.stderr();
    assert!(!log.contains("panicked"), "{label}: {log}");
    // The server says what it did for the dead clients.
    assert!(log.contains("cancelled queue.Queue.get"), "{label}: {log}");
    assert!(log.contains("released an RLock"), "{label}: {log}");
}

#[test]
fn killed_clients_lose_nothing_oldest_python_unix() {
    if let Some(py) = interpreter(true) {
        run_faults(&py, false, false);
    }
}

#[test]
fn killed_clients_lose_nothing_oldest_python_tcp_release_on_disconnect() {
    if let Some(py) = interpreter(true) {
        run_faults(&py, true, true);
    }
}

#[test]
fn killed_clients_lose_nothing_newest_python_unix_release_on_disconnect() {
    if let Some(py) = interpreter(false) {
        run_faults(&py, false, true);
    }
}

#[test]
fn killed_clients_lose_nothing_newest_python_tcp() {
    if let Some(py) = interpreter(false) {
        run_faults(&py, true, false);
    }
}
