//! Regression tests for values shaped as DAGs: a pickle can share one
//! container under several parents (`DUP`, memo `GET`), so a value of a few
//! hundred bytes can stand for a tree of 2**64 parts. Found by the fuzzer
//! (a 800-byte input took 41 s); a 90-byte pickle using such a tuple as a
//! dict key hung the decoder in hashing. Hashing, comparing, encoding and
//! walking must take time linear in the pickle, and repr must stop with a
//! clear error instead of expanding the tree.
//!
//! Each check runs on a worker thread with a generous deadline, so a
//! regression fails the test instead of hanging CI.

use std::sync::mpsc;
use std::time::Duration;

use mpmanager_pickle::{decode, encode, hash, repr, ExcType, Value};

/// `t = (); t = (t, t)` `levels` times (DUP + TUPLE2), protocol 4.
fn dag_tuple(levels: usize) -> Vec<u8> {
    let mut p = b"\x80\x04)".to_vec();
    p.extend(std::iter::repeat_n(&b"2\x86"[..], levels).flatten());
    p.push(b'.');
    p
}

fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            panic!("{what} did not finish: exponential work on a DAG-shaped value?")
        })
}

#[test]
fn dag_shaped_dict_key_decodes_without_expanding_the_tree() {
    let mut p = b"\x80\x04}".to_vec();
    p.extend_from_slice(&dag_tuple(64)[2..dag_tuple(64).len() - 1]);
    p.extend_from_slice(b"K\x01s.");
    let v = within_deadline("decoding a dict keyed by a 64-level DAG tuple", move || {
        decode(&p).unwrap()
    });
    let Value::Dict(d) = &v else { panic!("a dict") };
    assert_eq!(d.read().len(), 1);
}

#[test]
fn dag_shaped_values_hash_compare_and_encode_in_linear_time() {
    let (a, b) = within_deadline("decoding", || {
        (
            decode(&dag_tuple(64)).unwrap(),
            decode(&dag_tuple(64)).unwrap(),
        )
    });
    let ok = within_deadline("hash, compare and encode", move || {
        let ha = hash::py_hash(&a).unwrap();
        let hb = hash::py_hash(&b).unwrap();
        let eq = hash::py_eq(&a, &b).unwrap();
        let bytes = encode(&a).unwrap();
        (ha == hb, eq, bytes.len())
    });
    assert!(ok.0, "equal DAGs hash alike");
    assert!(ok.1, "equal DAGs compare equal");
    assert!(
        ok.2 < 1000,
        "the encoder memoizes shared tuples ({} bytes)",
        ok.2
    );
}

#[test]
fn repr_of_a_huge_tree_expansion_is_a_memory_error_not_a_hang() {
    let v = decode(&dag_tuple(64)).unwrap();
    let err = within_deadline("repr", move || repr::try_repr(&v).unwrap_err());
    assert_eq!(err.ty, ExcType::MemoryError, "{err}");
    let small = decode(&dag_tuple(3)).unwrap();
    assert_eq!(
        repr::repr(&small),
        "((((), ()), ((), ())), (((), ()), ((), ())))"
    );
}

#[test]
fn repr_of_shared_large_strings_is_bounded_in_bytes_too() {
    // A 1 MB str shared by both halves of a 20-level tuple DAG: only 2**21
    // parts (under MAX_REPR_PARTS) but 2 TB of text if expanded.
    let big = Value::from("x".repeat(1 << 20));
    let mut t = Value::tuple(vec![big.clone(), big]);
    for _ in 0..20 {
        t = Value::tuple(vec![t.clone(), t]);
    }
    let err = within_deadline("repr", move || repr::try_repr(&t).unwrap_err());
    assert_eq!(err.ty, ExcType::MemoryError, "{err}");
    assert!(err.to_string().contains("bytes"), "{err}");
}
