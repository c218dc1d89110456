//! Found by the fuzzer (LeakSanitizer): a pickle that builds a cycle and
//! then fails to decode leaves the cycle behind; the collector must still
//! reclaim it. The only test in this binary, so that no other test touches
//! the process-wide candidate list while it runs.

use mpmanager_pickle::cycles::collect_cycles;
use mpmanager_pickle::decode;

#[test]
fn cycles_built_by_a_pickle_that_then_fails_are_reclaimed() {
    // EMPTY_LIST, DUP, APPEND (the list now contains itself), DUP, then an
    // unknown opcode instead of STOP.
    let err = decode(b"\x80\x04]2a2\xff").unwrap_err();
    assert!(err.to_string().contains("0xff"), "{err}");
    let stats = collect_cycles();
    assert!(
        !stats.abandoned,
        "nothing else runs in this process: {stats:?}"
    );
    assert_eq!(stats.cleared, 1, "{stats:?}");
    assert_eq!(collect_cycles().cleared, 0, "nothing left");
}
