//! Test support shared by mpmanager's interop tests: finding the CPython
//! interpreters installed on this machine, choosing the ones a run tests
//! against, reporting skips, and running Python snippets.
//!
//! # Which interpreters
//!
//! Interpreters are found in `MPMANAGER_PYTHONS` (a `:`-separated list of
//! executables) if set; otherwise every `3.8`+ under `pyenv root` (or
//! `~/.pyenv`); otherwise `python3` on `PATH` ([`installed_pythons`]).
//!
//! Of those, a run tests against ([`pythons`]):
//!
//! * by default the oldest and the newest (two runs cover the range; the
//!   versions in between are for CI),
//! * every one with `MPMANAGER_TEST_PYTHONS=all` (what `.ci/run` sets),
//! * the listed ones with `MPMANAGER_TEST_PYTHONS=3.8,3.11`.
//!
//! # One skip policy
//!
//! A test that cannot run for want of an interpreter is a visible skip, not
//! a silent pass and not a failure: the helpers here print
//! `SKIPPED: <test>: <reason>` on stderr (past the test harness's output
//! capture, so it shows in a plain `cargo test`) and return nothing, and the
//! test returns. A test with its own reason to skip calls [`skip`].
//!
//! CI requires interpreters with `MPMANAGER_TEST_REQUIRE_PYTHONS`: a list of
//! versions (`3.8,3.13`), each of which must be installed and selected, or a
//! count (`2`), the fewest selected interpreters allowed. Every helper here
//! checks it and panics, failing the test, when fewer interpreters would run
//! than required: a machine without them fails CI instead of skipping.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

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

/// What [`Python::run_script`] saw.
#[derive(Debug)]
pub struct ScriptRun {
    /// The exit status, `None` if the script was killed at the timeout.
    pub status: Option<ExitStatus>,
    /// Everything it wrote on stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote on stderr (lossy UTF-8).
    pub stderr: String,
}

impl ScriptRun {
    /// True if it exited 0 before the timeout.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// `Ok(stdout)` on success, else an error naming `what`, the status and
    /// both streams.
    pub fn into_result(self, what: &str) -> Result<String, String> {
        match self.status {
            Some(st) if st.success() => Ok(self.stdout),
            Some(st) => Err(format!(
                "{what} exited with {st}\n--- stdout:\n{}\n--- stderr:\n{}",
                self.stdout, self.stderr
            )),
            None => Err(format!(
                "{what} timed out\n--- stdout:\n{}\n--- stderr:\n{}",
                self.stdout, self.stderr
            )),
        }
    }
}

/// How [`Python::run_script`] runs a script.
#[derive(Clone, Debug, Default)]
pub struct ScriptOptions {
    /// Extra environment variables (PYTHONHASHSEED=0, PYTHONIOENCODING=utf-8
    /// and PYTHONDONTWRITEBYTECODE=1 are always set; PYTHONPATH is removed
    /// unless given here).
    pub env: Vec<(String, String)>,
    /// The working directory (default: the script's folder).
    pub cwd: Option<PathBuf>,
    /// Arguments before the script (e.g. `-m mpmanager`).
    pub interpreter_args: Vec<String>,
}

impl Python {
    /// Runs `python [interpreter_args] script args…` in its own process
    /// group with stdin closed; after it exits, or at `timeout`, the whole
    /// group is killed (CPython manager servers and children it left
    /// behind included).
    pub fn run_script(
        &self,
        script: &Path,
        args: &[&str],
        opts: &ScriptOptions,
        timeout: Duration,
    ) -> ScriptRun {
        let mut cmd = Command::new(&self.path);
        cmd.args(&opts.interpreter_args)
            .arg(script)
            .args(args)
            .current_dir(
                opts.cwd
                    .clone()
                    .unwrap_or_else(|| script.parent().unwrap_or(Path::new(".")).to_path_buf()),
            )
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONIOENCODING", "utf-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("PYTHONPATH")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.path.display()));
        let pgid = child.id() as i32;
        let reader = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let out = reader(child.stdout.take().map(|s| Box::new(s) as _));
        let err = reader(child.stderr.take().map(|s| Box::new(s) as _));
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break None,
            }
        };
        // SAFETY: kill(2) on the process group of our own child; no memory
        // is touched. This also closes the pipes left open by descendants.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
        ScriptRun {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
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

fn discover() -> Vec<Python> {
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

/// Every CPython 3.8+ found, oldest first, one per minor version, whatever
/// the selection (found once per test process).
pub fn installed_pythons() -> Vec<Python> {
    static FOUND: std::sync::OnceLock<Vec<Python>> = std::sync::OnceLock::new();
    FOUND.get_or_init(discover).clone()
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn labels(pys: &[Python]) -> String {
    if pys.is_empty() {
        return "none".into();
    }
    pys.iter().map(Python::label).collect::<Vec<_>>().join(", ")
}

/// The interpreters this run tests against (see the [crate] docs):
/// `MPMANAGER_TEST_PYTHONS` unset → the oldest and the newest installed;
/// `all` → every one; `3.8,3.11` → those (a listed version that is not
/// installed is left out, and counts against a requirement).
///
/// Prints `SKIPPED: <test>: …` when none is found and panics when fewer
/// than `MPMANAGER_TEST_REQUIRE_PYTHONS` are selected.
pub fn pythons() -> Vec<Python> {
    let pys = selected_pythons();
    if pys.is_empty() {
        skip("no CPython 3.8+ interpreter found");
    }
    pys
}

/// [`pythons`] without the skip message (for callers that report their
/// own skip).
fn selected_pythons() -> Vec<Python> {
    let installed = installed_pythons();
    let choice = std::env::var("MPMANAGER_TEST_PYTHONS").unwrap_or_default();
    let choice = choice.trim();
    let selected: Vec<Python> = match choice {
        "" | "ends" => match installed.len() {
            0..=2 => installed.clone(),
            n => vec![installed[0].clone(), installed[n - 1].clone()],
        },
        "all" => installed.clone(),
        list => {
            let wanted: Vec<(u32, u32)> = list
                .split(',')
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    parse_version(v).unwrap_or_else(|| {
                        panic!(
                            "MPMANAGER_TEST_PYTHONS={list:?}: expected `all` or versions like \
                             `3.8,3.13`"
                        )
                    })
                })
                .collect();
            installed
                .iter()
                .filter(|p| wanted.contains(&p.version))
                .cloned()
                .collect()
        }
    };
    check_required(&installed, &selected);
    selected
}

/// Panics unless the selection meets `MPMANAGER_TEST_REQUIRE_PYTHONS`.
fn check_required(installed: &[Python], selected: &[Python]) {
    let Ok(req) = std::env::var("MPMANAGER_TEST_REQUIRE_PYTHONS") else {
        return;
    };
    let req = req.trim();
    if req.is_empty() {
        return;
    }
    if let Ok(n) = req.parse::<usize>() {
        assert!(
            selected.len() >= n,
            "MPMANAGER_TEST_REQUIRE_PYTHONS={req}: only {} interpreter(s) would run ({}; \
             installed: {})",
            selected.len(),
            labels(selected),
            labels(installed)
        );
        return;
    }
    for v in req.split(',').filter(|v| !v.trim().is_empty()) {
        let version = parse_version(v).unwrap_or_else(|| {
            panic!("MPMANAGER_TEST_REQUIRE_PYTHONS={req:?}: expected a count or versions like `3.8,3.13`")
        });
        assert!(
            installed.iter().any(|p| p.version == version),
            "MPMANAGER_TEST_REQUIRE_PYTHONS={req}: CPython {}.{} is required and not installed \
             (installed: {})",
            version.0,
            version.1,
            labels(installed)
        );
        assert!(
            selected.iter().any(|p| p.version == version),
            "MPMANAGER_TEST_REQUIRE_PYTHONS={req}: CPython {}.{} is required and not selected \
             (selected: {}; set MPMANAGER_TEST_PYTHONS=all)",
            version.0,
            version.1,
            labels(selected)
        );
    }
}

/// The newest interpreter of [`pythons`], for tests that need just one;
/// `None` (after printing `SKIPPED: …`) if there is none.
pub fn newest_python() -> Option<Python> {
    let py = selected_pythons().pop();
    if py.is_none() {
        skip("no CPython 3.8+ interpreter found");
    }
    py
}

/// CPython `version` if it is installed and selected (for tests written
/// once per version); otherwise `None`, after printing `SKIPPED: …`, or a
/// panic if `MPMANAGER_TEST_REQUIRE_PYTHONS` requires it.
pub fn python(version: (u32, u32)) -> Option<Python> {
    let selected = selected_pythons();
    let found = selected.iter().find(|p| p.version == version).cloned();
    if found.is_none() {
        let label = format!("{}.{}", version.0, version.1);
        if installed_pythons().iter().any(|p| p.version == version) {
            skip(&format!(
                "CPython {label} is installed but not selected (selected: {}; \
                 MPMANAGER_TEST_PYTHONS=all runs every version)",
                labels(&selected)
            ));
        } else {
            skip(&format!("CPython {label} is not installed"));
        }
    }
    found
}

/// Reports the current test as skipped: prints `SKIPPED: <test>: <reason>`
/// on stderr, past the test harness's capture (the caller then returns).
/// The test is named by its thread, as the harness names it.
pub fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    // One write, so that the line does not interleave with the harness's.
    let line = format!("SKIPPED: {test}: {reason}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A unique temporary directory (`$TMPDIR/mpm-<tag>-<pid>-<n>`: short, as
/// unix socket paths must be), removed with its contents on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates the directory (panics if it cannot).
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "mpm-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        TempDir(p)
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Hides object addresses: every `0x` followed by lowercase hex digits (as
/// Python prints `id()`s and `repr`s) becomes `0x…`, so that outputs of
/// different runs compare equal.
///
/// ```
/// use mpmanager_testutil::normalize_hex;
/// assert_eq!(normalize_hex("<x at 0x7f2ef19f3dd0>] 0x 0xg"), "<x at 0x…>] 0x 0xg");
/// ```
pub fn normalize_hex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("0x") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let n = after
            .bytes()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count();
        out.push_str(if n > 0 { "0x…" } else { "0x" });
        rest = &after[n..];
    }
    out.push_str(rest);
    out
}
