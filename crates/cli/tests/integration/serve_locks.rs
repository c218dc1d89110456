//! The synchronisation types (Lock, RLock, Semaphore, BoundedSemaphore,
//! Condition, Barrier) through real CPython clients.
//!
//! `tests/integration/scenarios/sync_types.py` (with `tests/integration/scenarios/prelude.py`
//! prepended) runs on every installed CPython (3.8+, see
//! `mpmanager_testutil::pythons`; missing versions are skipped) twice:
//!
//! ```text
//! python3 sync_types.py cpython   unix:<tmp>/ref.sock <key>   # CPython's SyncManager server
//! python3 sync_types.py mpmanager unix:<tmp>/sock     <key>   # mpmanager serve
//! ```
//!
//! and the two outputs must be identical after normalisation (`0x…`
//! addresses, the socket path). It uses several client processes (fork) and
//! threads: two processes contending on a Lock, Condition notify between
//! processes, a Barrier of three processes, the exception types
//! (`except threading.BrokenBarrierError`) and texts.
//!
//! Where CPython's servers of different versions print different lines
//! (3.11 changed the Semaphore and Barrier reprs, 3.13 the negative
//! timeout text and `Barrier(0)`), mpmanager follows the newest; such a
//! line is accepted if it is the line at the same place in another
//! version's reference output (the tolerance of `seed_scenarios.rs`).
//!
//! Also here: CPython's own manager tests of these types, unmodified,
//! against `mpmanager serve` (`cpython_test_suite_vs_mpmanager`), named
//! shared objects of these types (`named_sync_objects`), and shutdown while
//! clients are blocked in `acquire()`/`wait()`.

use crate::serve_common;
use crate::version_outputs;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mpmanager_testutil::{normalize_hex, pythons, Python, ScriptOptions};
use serve_common::{Key, ServeProc, TempDir};
use version_outputs::compare;

const PRELUDE: &str = include_str!("scenarios/prelude.py");
const SCENARIO: &str = include_str!("scenarios/sync_types.py");
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// Facts every reference run must show (they do not depend on the version);
/// they make sure the scenario really exercises what it claims.
const EXPECT: &[&str] = &[
    "release() again !! RuntimeError: release unlocked lock\n",
    "counter 80\n",
    "['child try False', 'child timed False', 'parent releasing', 'child got lock True']\n",
    "other thread release: RuntimeError: cannot release un-acquired lock\n",
    "release() #4 !! RuntimeError: cannot release un-acquired lock\n",
    "release() too many !! ValueError: Semaphore released too many times\n",
    "['child acquire True', 'parent releasing', 'child woken True']",
    "wait(0) unowned !! RuntimeError: cannot wait on un-acquired lock\n",
    "notify() unowned !! RuntimeError: cannot notify on un-acquired lock\n",
    "after notify(): 1\nafter notify(n=2): 3 ['True', 'True', 'True']\n",
    "after notify_all(): ['thread True', 'w0 True', 'w1 True']\n",
    "wait() woken: True\n<Condition(<locked _thread.RLock object owner=<id> count=2 at 0x…>, 0)>\n",
    "wait_for: True 4\n",
    "indices: [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]\n",
    "except threading.BrokenBarrierError: BrokenBarrierError() True\n",
    "['BrokenBarrierError BrokenBarrierError()'] True 0\n",
    "Barrier(2, timeout=0.1).wait() !! BrokenBarrierError\n",
    "== end\nobjects 0\n",
];

fn script() -> String {
    format!("{PRELUDE}\n{SCENARIO}\n\nif __name__ == '__main__':\n    _run(main)\n")
}

/// Runs the scenario with `python`; `Ok(normalised stdout)` if it exits 0.
fn run_scenario(
    py: &Python,
    dir: &TempDir,
    kind: &str,
    address: &str,
    key: &str,
) -> Result<String, String> {
    let out = run_python(
        py,
        dir,
        &format!("sync_types_{kind}.py"),
        &script(),
        &[kind, address, key],
    )?;
    Ok(normalize(&out, address))
}

/// Writes `source` to `dir/name` and runs it with `args` in its own
/// process group (killed afterwards, with whatever it left behind);
/// `Ok(stdout)` if it exits 0 within [`RUN_TIMEOUT`].
fn run_python(
    py: &Python,
    dir: &TempDir,
    name: &str,
    source: &str,
    args: &[&str],
) -> Result<String, String> {
    let path = dir.path(name);
    std::fs::write(&path, source).map_err(|e| e.to_string())?;
    py.run_script(&path, args, &ScriptOptions::default(), RUN_TIMEOUT)
        .into_result(name)
}

/// `0x7f3a…` → `0x…`; the socket path → `<address>`.
fn normalize(s: &str, address: &str) -> String {
    let s = match address.strip_prefix("unix:") {
        Some(p) => s.replace(p, "<address>"),
        None => s.to_string(),
    };
    normalize_hex(&s)
}

fn new_key(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("mpm-locks-{tag}-{}-{nanos:x}", std::process::id())
}

/// The reference output of every interpreter (computed once per test
/// binary, interpreters in parallel).
fn references() -> &'static [(Python, Result<String, String>)] {
    static CELL: OnceLock<Vec<(Python, Result<String, String>)>> = OnceLock::new();
    CELL.get_or_init(|| {
        let pys = pythons();
        std::thread::scope(|s| {
            let handles: Vec<_> = pys
                .iter()
                .map(|py| {
                    s.spawn(move || {
                        let dir = TempDir::new("lref");
                        let address = format!("unix:{}", dir.path("ref.sock").display());
                        run_scenario(py, &dir, "cpython", &address, &new_key(&py.label()))
                    })
                })
                .collect();
            pys.iter()
                .cloned()
                .zip(
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("reference thread")),
                )
                .collect()
        })
    })
}

fn against_mpmanager(py: &Python) -> Result<String, String> {
    let dir = TempDir::new("lmpm");
    let key = new_key(&py.label());
    let address = format!("unix:{}", dir.path("sock").display());
    let server = ServeProc::start(&address, Key::Env(&key), &[]);
    let out = run_scenario(py, &dir, "mpmanager", &address, &key);
    out.map_err(|e| format!("{e}\n--- mpmanager serve said:\n{}", server.stderr()))
}

#[test]
fn sync_types_reference() {
    let refs = references();
    assert!(!refs.is_empty(), "no CPython 3.8+ found");
    let mut failures = Vec::new();
    for (py, out) in refs {
        match out {
            Err(e) => failures.push(format!("[{}] {e}", py.label())),
            Ok(out) => {
                for fact in EXPECT {
                    if !out.contains(fact) {
                        failures.push(format!(
                            "[{}] the reference output lacks {fact:?}:\n{out}",
                            py.label()
                        ));
                    }
                }
            }
        }
    }
    let labels: Vec<String> = refs.iter().map(|(p, _)| p.label()).collect();
    eprintln!("reference ran on {}", labels.join(", "));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn sync_types_vs_mpmanager() {
    let refs = references();
    assert!(!refs.is_empty(), "no CPython 3.8+ found");
    let all: Vec<(String, Result<String, String>)> =
        refs.iter().map(|(py, r)| (py.label(), r.clone())).collect();
    let results: Vec<Result<String, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = refs
            .iter()
            .map(|(py, _)| s.spawn(move || against_mpmanager(py)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("run thread"))
            .collect()
    });
    let mut failures = Vec::new();
    for ((py, reference), ours) in refs.iter().zip(results) {
        let label = py.label();
        let reference = match reference {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("[{label}] reference run failed: {e}"));
                continue;
            }
        };
        match ours {
            Err(e) => failures.push(format!("[{label}] against mpmanager: {e}")),
            Ok(out) => match compare(reference, &out, &all) {
                Ok(notes) => {
                    for n in notes {
                        eprintln!("[{label}] {n}");
                    }
                }
                Err(d) => failures.push(format!(
                    "[{label}] output differs (- CPython {label} server, + mpmanager serve):\n{d}"
                )),
            },
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn harness_compare_and_normalize() {
    assert_eq!(
        normalize("at 0x7f3a and 0x end unix /tmp/s", "unix:/tmp/s"),
        "at 0x… and 0x end unix <address>"
    );
    let r38 = "== a\n<old repr>\nx\n";
    let r313 = "== a\n<new repr>\nx\n";
    let all = [("3.8", r38), ("3.13", r313)].map(|(l, r)| (l.to_string(), Ok(r.to_string())));
    assert_eq!(compare(r313, r313, &all), Ok(vec![]));
    assert_eq!(compare(r38, r313, &all).map(|n| n.len()), Ok(1));
    assert!(compare(r38, "== a\n<other>\nx\n", &all).is_err());
    assert!(compare(r38, "== a\n<new repr>\n", &all).is_err());
}

/// Connections blocked in `acquire()` / `Barrier.wait()` do not hold up
/// shutdown: the one-shot `shutdown` ends the server (status 0) at once,
/// and the blocked clients see their connection close.
#[test]
fn shutdown_while_clients_are_blocked() {
    use mpmanager_pickle::Value;
    use mpmanager_protocol::{PublicOp, Reply};
    use serve_common::{call, one_shot, served};

    let dir = TempDir::new("lshut");
    let key = "locks-shutdown-key";
    let address = format!("unix:{}", dir.path("sock").display());
    let mut srv = ServeProc::start(&address, Key::Env(key), &[]);
    let create = |typeid: &str, args: Vec<Value>| {
        let mut a = vec![Value::str(typeid)];
        a.extend(args);
        match one_shot(&srv.address, key.as_bytes(), PublicOp::Create, a) {
            Reply::Return(v) => {
                let Value::Tuple(t) = v else { panic!("{v:?}") };
                t.items[0].as_str().expect("ident").to_string()
            }
            other => panic!("create {typeid}: {other:?}"),
        }
    };
    let lock = create("Lock", vec![]);
    let barrier = create("Barrier", vec![Value::Int(3)]);
    let mut holder = served(&srv.address, key.as_bytes());
    assert_eq!(
        call(&mut holder, &lock, "acquire", vec![]),
        Reply::Return(Value::Bool(true))
    );
    let blocked: Vec<_> = [(lock.clone(), "acquire"), (barrier.clone(), "wait")]
        .into_iter()
        .map(|(ident, method)| {
            let mut c = served(&srv.address, key.as_bytes());
            std::thread::spawn(move || {
                let req = mpmanager_protocol::Request::call(&ident, method, vec![], vec![]);
                serve_common::send(&mut c, &req.to_value());
                // The reply never comes: the server closes the connection.
                c.recv(1 << 20).is_err()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        blocked.iter().all(|t| !t.is_finished()),
        "calls did not block"
    );
    let t = Instant::now();
    assert_eq!(
        one_shot(&srv.address, key.as_bytes(), PublicOp::Shutdown, vec![]),
        Reply::none()
    );
    let st = srv.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "server still running with blocked clients:\n{}",
            srv.stderr()
        )
    });
    assert!(st.success(), "exit status {st}");
    assert!(t.elapsed() < Duration::from_secs(5));
    for b in blocked {
        assert!(b.join().unwrap(), "a blocked client got a reply");
    }
}

/// CPython's own tests of these types (`_TestLock`, `_TestSemaphore`,
/// `_TestCondition`, `_TestBarrier` in their manager flavour, and the
/// matching `TestSyncManagerTypes` tests), unmodified, against `mpmanager
/// serve`, on every installed interpreter: see
/// `tests/integration/scenarios/cpython_sync_tests.py`. `_TestBarrier.test_action` is
/// replaced by a check that a Barrier action is refused with its reason.
#[test]
fn cpython_test_suite_vs_mpmanager() {
    const DRIVER: &str = include_str!("scenarios/cpython_sync_tests.py");
    let pys = pythons();
    if pys.is_empty() {
        return;
    }
    let results: Vec<Result<String, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = pys
            .iter()
            .map(|py| {
                s.spawn(move || {
                    let dir = TempDir::new("lcpt");
                    let key = new_key(&py.label());
                    let address = format!("unix:{}", dir.path("sock").display());
                    let server = ServeProc::start(&address, Key::Env(&key), &[]);
                    let sock = dir.path("sock").display().to_string();
                    run_python(py, &dir, "cpython_sync_tests.py", DRIVER, &[&sock, &key])
                        .map_err(|e| format!("{e}\n--- mpmanager serve said:\n{}", server.stderr()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("run thread"))
            .collect()
    });
    let mut failures = Vec::new();
    for (py, r) in pys.iter().zip(results) {
        match r {
            Err(e) => failures.push(format!("[{}] {e}", py.label())),
            Ok(out) => {
                let ran = out
                    .lines()
                    .find_map(|l| l.strip_prefix("run "))
                    .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
                    .unwrap_or(0);
                if !out.contains("failures 0 errors 0")
                    || !out.contains("action refused")
                    || ran < 25
                {
                    failures.push(format!("[{}] unexpected output:\n{out}", py.label()));
                } else {
                    eprintln!("[{}] {}", py.label(), out.lines().last().unwrap_or(""));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Named shared objects (`--object NAME=TYPE`) of the synchronisation
/// types: every client gets the same object.
#[test]
fn named_sync_objects() {
    const PY: &str = r#"
import threading
from multiprocessing.managers import AcquirerProxy, ConditionProxy, BarrierProxy
SyncManager.register('mutex', proxytype=AcquirerProxy)
SyncManager.register('rmutex', proxytype=AcquirerProxy)
SyncManager.register('slots', proxytype=AcquirerProxy)
SyncManager.register('sem', proxytype=AcquirerProxy)
SyncManager.register('cond', proxytype=ConditionProxy)
SyncManager.register('gate', proxytype=BarrierProxy)
a = SyncManager(address=address, authkey=key); a.connect()
b = SyncManager(address=address, authkey=key); b.connect()
# Every create of a named object returns the same ident; the client closes
# its connection (a new owner!) when its last proxy of an ident goes, so
# the proxies are kept for the whole run.
am, bm = a.mutex(), b.mutex()
assert am.acquire() is True
assert bm.acquire(False) is False
bm.release()
assert am.acquire(False) is True
ar, br = a.rmutex(), b.rmutex()
assert ar.acquire() and ar.acquire()
assert 'count=2' in str(br), str(br)
def other_thread(f):
    out = []
    t = threading.Thread(target=lambda: out.append(f()))
    t.start(); t.join(30)
    return out
assert other_thread(lambda: br.acquire(False)) == [False]
ar.release(); ar.release()
as_, bs = a.slots(), b.slots()
assert str(as_).endswith(': value=2/2>'), str(as_)
assert as_.acquire() and bs.acquire() and not as_.acquire(False)
bs.release(); bs.release()
try:
    as_.release()
    raise SystemExit('over-release accepted')
except ValueError as e:
    assert str(e) == 'Semaphore released too many times'
sem = a.sem()
assert str(sem).endswith(': value=0>'), str(sem)
assert sem.acquire(False) is False
c = a.cond()
with c:
    assert c.wait(0) is False
g, gb = a.gate(), b.gate()
assert g.parties == 2 and g.n_waiting == 0 and not g.broken
out = []
t = threading.Thread(target=lambda: out.append(gb.wait(30)))
t.start()
out.append(g.wait(30))
t.join()
assert sorted(out) == [0, 1], out
print('OK')
"#;
    let pys = pythons();
    if pys.is_empty() {
        return;
    }
    for py in pys {
        let key = "named-sync-key";
        let srv = ServeProc::start(
            "127.0.0.1:0",
            Key::Env(key),
            &[
                "--object",
                "mutex=Lock",
                "--object",
                "rmutex=RLock",
                "--object",
                "slots=BoundedSemaphore:2",
                "--object",
                "sem=Semaphore:0",
                "--object",
                "cond=Condition",
                "--object",
                "gate=Barrier:2",
            ],
        );
        let out = py.run(
            &format!("{}{PY}", serve_common::PY_PRELUDE),
            &[&srv.py_address(), &serve_common::hex(key.as_bytes())],
            b"",
        );
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
            "python {}: {}\n{}\nserver:\n{}",
            py.label(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            srv.stderr()
        );
    }
}
