//! `mpmanager pickle show` uses the inspector style: an object of an
//! unknown class is shown as the calls that rebuild it (not CPython's
//! `<__main__.Point object at 0x…>`), everything else as CPython's `repr`.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_mpmanager");

#[test]
fn pickle_show_prints_unknown_objects_as_the_calls_that_rebuild_them() {
    // pickle.dumps([Point(1, 2), ...], 2) from CPython 3.11.
    let data: &[u8] = b"\x80\x02]q\x00(c__main__\nPoint\nq\x01)\x81q\x02}q\x03(X\x01\x00\x00\x00xq\x04K\x01X\x01\x00\x00\x00yq\x05K\x02ubc__builtin__\nEllipsis\nq\x06e.";
    let mut child = Command::new(BIN)
        .args(["pickle", "show"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[__main__.Point.__new__(__main__.Point).__setstate__({'x': 1, 'y': 2}), Ellipsis]"
    );
}
