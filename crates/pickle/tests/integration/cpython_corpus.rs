//! The codec against real CPython, at test time, for every installed
//! interpreter 3.8+ and every protocol it has:
//!
//! 1. CPython pickles the corpus of `corpus.py` (protocols 0–5, and with
//!    `ForkingPickler` where flagged); we decode every pickle and our
//!    `repr` must equal CPython's `repr` of the original, byte for byte.
//! 2. We re-encode every decoded value at protocols 2–5; CPython loads our
//!    bytes with both the C and the pure-Python unpickler and checks the
//!    result equals the original (identity of shared and recursive
//!    references included).

use mpmanager_pickle::{decode, encode_with, repr, EncodeOptions};
use mpmanager_testutil::pythons;

const CORPUS: &str = include_str!("corpus.py");

struct Entry {
    name: String,
    protocol: u8,
    pickler: String,
    data: Vec<u8>,
    repr: Option<String>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_dump(out: &[u8]) -> Vec<Entry> {
    String::from_utf8(out.to_vec())
        .expect("utf-8 dump")
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 6, "bad dump line {line:?}");
            let repr_bytes = unhex(f[4]);
            Entry {
                name: f[0].to_string(),
                protocol: f[1].parse().expect("protocol"),
                pickler: f[2].to_string(),
                data: unhex(f[3]),
                repr: if f[5].contains("norepr") {
                    None
                } else {
                    // CPython's repr is always printable ASCII/UTF-8 text.
                    Some(String::from_utf8(repr_bytes).expect("repr is utf-8"))
                },
            }
        })
        .collect()
}

#[test]
fn cpython_corpus_decodes_reprs_and_reencodes() {
    let pys = pythons();
    if pys.is_empty() {
        eprintln!("no CPython 3.8+ found: skipping");
        return;
    }
    for py in &pys {
        let entries = parse_dump(&py.run_ok(CORPUS, &["dump"], b""));
        assert!(
            entries.len() > 300,
            "python {}: corpus too small ({})",
            py.label(),
            entries.len()
        );
        let mut failures = Vec::new();
        let mut recoded = String::new();
        let mut recoded_count = 0;
        for e in &entries {
            let what = format!(
                "python {} {:?} protocol {} ({})",
                py.label(),
                e.name,
                e.protocol,
                e.pickler
            );
            let v = match decode(&e.data) {
                Ok(v) => v,
                Err(err) => {
                    failures.push(format!("{what}: decode failed: {err}"));
                    continue;
                }
            };
            if let Some(expected) = &e.repr {
                let ours = repr(&v);
                if &ours != expected {
                    failures.push(format!("{what}: repr {ours:?} != CPython {expected:?}"));
                }
            }
            // Re-encode once per value (from CPython's newest protocol pickle).
            if e.protocol == 4 && e.pickler == "pickle" {
                for proto in 2..=5u8 {
                    match encode_with(&v, &EncodeOptions::protocol(proto)) {
                        Ok(bytes) => {
                            recoded.push_str(&format!("{}\t{}\t{}\n", e.name, proto, hex(&bytes)));
                            recoded_count += 1;
                        }
                        Err(err) => {
                            failures.push(format!("{what}: encode at {proto} failed: {err}"))
                        }
                    }
                }
            }
        }
        let report =
            String::from_utf8(py.run_ok(CORPUS, &["check"], recoded.as_bytes())).expect("utf-8");
        let expected = format!("ok {}", recoded_count * 2);
        if report.trim() != expected {
            failures.push(format!(
                "python {}: CPython loading our pickles:\n{}",
                py.label(),
                report
            ));
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        eprintln!(
            "python {}: {} pickles decoded, {} re-encoded and loaded",
            py.label(),
            entries.len(),
            recoded_count
        );
    }
}
