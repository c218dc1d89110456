//! Admission control of `mpmanager serve` against real peers: a peer
//! without the key cannot keep clients with the key out, a client refused
//! for `--max-connections` is told why, warnings about refused peers are
//! rate-limited and say each thing once.

use crate::serve_common;

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpmanager_connection::Address;
use mpmanager_testutil::{newest_python, pythons, Python};
use serve_common::*;

const KEY: &str = "admission-key";

/// A peer without the key that holds `sockets` connections open and
/// re-opens each one as soon as the server closes it (one thread polling
/// them all); stops on drop.
struct Flooder {
    stop: Arc<AtomicBool>,
    reopened: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flooder {
    fn start(addr: &Address, sockets: usize) -> Flooder {
        use std::os::fd::AsRawFd;
        let Address::Tcp(sa) = addr else {
            panic!("TCP only")
        };
        let sa = *sa;
        let stop = Arc::new(AtomicBool::new(false));
        let reopened = Arc::new(AtomicU64::new(0));
        let (st, re) = (stop.clone(), reopened.clone());
        let thread = std::thread::spawn(move || {
            let mut socks: Vec<Option<TcpStream>> = (0..sockets).map(|_| None).collect();
            let mut buf = [0u8; 256];
            let mut first = true;
            while !st.load(Ordering::Relaxed) {
                for s in socks.iter_mut().filter(|s| s.is_none()) {
                    if let Ok(t) = TcpStream::connect(sa) {
                        t.set_nonblocking(true).unwrap();
                        *s = Some(t);
                        if !first {
                            re.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                first = false;
                let mut fds: Vec<libc::pollfd> = socks
                    .iter()
                    .flatten()
                    .map(|t| libc::pollfd {
                        fd: t.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
                // SAFETY: `fds` is a valid array of pollfd of that length.
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
                let ready: Vec<i32> = fds
                    .iter()
                    .filter(|f| f.revents != 0)
                    .map(|f| f.fd)
                    .collect();
                for s in socks.iter_mut() {
                    let Some(t) = s else { continue };
                    if !ready.contains(&t.as_raw_fd()) {
                        continue;
                    }
                    // Read the challenge and never answer, until closed.
                    loop {
                        match t.read(&mut buf) {
                            Ok(0) => {
                                *s = None;
                                break;
                            }
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(_) => {
                                *s = None;
                                break;
                            }
                        }
                    }
                }
            }
        });
        Flooder {
            stop,
            reopened,
            threads: vec![thread],
        }
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The client with the key: `rounds` times a fresh `SyncManager.connect()`
/// and three calls (create a list, append, read it back); prints
/// `connects_ok connects calls_ok calls` and the errors seen.
const KEYHOLDER: &str = r#"
import sys, time
from multiprocessing.managers import SyncManager
address, key, rounds = eval(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3])
conn_ok = conn_n = call_ok = call_n = 0
errors = {}
def note(e):
    k = '%s: %s' % (type(e).__name__, str(e)[:120])
    errors[k] = errors.get(k, 0) + 1
start = time.monotonic()
for i in range(rounds):
    conn_n += 1
    try:
        m = SyncManager(address=address, authkey=key)
        m.connect()
        conn_ok += 1
    except Exception as e:
        note(e)
        continue
    for step in range(3):
        call_n += 1
        try:
            if step == 0:
                l = m.list([i])
            elif step == 1:
                l.append(i)
            else:
                assert l[:] == [i, i], l[:]
            call_ok += 1
        except Exception as e:
            note(e)
            break
    l = None
print(conn_ok, conn_n, call_ok, call_n, '%.1f' % (time.monotonic() - start))
for k, v in sorted(errors.items()):
    print('  %d x %s' % (v, k))
"#;

struct FloodResult {
    conn_ok: u64,
    conn_n: u64,
    call_ok: u64,
    call_n: u64,
    reopened: u64,
    report: String,
}

fn flood(py: &Python, extra: &[&str], sockets: usize, rounds: u32) -> FloodResult {
    let srv = ServeProc::start("127.0.0.1:0", Key::Env(KEY), extra);
    let idle = (proc_status(srv.pid(), "Threads:"), fds(srv.pid()));
    let flooder = Flooder::start(&srv.address, sockets);
    // Let the flood fill the pending handshakes first.
    std::thread::sleep(Duration::from_millis(300));
    let out = py.run(
        KEYHOLDER,
        &[&srv.py_address(), KEY, &rounds.to_string()],
        b"",
    );
    let reopened = flooder.reopened.load(Ordering::Relaxed);
    drop(flooder);
    // Once the peer is gone, the server is back to its idle threads and
    // descriptors (held sockets are closed at their 1 s deadline).
    let start = Instant::now();
    let mut now = idle;
    while start.elapsed() < Duration::from_secs(10) {
        now = (proc_status(srv.pid(), "Threads:"), fds(srv.pid()));
        if now.0 <= idle.0 && now.1 <= idle.1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        now.0 <= idle.0 && now.1 <= idle.1,
        "threads and descriptors (idle {idle:?}) still at {now:?} 10 s after the flood"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "key-holder failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: Vec<u64> = stdout
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .take(4)
        .map(|x| x.parse().unwrap())
        .collect();
    let report = format!(
        "python {} serve {extra:?}, {sockets} keyless sockets: connects {}/{}, calls {}/{}, \
         keyless sockets closed by the server and re-opened: {reopened}\n{stdout}",
        py.label(),
        first[0],
        first[1],
        first[2],
        first[3],
    );
    eprintln!("{report}");
    FloodResult {
        conn_ok: first[0],
        conn_n: first[1],
        call_ok: first[2],
        call_n: first[3],
        reopened,
        report,
    }
}

/// Open descriptors of process `pid`.
fn fds(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

fn assert_99(r: &FloodResult) {
    assert!(
        r.conn_ok * 100 >= r.conn_n * 99 && r.call_ok * 100 >= r.call_n * 99,
        "fewer than 99% of the key-holder's connects or calls succeeded:\n{}",
        r.report
    );
}

#[test]
fn keyholders_get_in_while_a_keyless_peer_holds_max_connections_sockets() {
    let Some(py) = newest_python() else {
        eprintln!("skipped: no CPython");
        return;
    };
    // The issue's scenario: the peer holds --max-connections sockets
    // (re-opening each when the 1 s handshake timeout drops it). It
    // used to get 0 of 6 connects through.
    let r = flood(&py, &["--max-connections", "8"], 8, 150);
    assert_99(&r);
}

#[test]
fn keyholders_get_in_while_a_keyless_peer_overflows_the_pending_handshakes() {
    let Some(py) = newest_python() else {
        eprintln!("skipped: no CPython");
        return;
    };
    // The peer holds twice the pending-handshake bound: the server evicts
    // the oldest pending sockets (holding them open until their deadline)
    // and the peer re-opens each one it loses. FLOOD_SOCKETS=N changes the
    // number of sockets (beyond 5x the bound the peer's re-opens churn
    // through the pending handshakes and some key-holder handshakes are
    // evicted: see the README).
    let r = flood(
        &py,
        &["--max-connections", "8", "--max-pending-handshakes", "32"],
        std::env::var("FLOOD_SOCKETS")
            .map(|v| v.parse().unwrap())
            .unwrap_or(64),
        150,
    );
    // At least one socket per slot of the bound was evicted and re-opened
    // (how many more depends on how long the key-holder's run takes).
    assert!(
        r.reopened >= 32,
        "the flood did not overflow the bound:\n{}",
        r.report
    );
    assert_99(&r);
}

/// Authenticated served connections from the test itself, holding slots.
fn hold(addr: &Address, n: usize) -> Vec<mpmanager_connection::Connection> {
    (0..n).map(|_| served(addr, KEY.as_bytes())).collect()
}

#[test]
fn client_refused_for_max_connections_is_told_the_limit_and_the_flag() {
    let srv = ServeProc::start("127.0.0.1:0", Key::Env(KEY), &["--max-connections", "2"]);
    let _held = hold(&srv.address, 2);
    let mut versions = pythons();
    if versions.len() > 2 {
        versions = vec![versions[0].clone(), versions.pop().unwrap()];
    }
    let code = r#"
import sys
from multiprocessing.managers import SyncManager
m = SyncManager(address=eval(sys.argv[1]), authkey=sys.argv[2].encode())
for i in range(10):
    try:
        m.connect()
        print('connected')
    except Exception as e:
        last = '%s: %s' % (type(e).__name__, e)
print(last)
"#;
    for py in &versions {
        let out = py.run_ok(code, &[&srv.py_address(), KEY], b"");
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.starts_with(
                "ConnectionRefusedError: mpmanager refused the connection: 2 connections are open"
            ) && out.contains("--max-connections"),
            "python {}: {out}",
            py.label()
        );
    }
    // The refusals are one WARN line (rate-limited), which names the limit.
    let log = srv.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection refused"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("--max-connections"),
        "{log}"
    );
}

#[test]
fn failed_handshakes_are_logged_once_per_period_without_repeating_themselves() {
    let srv = ServeProc::start("127.0.0.1:0", Key::Env(KEY), &[]);
    for _ in 0..20 {
        let mut c = mpmanager_connection::Connection::connect(&srv.address, Some(IO)).unwrap();
        c.stream().set_read_timeout(Some(IO)).unwrap();
        assert!(mpmanager_connection::auth::client_handshake(&mut c, b"wrong").is_err());
    }
    // The server still serves.
    let _ok = hold(&srv.address, 1);
    let start = Instant::now();
    let log = loop {
        let log = srv.stderr();
        if log.contains("authentication failed") || start.elapsed() > IO {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert_eq!(lines.len(), 1, "one line for 20 failures:\n{log}");
    assert_eq!(
        lines[0].matches("authentication").count(),
        1,
        "the line repeats itself: {}",
        lines[0]
    );
    assert!(lines[0].contains("digest received was wrong"), "{log}");
}
