//! The Python package (`python/mpmanager`) against the real binary, for
//! each CPython 3.8–3.14 that `mpmanager_testutil::python` selects (the
//! oldest and the newest installed by default, all with
//! `MPMANAGER_TEST_PYTHONS=all`; the others are reported `SKIPPED`):
//!
//! * `package_tests_*`: `python/tests/test_package.py` (Manager, install(),
//!   registrations, start/shutdown failures, fork/spawn children);
//! * `cpython_manager_suite_*`: CPython's own manager tests
//!   (`test._test_multiprocessing`: the `WithManagerTest*` classes and
//!   `TestSyncManagerTypes`) run by `python/tests/run_cpython_manager_tests.py`
//!   with `mpmanager.install()` in effect. Its `EXCLUDED` table lists every
//!   test not run, with the reason; a manager falling back to CPython's
//!   server fails the run.
//!
//! The package finds the binary through `MPMANAGER_BIN` (this crate's
//! `mpmanager`), and is imported from the source tree (`PYTHONPATH`), so no
//! `pip install` is needed here; `.ci/run` also builds and installs the
//! wheel once.
//!
//! Each Python runs in its own process group, killed when the test ends or
//! times out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mpmanager_testutil::{python, skip, Python, ScriptOptions, ScriptRun};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `python python/tests/<script> args…` with the package importable
/// from the source tree and the binary of this build.
///
/// Each run gets its own working directory: CPython's tests create files
/// such as `tempcwd` in the current directory, and the per-interpreter
/// tests run in parallel.
fn run_python(py: &Python, script: &str, args: &[&str], timeout: Duration) -> ScriptRun {
    let root = repo_root();
    let cwd = std::env::temp_dir().join(format!(
        "mpm-pkg-{}-{}-{}",
        std::process::id(),
        py.label(),
        script.trim_end_matches(".py")
    ));
    std::fs::create_dir_all(&cwd).unwrap();
    let opts = ScriptOptions {
        env: vec![
            (
                "MPMANAGER_BIN".into(),
                env!("CARGO_BIN_EXE_mpmanager").into(),
            ),
            (
                "PYTHONPATH".into(),
                root.join("python").display().to_string(),
            ),
            ("PYTHONUNBUFFERED".into(), "1".into()),
        ],
        cwd: Some(cwd.clone()),
        ..ScriptOptions::default()
    };
    let run = py.run_script(
        &root.join("python/tests").join(script),
        args,
        &opts,
        timeout,
    );
    let _ = std::fs::remove_dir_all(&cwd);
    run
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn package_tests(version: (u32, u32)) {
    let Some(py) = python(version) else { return };
    let run = run_python(&py, "test_package.py", &["-v"], Duration::from_secs(300));
    assert!(
        run.success(),
        "python/tests/test_package.py on {} ({:?}):\n{}\n{}",
        py.label(),
        run.status,
        run.stdout,
        tail(&run.stderr, 200)
    );
    // unittest prints "Ran N tests" and "OK" on stderr.
    let ran = run
        .stderr
        .lines()
        .find(|l| l.starts_with("Ran "))
        .unwrap_or("")
        .to_string();
    assert!(
        ran.contains(" tests"),
        "no unittest summary:\n{}",
        run.stderr
    );
    eprintln!("python {}: {ran}", py.label());
}

fn cpython_suite(version: (u32, u32)) {
    let Some(py) = python(version) else { return };
    // The suite needs CPython's test package (not every build installs it).
    let probe = py.run("import test._test_multiprocessing", &[], b"");
    if !probe.status.success() {
        skip(&format!(
            "CPython {} has no test._test_multiprocessing",
            py.label()
        ));
        return;
    }
    let run = run_python(
        &py,
        "run_cpython_manager_tests.py",
        &["-v"],
        Duration::from_secs(900),
    );
    let summary = run
        .stdout
        .lines()
        .find(|l| l.starts_with("SUMMARY "))
        .map(str::to_string);
    assert!(
        run.success(),
        "CPython's manager tests with mpmanager.install() on {} ({:?}): {:?}\n{}\n{}",
        py.label(),
        run.status,
        summary,
        tail(&run.stdout, 80),
        tail(&run.stderr, 400)
    );
    let summary = summary.expect("the runner prints a SUMMARY line");
    // The run must have exercised mpmanager's server, and most of the suite.
    let field = |name: &str| -> usize {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {summary}"))
    };
    assert!(field("mpmanager_servers") > 0, "{summary}");
    assert!(field("passed") >= 50, "too few tests passed: {summary}");
    eprintln!("{summary}");
}

macro_rules! per_python {
    ($($pkg:ident, $suite:ident => ($maj:literal, $min:literal);)*) => {$(
        #[test]
        fn $pkg() {
            package_tests(($maj, $min));
        }
        #[test]
        fn $suite() {
            cpython_suite(($maj, $min));
        }
    )*};
}

per_python! {
    package_tests_py38, cpython_manager_suite_py38 => (3, 8);
    package_tests_py39, cpython_manager_suite_py39 => (3, 9);
    package_tests_py310, cpython_manager_suite_py310 => (3, 10);
    package_tests_py311, cpython_manager_suite_py311 => (3, 11);
    package_tests_py312, cpython_manager_suite_py312 => (3, 12);
    package_tests_py313, cpython_manager_suite_py313 => (3, 13);
    package_tests_py314, cpython_manager_suite_py314 => (3, 14);
}
