//! Acceptance scenarios: the same Python programs run against CPython's own
//! manager server (the reference) and against `mpmanager serve`, for every
//! installed CPython (3.8+, see `mpmanager_testutil::pythons`), and their
//! printed output must be identical.
//!
//! Each scenario lives in `tests/integration/scenarios/sNN_*.py`; the harness prepends
//! `tests/integration/scenarios/prelude.py`, appends `if __name__ == '__main__':
//! _run(main)`, writes the script to a fresh temporary directory and runs
//!
//! ```text
//! python3 sNN.py cpython   unix:<tmp>/ref.sock  <key>   # SyncManager(...).start()
//! python3 sNN.py mpmanager unix:<tmp>/sock      <key>   # SyncManager(...).connect()
//! ```
//!
//! (TCP scenarios use `tcp:127.0.0.1:0` for the reference and
//! `tcp:127.0.0.1:<port>` for mpmanager.)  Before comparing, both outputs are
//! normalised: every `0x[0-9a-f]+` becomes `0x…` and the socket path becomes
//! `<address>`.
//!
//! Each scenario yields two tests:
//!
//! * `<scenario>_reference`: runs the reference side on every interpreter,
//!   requires exit status 0 and checks that the outputs quoted in the seeds
//!   appear (e.g. seed 003's `Namespace(x=2, y=[1], z=[2])`);
//! * `<scenario>_vs_mpmanager`: starts `mpmanager serve` (see
//!   [`start_server`] for the exact command line expected) and requires the
//!   scenario's output against it to equal the reference output, line for
//!   line. Until the binary has a `serve` subcommand this test fails with
//!   "mpmanager serve not available".
//!
//! Every wait has a timeout; Python runs in its own process group, which is
//! killed afterwards (CPython manager servers and children included); the
//! mpmanager server is killed by a `Drop` guard.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mpmanager_testutil::{normalize_hex, pythons, Python, TempDir};
use version_outputs::{compare, line_diff};

use crate::version_outputs;

const PRELUDE: &str = include_str!("scenarios/prelude.py");
const POSTLUDE: &str = "\n\nif __name__ == '__main__':\n    _run(main)\n";

/// One Python run of a scenario must finish within this.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// `mpmanager serve` must be accepting connections within this.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Unix,
    Tcp,
}

struct Scenario {
    name: &'static str,
    source: &'static str,
    transport: Transport,
    /// Extra arguments for `mpmanager serve`.
    serve_args: &'static [&'static str],
    /// Fragments (after normalisation) that the reference output must
    /// contain: the outputs quoted in the seeds.
    expect: &'static [&'static str],
}

const SEED_003_ANSWER: &str = "before
Namespace(x=1, y=[1], z=[1])
[1, [1], [1], <ListProxy object, typeid 'list' at 0x…>]
[1]
{0: 1, 1: [1], 2: [1], 3: <ListProxy object, typeid 'list' at 0x…>}
[1]
after
Namespace(x=2, y=[1], z=[2])
[2, [1], [2], <ListProxy object, typeid 'list' at 0x…>]
[2]
{0: 2, 1: [1], 2: [2], 3: <ListProxy object, typeid 'list' at 0x…>}
[2]
";

const S01: Scenario = Scenario {
    name: "s01_namespace_docs",
    source: include_str!("scenarios/s01_namespace_docs.py"),
    transport: Transport::Unix,
    serve_args: &[],
    expect: &[
        "== docs example\nNamespace(x=10, y='hello')\n",
        "<NamespaceProxy object, typeid 'Namespace' at 0x…>",
        "Global.nosuch !! AttributeError: 'Namespace' object has no attribute 'nosuch'",
        "Namespace(job='Builder', name='Bob')",
    ],
};

const S02: Scenario = Scenario {
    name: "s02_bulletin_board",
    source: include_str!("scenarios/s02_bulletin_board.py"),
    transport: Transport::Unix,
    serve_args: &[],
    expect: &[
        "== bulletin board, fork\nempty\nexit 0\neducative\nexit 0\neducative is awesome !\n",
        "== bulletin board, spawn\nempty\nexit 0\neducative\nexit 0\neducative is awesome !\n",
        "child sees ns._item = empty\nexit 0\n",
        "child AttributeError: 'NamespaceProxy' object has no attribute '_item'\nexit 3\nexit 1\n",
    ],
};

const S03: Scenario = Scenario {
    name: "s03_nested_qa",
    source: include_str!("scenarios/s03_nested_qa.py"),
    transport: Transport::Unix,
    serve_args: &[],
    expect: &[
        "before Namespace(x=1, y=2)\nafter Namespace(x=10, y=20)\n",
        "before Namespace(x=[], y=[])\nafter Namespace(x=[], y=[])\n",
        SEED_003_ANSWER,
    ],
};

const S04: Scenario = Scenario {
    name: "s04_proxy_docs",
    source: include_str!("scenarios/s04_proxy_docs.py"),
    transport: Transport::Unix,
    serve_args: &[],
    expect: &[
        "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n<ListProxy object, typeid 'list' at 0x…>\n16\n[4, 9, 16]\n",
        "[<ListProxy object, typeid 'list' at 0x…>] []\n['hello'] ['hello']\n",
        "{'a': 1, 'b': 2}\n{'c': 3, 'z': 26}\n",
        "10\n[2, 3, 4, 5, 6]\nl._callmethod('__getitem__', (20,)) !! IndexError: list index out of range\n",
        "synced: [{'a': 1, 'b': 2}]",
        "== comparisons\nFalse\nFalse\n",
    ],
};

const S05: Scenario = Scenario {
    name: "s05_cpython_tests",
    source: include_str!("scenarios/s05_cpython_tests.py"),
    transport: Transport::Unix,
    serve_args: &[],
    expect: &[
        "== _TestContainers.test_namespace\n('Bob', 'Builder')\nNamespace(name='Bob')\nTrue False\n",
        "next(it) after clear !! RuntimeError: dictionary changed size during iteration",
        "l.index(7) !! ValueError: 7 is not in list",
        "d['zz'] !! KeyError: 'zz'",
        "next(iter(empty dict)) !! StopIteration",
        "after del inner: 1\n",
    ],
};

const S06: Scenario = Scenario {
    name: "s06_value_reprs",
    source: include_str!("scenarios/s06_value_reprs.py"),
    transport: Transport::Unix,
    serve_args: &[],
    expect: &[
        "server [1e+16]\n",
        "server [[1, [...]]]\nlist containing itself   client [1, [...]]\n",
        "server [-0.0]\n-0.0                     client -0.0\n",
        "[<__main__.Point object at 0x…>]",
    ],
};

const S07: Scenario = Scenario {
    name: "s07_remote_tcp",
    source: include_str!("scenarios/s07_remote_tcp.py"),
    transport: Transport::Tcp,
    serve_args: &[],
    expect: &[
        "tuple 127.0.0.1 True True",
        "child sees {'child': True} ['from child']\nexitcode 0\n",
    ],
};

const S08: Scenario = Scenario {
    name: "s08_get_queue_tcp",
    source: include_str!("scenarios/s08_get_queue_tcp.py"),
    transport: Transport::Tcp,
    // A typeid `get_queue` whose callable returns one shared queue.Queue
    // (the "Using a remote manager" docs example).
    serve_args: &["--object", "get_queue=Queue"],
    expect: &["'hello'\n<AutoProxy[get_queue]\n", "'local hello'\n"],
};

const S09: Scenario = Scenario {
    name: "s09_nested_queue",
    source: include_str!("scenarios/s09_nested_queue.py"),
    transport: Transport::Unix,
    serve_args: &[],
    // 3.8 skips the body (its own server cannot hold AutoProxies in containers).
    expect: &["== _TestContainers.test_nested_queue\n"],
};

macro_rules! scenario_tests {
    ($($scenario:ident => $reference:ident, $versus:ident $(, ignore = $why:literal)?;)*) => {$(
        #[test]
        fn $reference() {
            check_reference(&$scenario);
        }

        #[test]
        $(#[ignore = $why])?
        fn $versus() {
            check_against_mpmanager(&$scenario);
        }
    )*};
}

scenario_tests! {
    S01 => s01_namespace_docs_reference, s01_namespace_docs_vs_mpmanager;
    S02 => s02_bulletin_board_reference, s02_bulletin_board_vs_mpmanager;
    S03 => s03_nested_qa_reference, s03_nested_qa_vs_mpmanager;
    S04 => s04_proxy_docs_reference, s04_proxy_docs_vs_mpmanager;
    S05 => s05_cpython_tests_reference, s05_cpython_tests_vs_mpmanager;
    S06 => s06_value_reprs_reference, s06_value_reprs_vs_mpmanager;
    S07 => s07_remote_tcp_reference, s07_remote_tcp_vs_mpmanager;
    S08 => s08_get_queue_tcp_reference, s08_get_queue_tcp_vs_mpmanager;
    S09 => s09_nested_queue_reference, s09_nested_queue_vs_mpmanager;
}

// ---------------------------------------------------------------------------
// The two halves.

fn check_reference(sc: &Scenario) {
    let pys = pythons();
    if pys.is_empty() {
        return;
    }
    let mut failures = Vec::new();
    for py in &pys {
        match reference_output(sc, py) {
            Err(e) => failures.push(format!(
                "[{} {}] reference run failed: {e}",
                sc.name,
                py.label()
            )),
            Ok(out) => {
                for fragment in sc.expect {
                    if !out.contains(fragment) {
                        failures.push(format!(
                            "[{} {}] reference output lacks the expected\n{}\n--- output:\n{}",
                            sc.name,
                            py.label(),
                            indent(fragment),
                            indent(&out)
                        ));
                    }
                }
            }
        }
    }
    let labels: Vec<String> = pys.iter().map(Python::label).collect();
    eprintln!("{}: reference ran on {}", sc.name, labels.join(", "));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn check_against_mpmanager(sc: &Scenario) {
    if let Err(why) = serve_available() {
        panic!(
            "[{}] mpmanager serve not available: {why}\n(only the mpmanager half of this \
             scenario fails; the reference half is `{}_reference`)",
            sc.name, sc.name
        );
    }
    let pys = pythons();
    if pys.is_empty() {
        return;
    }
    let references: Vec<(String, Result<String, String>)> = pys
        .iter()
        .map(|py| (py.label(), reference_output(sc, py)))
        .collect();
    let mut failures = Vec::new();
    for (py, (label, reference)) in pys.iter().zip(&references) {
        let reference = match reference {
            Ok(out) => out,
            Err(e) => {
                failures.push(format!("[{} {label}] reference run failed: {e}", sc.name));
                continue;
            }
        };
        match mpmanager_output(sc, py) {
            Err(e) => failures.push(format!("[{} {label}] against mpmanager: {e}", sc.name)),
            Ok(out) => match compare(reference, &out, &references) {
                Ok(notes) => {
                    for note in notes {
                        eprintln!("[{} {label}] tolerated: {note}", sc.name);
                    }
                }
                Err(diff) => failures.push(format!(
                    "[{} {label}] output differs (- CPython {label} server, + mpmanager serve):\n{diff}",
                    sc.name
                )),
            },
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The reference output of `sc` on `py`, computed once per test binary
/// (both halves of a scenario need it).
fn reference_output(sc: &Scenario, py: &Python) -> Result<String, String> {
    type Cell = Arc<OnceLock<Result<String, String>>>;
    static CACHE: OnceLock<Mutex<HashMap<(String, PathBuf), Cell>>> = OnceLock::new();
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry((sc.name.to_string(), py.path.clone()))
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let dir = TempDir::new("scn");
        let address = match sc.transport {
            Transport::Unix => format!("unix:{}", dir.0.join("ref.sock").display()),
            Transport::Tcp => "tcp:127.0.0.1:0".to_string(),
        };
        let out = run_scenario(sc, py, &dir, "cpython", &address, &new_key());
        dump(sc, py, "cpython", &out);
        out
    })
    .clone()
}

fn mpmanager_output(sc: &Scenario, py: &Python) -> Result<String, String> {
    let dir = TempDir::new("scn");
    let server = start_server(sc, &dir)?;
    let result = run_scenario(sc, py, &dir, "mpmanager", &server.address, &server.key);
    dump(sc, py, "mpmanager", &result);
    let log = server.log.clone();
    let status = server.stop();
    std::thread::sleep(Duration::from_millis(50)); // let the log readers drain
    let log = log.lock().unwrap().join("\n");
    match result {
        Ok(out) => Ok(out),
        Err(e) => Err(format!(
            "{e}\n--- mpmanager serve ({status}) said:\n{}",
            indent(&log)
        )),
    }
}

/// With `MPMANAGER_SCENARIOS_DUMP=DIR`, every normalised output is also
/// written to `DIR/<scenario>.<python>.<kind>.txt` (for diffing by hand).
fn dump(sc: &Scenario, py: &Python, kind: &str, out: &Result<String, String>) {
    if let Some(dir) = std::env::var_os("MPMANAGER_SCENARIOS_DUMP") {
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let text = match out {
            Ok(s) => s.clone(),
            Err(e) => format!("FAILED: {e}\n"),
        };
        let _ = std::fs::write(
            dir.join(format!("{}.{}.{kind}.txt", sc.name, py.label())),
            text,
        );
    }
}

// ---------------------------------------------------------------------------
// Running a scenario.

fn script(sc: &Scenario) -> String {
    format!("{PRELUDE}\n{}{POSTLUDE}", sc.source)
}

fn new_key() -> String {
    let state = std::collections::hash_map::RandomState::new();
    let mut h = state.build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let a = h.finish();
    h.write_u32(std::process::id());
    format!("mpm-{a:016x}{:016x}", h.finish())
}

/// Runs the scenario with the given server kind and address; returns the
/// normalised stdout, or an error with the exit status and stderr.
fn run_scenario(
    sc: &Scenario,
    py: &Python,
    dir: &TempDir,
    kind: &str,
    address: &str,
    key: &str,
) -> Result<String, String> {
    let path = dir.0.join(format!("{}.py", sc.name));
    std::fs::write(&path, script(sc))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut cmd = Command::new(&py.path);
    cmd.arg(&path)
        .args([kind, address, key])
        .current_dir(&dir.0)
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONSTARTUP");
    let started = Instant::now();
    let out = run_with_timeout(cmd, RUN_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{kind} run exited with {} after {:.1}s\n--- stdout:\n{}\n--- stderr:\n{}",
            out.status,
            started.elapsed().as_secs_f64(),
            indent(&stdout),
            indent(&stderr)
        ));
    }
    let mut text = normalize_hex(&stdout);
    for spelling in address_spellings(address) {
        text = text.replace(&spelling, "<address>");
    }
    Ok(text)
}

fn address_spellings(address: &str) -> Vec<String> {
    match address.strip_prefix("unix:") {
        Some(path) => vec![path.to_string()],
        None => Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// `mpmanager serve`.

/// The `mpmanager` binary; `MPMANAGER_SCENARIOS_SERVER` (a command line,
/// split on whitespace) replaces it, e.g. with `scenarios/fake_serve.py`, a
/// stand-in made of CPython's server that tests the harness itself.
fn server_command() -> Command {
    match std::env::var("MPMANAGER_SCENARIOS_SERVER") {
        Ok(line) if !line.trim().is_empty() => {
            let mut words = line.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap());
            cmd.args(words);
            cmd
        }
        _ => Command::new(env!("CARGO_BIN_EXE_mpmanager")),
    }
}

/// Whether the binary has a working `serve` subcommand (checked once).
fn serve_available() -> Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE
        .get_or_init(|| {
            let mut cmd = server_command();
            cmd.args(["serve", "--help"]);
            let out = run_with_timeout(cmd, Duration::from_secs(20))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "`mpmanager serve --help` exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        })
        .clone()
}

/// A running `mpmanager serve`, killed on drop.
struct Server {
    child: Option<Child>,
    /// The address in the prelude's syntax (`unix:PATH` / `tcp:HOST:PORT`).
    address: String,
    /// The authkey it was given (`MPMANAGER_AUTHKEY`).
    key: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Kills the server; describes how it ended.
    fn stop(mut self) -> String {
        self.kill()
    }

    fn kill(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return "already stopped".into();
        };
        if let Ok(Some(status)) = child.try_wait() {
            return format!("had exited by itself with {status}");
        }
        let _ = child.kill();
        match wait_timeout(&mut child, Duration::from_secs(10)) {
            Some(_) => "killed at the end of the run".into(),
            None => "did not die after SIGKILL within 10s".into(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the server as
///
/// ```text
/// MPMANAGER_AUTHKEY=<key> mpmanager serve --address unix:<dir>/sock [extra…]
/// MPMANAGER_AUTHKEY=<key> mpmanager serve --address 127.0.0.1:0 [extra…]
/// ```
///
/// and waits until it is ready:
///
/// * over a unix socket: when the socket file exists, or when a line
///   containing `serving on` appears on stderr (or stdout);
/// * over TCP: the port is taken from the first stderr/stdout line that
///   contains `serving on` (case-insensitive) and an address in any of the
///   spellings `127.0.0.1:PORT`, `tcp:127.0.0.1:PORT`, `('127.0.0.1', PORT)`.
///
/// The authkey is the UTF-8 string in `MPMANAGER_AUTHKEY`; Python uses its
/// UTF-8 bytes.
fn start_server(sc: &Scenario, dir: &TempDir) -> Result<Server, String> {
    // The server reads the key from the environment, the scenario from argv.
    let key = new_key();
    let sock = dir.0.join("sock");
    let spec = match sc.transport {
        Transport::Unix => format!("unix:{}", sock.display()),
        Transport::Tcp => "127.0.0.1:0".to_string(),
    };
    let mut cmd = server_command();
    cmd.arg("serve")
        .arg("--address")
        .arg(&spec)
        .args(sc.serve_args)
        .env("MPMANAGER_AUTHKEY", &key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start mpmanager serve: {e}"))?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut server = Server {
        child: Some(child),
        address: String::new(),
        key,
        log,
    };
    let deadline = Instant::now() + SERVER_START_TIMEOUT;
    loop {
        if sc.transport == Transport::Unix && sock.exists() {
            server.address = spec.clone();
            break;
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                if !line.to_ascii_lowercase().contains("serving on") {
                    continue;
                }
                match sc.transport {
                    Transport::Unix => {
                        server.address = spec.clone();
                        break;
                    }
                    Transport::Tcp => match parse_tcp_address(&line) {
                        Some((host, port)) => {
                            server.address = format!("tcp:{host}:{port}");
                            break;
                        }
                        None => {
                            return Err(format!(
                                "cannot find a TCP address in the server's line {line:?}"
                            ))
                        }
                    },
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(20))
            }
        }
        if let Some(status) = server
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            std::thread::sleep(Duration::from_millis(100)); // let the readers drain
            return Err(format!(
                "`mpmanager serve --address {spec} {}` exited with {status} before serving:\n{}",
                sc.serve_args.join(" "),
                indent(&server.log())
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "`mpmanager serve --address {spec}` not ready after {SERVER_START_TIMEOUT:?} (expected {}); it said:\n{}",
                match sc.transport {
                    Transport::Unix => "the socket file or a `serving on` line",
                    Transport::Tcp => "a `serving on 127.0.0.1:PORT` line on stderr",
                },
                indent(&server.log())
            ));
        }
    }
    Ok(server)
}

/// Finds `IPv4:port` / `('IPv4', port)` in a line.
fn parse_tcp_address(line: &str) -> Option<(String, u16)> {
    let b = line.as_bytes();
    let mut best = None;
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_ascii_digit() || b[i - 1] == b'.')) {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                j += 1;
            }
            let host = &line[i..j];
            let parts: Vec<&str> = host.split('.').collect();
            if parts.len() == 4
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.parse::<u8>().is_ok())
            {
                let mut k = j;
                while k < b.len() && matches!(b[k], b':' | b'\'' | b'"' | b',' | b' ') {
                    k += 1;
                }
                let start = k;
                while k < b.len() && b[k].is_ascii_digit() {
                    k += 1;
                }
                if k > start && start > j {
                    if let Ok(port) = line[start..k].parse::<u16>() {
                        if port != 0 {
                            best = Some((host.to_string(), port));
                        }
                    }
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    best
}

// ---------------------------------------------------------------------------
// Processes with timeouts.

struct RunOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// SIGKILL to a process group that this harness created (`process_group(0)`).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `cmd` in a new process group with stdout/stderr captured; after
/// `timeout` the whole group is killed. Once the command has exited, any
/// process it left behind in its group (a CPython manager server, a child)
/// is killed too.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<RunOutput, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let pgid = child.id();
    let collect = |stream: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        if let Some(mut s) = stream {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                let _ = tx.send(buf);
            });
        }
        rx
    };
    let out_rx = collect(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err_rx = collect(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let status = wait_timeout(&mut child, timeout);
    // Whatever is still in the group (left-over servers, children) goes too;
    // this also closes the pipes they may hold.
    kill_group(pgid);
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = wait_timeout(&mut child, Duration::from_secs(10));
            let partial = out_rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_default();
            let err = err_rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_default();
            return Err(format!(
                "timed out after {timeout:?} (killed)\n--- stdout so far:\n{}\n--- stderr so far:\n{}",
                indent(&String::from_utf8_lossy(&partial)),
                indent(&String::from_utf8_lossy(&err))
            ));
        }
    };
    let stdout = out_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_default();
    let stderr = err_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_default();
    Ok(RunOutput {
        status,
        stdout,
        stderr,
    })
}

// ---------------------------------------------------------------------------
// Small helpers.

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn harness_helpers() {
    assert_eq!(
        normalize_hex("<ListProxy object, typeid 'list' at 0x7f2ef19f3dd0>] 0x 0xg"),
        "<ListProxy object, typeid 'list' at 0x…>] 0x 0xg"
    );
    assert_eq!(normalize_hex("x0x1"), "x0x…");
    assert_eq!(
        parse_tcp_address("mpmanager: serving on 127.0.0.1:45123"),
        Some(("127.0.0.1".into(), 45123))
    );
    assert_eq!(
        parse_tcp_address("serving on tcp:127.0.0.1:9"),
        Some(("127.0.0.1".into(), 9))
    );
    assert_eq!(
        parse_tcp_address("Serving on ('127.0.0.1', 50011) key=…"),
        Some(("127.0.0.1".into(), 50011))
    );
    assert_eq!(parse_tcp_address("serving on 127.0.0.1:0"), None);
    let all = vec![
        (
            "3.8".to_string(),
            Ok("== s\nskipped\n== t\na\nAttributeError: x\nc\n".to_string()),
        ),
        (
            "3.10".to_string(),
            Ok("== s\n1\n2\n== t\na\nAttributeError: x\nc\n".to_string()),
        ),
        (
            "3.11".to_string(),
            Ok("== s\n1\n2\n== t\na\nAttributeError: 'N' has no x\nc\n".to_string()),
        ),
    ];
    let r8 = "== s\nskipped\n== t\na\nAttributeError: x\nc\n";
    let r10 = "== s\n1\n2\n== t\na\nAttributeError: x\nc\n";
    assert_eq!(compare(r10, r10, &all), Ok(vec![]));
    let like11 = "== s\n1\n2\n== t\na\nAttributeError: 'N' has no x\nc\n";
    assert_eq!(compare(r10, like11, &all).map(|n| n.len()), Ok(1));
    let like11_on_38 = "== s\nskipped\n== t\na\nAttributeError: 'N' has no x\nc\n";
    assert_eq!(compare(r8, like11_on_38, &all).map(|n| n.len()), Ok(1));
    assert!(compare(r10, "== s\n1\n2\n== t\na\nAttributeError: y\nc\n", &all).is_err());
    assert!(compare(r10, "== s\n1\n2\n== t\na\nAttributeError: x\n", &all).is_err());
    assert!(compare(r10, "== s\n1\n3\n== t\na\nAttributeError: x\nc\n", &all).is_err());
    let d = line_diff("== a\nx\ny\nz", "== a\nx\nY\nz");
    assert!(
        d.contains("- ") && d.contains("+ ") && d.contains("== a"),
        "{d}"
    );
}
