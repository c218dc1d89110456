//! `mpmanager serve` checks its input like a careful CLI: a misspelt log
//! level (which `tracing` would take as a target name, turning every log
//! line off) and limits of zero are refused with the valid choices.

use std::process::{Command, Stdio};

fn serve(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mpmanager"))
        .arg("serve")
        .args(["--address", "127.0.0.1:0", "--quiet"])
        .args(args)
        .env("MPMANAGER_AUTHKEY", "k")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn misspelt_log_levels_are_refused_with_the_valid_choices() {
    for level in ["warning", "verbose", "mpmanager_server=loud"] {
        let (ok, err) = serve(&["--log-level", level], &[]);
        assert!(!ok, "--log-level {level} was accepted");
        assert!(err.contains("unknown log level"), "{err}");
        assert!(err.contains("error, warn, info, debug, trace"), "{err}");
    }
    let (ok, err) = serve(&[], &[("RUST_LOG", "bogus")]);
    assert!(!ok, "RUST_LOG=bogus was accepted");
    assert!(err.contains("bad RUST_LOG"), "{err}");
}

#[test]
fn zero_limits_are_refused() {
    for flag in [
        "--max-connections",
        "--max-frame",
        "--max-pending-handshakes",
    ] {
        let (ok, err) = serve(&[flag, "0"], &[]);
        assert!(!ok, "{flag} 0 was accepted");
        assert!(err.contains("must be at least 1"), "{flag}: {err}");
    }
}
