//! `scripts/bench.py --smoke` still runs: every server it starts answers
//! the unmodified Python proxies, and it prints its tables with every
//! operation row. Tiny loops, no Redis, no chart (a few seconds).

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mpmanager");

#[test]
fn bench_script_smoke_run_prints_the_tables() {
    let Some(py) = mpmanager_testutil::newest_python() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // `cargo test` builds the examples next to the binaries; with a
    // filtered run (`--test integration bench_smoke::`) it may not have: then the run
    // is without the echo floor.
    let echo: PathBuf = Path::new(BIN).with_file_name("examples").join("echo_floor");
    let servers = if echo.exists() {
        "cpython,mpmanager,echo"
    } else {
        "cpython,mpmanager"
    };
    let out_dir = std::env::temp_dir().join(format!("mpm-bench-smoke-{}", std::process::id()));
    let out = Command::new(&py.path)
        .arg(root.join("scripts/bench.py"))
        .args(["--smoke", "--no-build", "--servers", servers])
        .arg("--mpmanager")
        .arg(BIN)
        .arg("--echo")
        .arg(&echo)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for want in [
        "== Latency, 1 client process, unix socket",
        "== Latency, 1 client process, tcp socket",
        "== Throughput",
        "== Server memory",
        "live objects",
        "idle connections",
        "== Issue 6 targets",
        "unix, 1 process: p50 at least 1.6x faster than CPython's server:",
        "server CPU per call at most 1/3 of CPython's:",
        "tcp, 2 processes: throughput at least 1.8x CPython's server:",
        "300 live objects and 50 idle connections held",
    ] {
        assert!(
            stdout.contains(want),
            "no {want:?} in\n{stdout}\nstderr:\n{stderr}"
        );
    }
    for op in [
        "ns_set",
        "ns_get",
        "list_append",
        "dict_set",
        "dict_get",
        "queue_putget",
        "lock",
        "proxy_create",
        "big_1mib",
    ] {
        for transport in ["unix", "tcp"] {
            for procs in [1, 2] {
                let row = format!("{transport:<6} {procs:>5} {op:<13}");
                assert!(stdout.contains(&row), "no row {row:?} in\n{stdout}");
            }
        }
    }
    // Every judged target has a verdict.
    let verdicts = stdout
        .lines()
        .filter(|l| l.starts_with("  [met") || l.starts_with("  [MISSED]"))
        .count();
    assert!(verdicts >= 5, "{verdicts} verdicts in\n{stdout}");
    let json = std::fs::read_to_string(out_dir.join("bench.json")).expect("bench.json written");
    assert!(json.contains("\"throughput\""), "{json}");
    assert!(json.contains("\"targets\""), "{json}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
