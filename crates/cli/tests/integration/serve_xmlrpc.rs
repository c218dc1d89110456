//! `mpmanager serve --serializer xmlrpclib` against CPython clients made
//! with `serializer='xmlrpclib'` (as CPython's `_TestRemoteManager`), for
//! every installed interpreter: the scenario
//! `scenarios/x01_xmlrpclib.py` (create, calls, `#ERROR`s, unmarshallable
//! replies, large values, unicode, bytes as `Binary`, `DateTime`, named
//! shared objects, raw malformed payloads) must print exactly what it
//! prints against CPython's own server started with the same serializer.
//! Skipped (with a message) where no CPython is installed.

use crate::serve_common;

use mpmanager_testutil::{pythons, Python};
use serve_common::{Key, ServeProc};

const SCENARIO: &str = include_str!("scenarios/x01_xmlrpclib.py");
const KEY: &str = "xmlrpc-test-key-0123456789abcdef";

fn key_hex() -> String {
    KEY.bytes().map(|b| format!("{b:02x}")).collect()
}

fn run(py: &Python, args: &[&str]) -> String {
    let out = py.run(SCENARIO, args, b"");
    assert!(
        out.status.success(),
        "{}: scenario failed ({}):\n{}",
        py.label(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn start_server() -> ServeProc {
    ServeProc::start(
        "127.0.0.1:0",
        Key::Env(KEY),
        &[
            "--serializer",
            "xmlrpclib",
            "--object",
            "shared=list",
            "--object",
            "shared_auto=list",
        ],
    )
}

#[test]
fn xmlrpclib_clients_see_the_same_as_with_cpython_server() {
    let pys = pythons();
    if pys.is_empty() {
        eprintln!("skipped: no CPython interpreter found");
        return;
    }
    let key = key_hex();
    for py in &pys {
        let reference = run(py, &["cpython", &key]);
        // The scenario really exercised the server (not an empty run).
        assert!(reference.lines().count() >= 40, "{reference}");
        assert!(reference.contains("dict datetime -> DateTime('20240229T12:34:56')"));
        let server = start_server();
        let addr = server.address.to_string();
        let (host, port) = addr.rsplit_once(':').unwrap();
        let ours = run(py, &["connect", host, port, &key]);
        if ours != reference {
            for (a, b) in reference.lines().zip(ours.lines()) {
                if a != b {
                    eprintln!("cpython:   {a}\nmpmanager: {b}");
                }
            }
            panic!(
                "{}: output differs from CPython's server\n--- cpython\n{reference}\n--- mpmanager\n{ours}\n--- server log\n{}",
                py.label(),
                server.stderr()
            );
        }
    }
}

/// The raw wire: a pickle client is answered in XML-RPC, a `#RETURN` is
/// byte-identical to CPython's, and a pickle payload is a `#TRACEBACK`
/// for this request only (the connection stays usable).
#[test]
fn raw_wire_is_xml() {
    let server = start_server();
    let mut c = serve_common::client(&server.address, KEY.as_bytes());
    c.send(b"<params>\n<param>\n<value><array><data>\n<value><nil/></value><value><string>accept_connection</string></value>\n<value><array><data>\n<value><string>x</string></value>\n</data></array></value>\n<value><struct>\n</struct></value>\n</data></array></value>\n</param>\n</params>\n").unwrap();
    let reply = c.recv(1 << 24).unwrap();
    assert_eq!(
        reply,
        b"<params>\n<param>\n<value><array><data>\n<value><string>#RETURN</string></value>\n<value><nil/></value></data></array></value>\n</param>\n</params>\n"
    );
    // A pickle is not XML: expat's "not well-formed" (byte 0x80 is not
    // UTF-8 first).
    c.send(b"\x80\x04N.").unwrap();
    let reply = String::from_utf8(c.recv(1 << 24).unwrap()).unwrap();
    assert!(reply.contains("#TRACEBACK"), "{reply}");
    assert!(
        reply.contains("UnicodeDecodeError: 'utf-8' codec can't decode byte 0x80 in position 0: invalid start byte"),
        "{reply}"
    );
    // Still served.
    c.send(b"<params><param><value><array><data><value>nosuch</value><value>__len__</value><value><array><data/></array></value><value><struct/></value></data></array></value></param></params>").unwrap();
    let reply = String::from_utf8(c.recv(1 << 24).unwrap()).unwrap();
    assert!(reply.contains("#TRACEBACK"), "{reply}");
    assert!(reply.contains("KeyError: 'nosuch'"), "{reply}");

    // One-shot operations: debug_info, then shutdown (replied, exit 0).
    let one_shot = |op: &str| {
        let mut c = serve_common::client(&server.address, KEY.as_bytes());
        c.send(format!("<params><param><value><array><data><value><nil/></value><value>{op}</value><value><array><data/></array></value><value><struct/></value></data></array></value></param></params>").as_bytes()).unwrap();
        String::from_utf8(c.recv(1 << 24).unwrap()).unwrap()
    };
    let info = one_shot("debug_info");
    assert!(info.starts_with("<params>\n<param>\n<value><array><data>\n<value><string>#RETURN</string></value>\n<value><string>"), "{info}");
    assert_eq!(
        one_shot("shutdown"),
        "<params>\n<param>\n<value><array><data>\n<value><string>#RETURN</string></value>\n<value><nil/></value></data></array></value>\n</param>\n</params>\n"
    );
    let mut server = server;
    let status = server
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("server exits after shutdown");
    assert!(status.success(), "{status}");
}
