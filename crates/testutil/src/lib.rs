//! Test support shared by mpmanager's interop tests: finding the CPython
//! interpreters installed on this machine and running Python snippets.
//!
//! Interpreters are taken from `MPMANAGER_PYTHONS` (a `:`-separated list of
//! executables) if set; otherwise every `3.8`–`3.14` under `pyenv root`
//! (or `~/.pyenv`); otherwise `python3` on `PATH`. Tests iterate over
//! [`pythons`] and so skip versions that are missing.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// One CPython interpreter.
#[derive(Clone, Debug)]
pub struct Python {
    /// `(major, minor)`, e.g. `(3, 11)`.
    pub version: (u32, u32),
    /// The executable.
    pub path: PathBuf,
}

impl Python {
    /// `"3.11"`.
    pub fn label(&self) -> String {
        format!("{}.{}", self.version.0, self.version.1)
    }

    /// Runs `python -c code args…` with `stdin` fed in, returning its output.
    pub fn run(&self, code: &str, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.path)
            .arg("-c")
            .arg(code)
            .args(args)
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.path.display()));
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("python output");
        writer.join().expect("stdin writer");
        out
    }

    /// Like [`Python::run`], but panics with Python's stderr unless it exits 0.
    pub fn run_ok(&self, code: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let out = self.run(code, args, stdin);
        assert!(
            out.status.success(),
            "python {} failed ({}):\n{}",
            self.label(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

fn version_of(path: &PathBuf) -> Option<(u32, u32)> {
    let out = Command::new(path)
        .args(["-c", "import sys; print('%d %d' % sys.version_info[:2])"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<u32>());
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

/// Every CPython 3.8+ found, oldest first, one per minor version.
pub fn pythons() -> Vec<Python> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(list) = std::env::var("MPMANAGER_PYTHONS") {
        candidates.extend(list.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    } else {
        let root = Command::new("pyenv")
            .arg("root")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string()))
            .or_else(|| {
                std::env::var("HOME")
                    .ok()
                    .map(|h| PathBuf::from(h).join(".pyenv"))
            });
        if let Some(root) = root {
            if let Ok(entries) = std::fs::read_dir(root.join("versions")) {
                let mut dirs: Vec<_> = entries.flatten().map(|e| e.path()).collect();
                dirs.sort();
                for d in dirs {
                    let p = d.join("bin").join("python3");
                    if p.exists() {
                        candidates.push(p);
                    }
                }
            }
        }
        if candidates.is_empty() {
            candidates.push(PathBuf::from("python3"));
        }
    }
    let mut found: Vec<Python> = Vec::new();
    for path in candidates {
        if let Some(version) = version_of(&path) {
            if version >= (3, 8) && !found.iter().any(|p| p.version == version) {
                found.push(Python { version, path });
            }
        }
    }
    found.sort_by_key(|p| p.version);
    found
}

/// The newest interpreter found, for tests that need just one.
pub fn newest_python() -> Option<Python> {
    pythons().pop()
}
