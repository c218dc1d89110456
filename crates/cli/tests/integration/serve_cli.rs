//! `mpmanager serve` command line: authkey sources, the generated key,
//! refusals at startup, log formats, and `pickle` still working.

use crate::serve_common;

use std::process::Command;

use mpmanager_pickle::Value;
use mpmanager_protocol::{PublicOp, Reply};
use mpmanager_testutil::newest_python;
use serve_common::*;

const BIN: &str = env!("CARGO_BIN_EXE_mpmanager");

#[test]
fn generated_key_is_printed_once_and_works_from_python() {
    let srv = ServeProc::start("127.0.0.1:0", Key::None, &[]);
    let log = srv.stderr();
    let marker = "authkey=bytes.fromhex('";
    assert_eq!(log.matches(marker).count(), 1, "{log}");
    let start = log.find(marker).unwrap() + marker.len();
    let hexkey = &log[start..start + 64];
    assert!(hexkey.bytes().all(|b| b.is_ascii_hexdigit()), "{hexkey}");
    assert_eq!(&log[start + 64..start + 66], "')");
    let Some(py) = newest_python() else {
        return;
    };
    let code = format!(
        "{PY_PRELUDE}\nm = SyncManager(address=address, authkey=key)\nm.connect()\n\
         n = m.Namespace(a=1)\nassert n.a == 1\nprint('OK')\n"
    );
    let out = py.run(&code, &[&srv.py_address(), hexkey], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn authkey_file_is_used_byte_for_byte() {
    let dir = TempDir::new("keyfile");
    let keyfile = dir.path("key");
    // Not UTF-8, with a trailing newline that must not be stripped.
    let key: &[u8] = b"\xff\x00raw key\n";
    std::fs::write(&keyfile, key).unwrap();
    let srv = ServeProc::start(
        "127.0.0.1:0",
        Key::File(&keyfile),
        &["--log-level", "trace"],
    );
    assert_eq!(
        one_shot(&srv.address, key, PublicOp::Dummy, vec![]),
        Reply::none()
    );
    // Without the newline the key is wrong.
    let mut c = mpmanager_connection::Connection::connect(&srv.address, Some(IO)).unwrap();
    c.stream().set_read_timeout(Some(IO)).unwrap();
    assert!(mpmanager_connection::auth::client_handshake(&mut c, &key[..key.len() - 1]).is_err());
    let log = srv.stderr();
    assert!(
        !log.contains("raw key"),
        "the key must never be logged:\n{log}"
    );
    assert!(!log.contains("fromhex"), "no key is generated:\n{log}");
}

#[test]
fn empty_key_is_refused_unless_allowed_explicitly() {
    let dir = TempDir::new("empty-key");
    let empty_file = dir.path("key");
    std::fs::write(&empty_file, b"").unwrap();
    // MPMANAGER_AUTHKEY="$UNSET_VAR", and an empty key file, on loopback.
    for (env, file, source) in [
        (
            Some(""),
            None,
            "MPMANAGER_AUTHKEY is set to the empty string",
        ),
        (None, Some(&empty_file), "is empty"),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--address", "127.0.0.1:0"])
            .env_remove("MPMANAGER_AUTHKEY");
        if let Some(v) = env {
            cmd.env("MPMANAGER_AUTHKEY", v);
        }
        if let Some(f) = file {
            cmd.arg("--authkey-file").arg(f);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("the authkey is empty")
                && err.contains(source)
                && err.contains("--allow-empty-authkey"),
            "{err}"
        );
    }
    // On a network address even the flag does not allow it.
    let out = Command::new(BIN)
        .args(["serve", "--address", "0.0.0.0:0", "--allow-empty-authkey"])
        .env("MPMANAGER_AUTHKEY", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing an empty authkey"), "{err}");
    // On loopback, asked for explicitly, an empty key is accepted.
    let srv = ServeProc::start("127.0.0.1:0", Key::Env(""), &["--allow-empty-authkey"]);
    assert_eq!(
        one_shot(&srv.address, b"", PublicOp::Dummy, vec![]),
        Reply::none()
    );
}

#[test]
fn unsupported_and_bad_objects_fail_at_startup() {
    for (spec, expect) in [
        ("p=Pool", "runs no Python code"),
        ("q=Queue:x", "maxsize"),
        ("e=Event:1", "takes no parameters"),
        ("x=Frobnicator", "unknown type"),
        ("list=list", "built-in typeid"),
        ("nameonly", "NAME=TYPE"),
        ("a=Array:zz", "typecode"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--address", "127.0.0.1:0", "--object", spec])
            .env("MPMANAGER_AUTHKEY", "k")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{spec} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{spec}: {err}");
    }
}

#[test]
fn bad_address_and_busy_port() {
    let out = Command::new(BIN)
        .args(["serve", "--address", "nowhere"])
        .env("MPMANAGER_AUTHKEY", "k")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad --address"));
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let r = ServeProc::try_start(&addr, Key::Env("k"), &[]);
    let Err(err) = r else {
        panic!("bound a busy port")
    };
    assert!(err.contains("cannot listen"), "{err}");
}

#[test]
fn json_logs_and_abstract_socket() {
    let name = format!("mpm-cli-test-{}", std::process::id());
    let srv = ServeProc::start(
        &format!("unix:@{name}"),
        Key::Env("k"),
        &["--log-format", "json", "--log-level", "debug"],
    );
    assert_eq!(srv.py_address(), format!("b'\\x00{name}'"));
    assert_eq!(
        one_shot(
            &srv.address,
            b"k",
            PublicOp::Create,
            vec![Value::str("list")]
        )
        .kind(),
        "#RETURN"
    );
    let log = srv.stderr();
    let json_lines: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(
        json_lines.iter().any(|l| l.contains("\"serving\"")),
        "{log}"
    );
}

#[test]
fn pickle_subcommands_still_work() {
    let dir = TempDir::new("pickle-cli");
    let f = dir.path("p.pkl");
    std::fs::write(&f, b"\x80\x04]\x94(K\x01\x8c\x01a\x94e.").unwrap();
    let out = Command::new(BIN)
        .args(["pickle", "show"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[1, 'a']");
    let out = Command::new(BIN)
        .args(["pickle", "recode", "--protocol", "2"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(&out.stdout[..2], b"\x80\x02");
}

#[test]
fn busy_port_error_says_each_thing_once() {
    let srv = ServeProc::start("127.0.0.1:0", Key::Env("k"), &[]);
    let out = Command::new(BIN)
        .args(["serve", "--address", &srv.address.to_string()])
        .env("MPMANAGER_AUTHKEY", "k")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("mpmanager: cannot listen on"))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(line.matches("cannot listen").count(), 1, "{line}");
    assert_eq!(line.matches("in use").count(), 1, "{line}");
}
