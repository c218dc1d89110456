//! Each example prints what its Python counterpart (`examples/python/`, the
//! Python programs, run by CPython with its own manager) prints, with proxy
//! addresses normalised; `remote_queue` prints the docs' `'hello'`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mpmanager_testutil::{newest_python, normalize_hex, ScriptOptions};

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-… → target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        bin.exists(),
        "{} not built (cargo test builds examples)",
        bin.display()
    );
    bin
}

fn run_example(name: &str) -> String {
    let out = Command::new(example(name)).output().unwrap();
    assert!(
        out.status.success(),
        "example {name} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn python_output(script: &str) -> Option<String> {
    let py = newest_python()?;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let run = py.run_script(
        &path,
        &[],
        &ScriptOptions::default(),
        Duration::from_secs(120),
    );
    Some(run.into_result(script).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn bulletin_board_prints_what_the_python_lesson_prints() {
    let ours = run_example("bulletin_board");
    assert_eq!(ours, "empty\neducative\neducative is awesome !\n");
    if let Some(reference) = python_output("bulletin_board.py") {
        assert_eq!(ours, reference);
    }
}

#[test]
fn nested_proxies_propagate_as_in_the_python_answer() {
    let ours = normalize_hex(&run_example("nested_proxies"));
    assert!(
        ours.starts_with("before\nNamespace(x=1, y=[1], z=[1])\n"),
        "{ours}"
    );
    assert!(ours.contains("after\nNamespace(x=2, y=[1], z=[2])\n[2, [1], [2], <ListProxy object, typeid 'list' at 0x…>]\n"), "{ours}");
    if let Some(reference) = python_output("nested_proxies.py") {
        assert_eq!(ours, normalize_hex(&reference));
    }
}

#[test]
fn remote_queue_server_and_two_client_processes() {
    assert_eq!(run_example("remote_queue"), "'hello'\n");
}

#[test]
fn maths_custom_type_prints_what_the_docs_example_prints() {
    let ours = run_example("maths");
    assert_eq!(ours, "7\n56\n");
    if let Some(reference) = python_output("maths.py") {
        assert_eq!(ours, reference);
    }
}
