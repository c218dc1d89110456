//! `mpmanager serve --busy-poll-us`: connection threads that poll for the
//! next request answer exactly what sleeping ones do (whole, split and
//! pipelined frames, several clients at once, unix and TCP), and a
//! connection that goes quiet stops costing CPU.

use crate::serve_common;

use std::time::Duration;

use mpmanager_pickle::Value;
use mpmanager_protocol::{PublicOp, Reply};
use serve_common::{call, hex, one_shot, served, Key, ServeProc, TempDir, PY_PRELUDE};

const SCRIPT: &str = r#"
m = SyncManager(address=address, authkey=key)
m.connect()
ns = m.Namespace()
for i in range(3000):                 # a tight loop: the case polling is for
    ns.x = i
    assert ns.x == i
big = bytes(range(256)) * 4096        # 1 MiB: frames split across reads
d = m.dict()
d['big'] = big
assert d['big'] == big
l = m.list()
def worker(n):
    for i in range(n):
        l.append(i)
ps = [multiprocessing.get_context('fork').Process(target=worker, args=(1500,)) for _ in range(2)]
for p in ps: p.start()
worker(1500)
for p in ps: p.join()
assert len(l) == 4500 and sorted(l) == sorted(list(range(1500)) * 3)
q = m.Queue()
for i in range(500):
    q.put(i)
    assert q.get() == i
print('OK')
"#;

fn run_python(address: &str) {
    let Some(py) = mpmanager_testutil::newest_python() else {
        return;
    };
    let key = "poll-key";
    let srv = ServeProc::start(address, Key::Env(key), &["--busy-poll-us", "50"]);
    let code = format!("{PY_PRELUDE}{SCRIPT}");
    let out = py.run(&code, &[&srv.py_address(), &hex(key.as_bytes())], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "{address}: {}\n{stdout}\n{}\nserver:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        srv.stderr()
    );
}

#[test]
fn busy_polling_server_answers_python_clients_on_unix_sockets() {
    let dir = TempDir::new("poll");
    run_python(&format!("unix:{}", dir.path("sock").display()));
}

#[test]
fn busy_polling_server_answers_python_clients_over_tcp() {
    run_python("127.0.0.1:0");
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn quiet_connections_of_a_polling_server_cost_no_cpu() {
    let dir = TempDir::new("poll-idle");
    let srv = ServeProc::start(
        &format!("unix:{}", dir.path("sock").display()),
        Key::Env("k"),
        &["--busy-poll-us", "1000"],
    );
    let list = match one_shot(
        &srv.address,
        b"k",
        PublicOp::Create,
        vec![Value::str("list")],
    ) {
        Reply::Return(Value::Tuple(t)) => t[0].as_str().unwrap().to_string(),
        other => panic!("{other:?}"),
    };
    let mut conns: Vec<_> = (0..4).map(|_| served(&srv.address, b"k")).collect();
    for i in 0..2000 {
        let c = &mut conns[i % 4];
        assert_eq!(
            call(c, &list, "append", vec![Value::Int(i as i64)]),
            Reply::none()
        );
    }
    // All four stay connected and say nothing: whatever each chose while
    // busy, none may keep polling (a poll ends after its window).
    std::thread::sleep(Duration::from_millis(50));
    let before = cpu_ticks(srv.pid());
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_ticks(srv.pid()) - before;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        used * 1000 / hz < 100,
        "idle server used {used} ticks in 1 s"
    );
    let c = &mut conns[0];
    assert_eq!(
        call(c, &list, "__len__", vec![]),
        Reply::Return(Value::Int(2000))
    );
}
