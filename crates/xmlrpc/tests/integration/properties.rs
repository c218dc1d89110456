//! Property tests: encode → decode → encode is stable; arbitrary and
//! mutated inputs give a value or an error, never a panic.

use mpmanager_pickle::{shared, Dict, Key, Value};
use mpmanager_xmlrpc::{binary, decode, decode_with, encode, DecodeError, DecodeOptions};
use proptest::prelude::*;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|i| Value::Int(i64::from(i))),
        any::<f64>().prop_map(Value::Float),
        // Characters XML can carry (others are refused by the receiver,
        // as expat refuses them).
        "[\\t\\na-z<>&\\]\"' \u{e9}\u{4e2d}\u{1f600}]{0,12}".prop_map(|s| Value::str(&s)),
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(|b| Value::bytes(&b)),
        proptest::collection::vec(any::<u8>(), 0..10).prop_map(|b| binary(&b)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::list),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::tuple),
            proptest::collection::vec(("[a-z<&]{0,5}", inner), 0..5).prop_map(|kv| {
                let mut d = Dict::default();
                for (k, v) in kv {
                    d.insert(Key::str(&k), v);
                }
                Value::Dict(shared(d))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_decode_encode_is_stable(v in value()) {
        let xml = encode(&v).unwrap();
        let back = decode(&xml).unwrap();
        prop_assert_eq!(encode(&back).unwrap(), xml);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&data);
    }

    #[test]
    fn mutated_messages_never_panic(v in value(), pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
        let mut xml = encode(&v).unwrap();
        let i = pos.index(xml.len());
        if cut { xml.truncate(i) } else { xml[i] = byte }
        let _ = decode(&xml);
    }
}

#[test]
fn nesting_and_size_are_bounded() {
    let deep = format!(
        "<params><param><value>{}{}</value></param></params>",
        "<array><data><value>".repeat(2000),
        "</value></data></array>".repeat(2000)
    );
    assert!(matches!(
        decode(deep.as_bytes()),
        Err(DecodeError::TooDeep { .. })
    ));
    let mut opts = DecodeOptions::default();
    opts.max_input = 10;
    assert!(matches!(
        decode_with(b"<params></params>", &opts),
        Err(DecodeError::TooLarge { .. })
    ));
    // Deep values are refused by the encoder too.
    let mut v = Value::None;
    for _ in 0..2000 {
        v = Value::list(vec![v]);
    }
    assert_eq!(
        encode(&v).unwrap_err().exception_line(),
        "RecursionError: maximum recursion depth exceeded while encoding an XML-RPC value"
    );
}
