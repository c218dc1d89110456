//! Property test: random values survive encode → decode at every protocol
//! the encoder writes (2–5): the same structure — equal inspector `repr`
//! (which also tells `-0.0` from `0.0`, shows NaN and the state of opaque
//! objects) and equal bytes when encoded again —, equal by Python's `==`
//! unless they hold a NaN (never equal to another NaN, see
//! `mpmanager_pickle::hash`), and shared sub-values stay shared.

use mpmanager_pickle::repr::inspect;
use mpmanager_pickle::{decode, encode_with, hash::py_eq, EncodeOptions, Object, Value};
use num_bigint::BigInt;
use proptest::prelude::*;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (any::<i64>(), 0u32..200)
            .prop_map(|(i, shift)| Value::from_bigint(BigInt::from(i) << shift)),
        any::<f64>().prop_map(Value::Float),
        (any::<f64>(), any::<f64>()).prop_map(|(a, b)| Value::Complex(a, b)),
        any::<String>().prop_map(Value::from),
        // Text with lone surrogates.
        proptest::collection::vec(
            prop_oneof![0u32..0x80, 0xD800u32..0xE000, 0x10000u32..0x10FFFF],
            0..8
        )
        .prop_map(|cps| Value::Str(mpmanager_pickle::PyStr::from_code_points(cps).expect("valid"))),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::bytes(&b)),
        proptest::collection::vec(any::<u8>(), 0..10).prop_map(Value::bytearray),
    ]
}

fn hashable() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        any::<String>().prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| Value::bytes(&b)),
        (any::<i16>(), "[a-z]{0,3}")
            .prop_map(|(i, s)| Value::tuple(vec![Value::Int(i as i64), Value::from(s)])),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::tuple),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::list),
            proptest::collection::vec((hashable(), inner.clone()), 0..6)
                .prop_map(|kv| Value::dict(kv).expect("hashable keys")),
            proptest::collection::vec(hashable(), 0..6)
                .prop_map(|k| Value::set(k).expect("hashable")),
            proptest::collection::vec(hashable(), 0..6)
                .prop_map(|k| Value::frozenset(k).expect("hashable")),
            // A value shared twice inside a list.
            inner.clone().prop_map(|v| Value::list(vec![v.clone(), v])),
            // An opaque object with state.
            (inner.clone(), inner).prop_map(|(a, s)| {
                let mut o = Object::reduce(Value::global("mod", "Cls"), vec![a]);
                o.state = Some(s);
                Value::object(o)
            }),
        ]
    })
}

/// True if a float NaN (or a complex with a NaN part) is inside `v`.
fn contains_nan(v: &Value) -> bool {
    match v {
        Value::Float(f) => f.is_nan(),
        Value::Complex(a, b) => a.is_nan() || b.is_nan(),
        Value::Tuple(t) => t.iter().any(contains_nan),
        Value::List(l) => l.read().iter().any(contains_nan),
        Value::Dict(d) => d
            .read()
            .iter()
            .any(|(k, x)| contains_nan(k.value()) || contains_nan(x)),
        Value::Set(s) => s.read().iter().any(|k| contains_nan(k.value())),
        Value::FrozenSet(s) => s.iter().any(|k| contains_nan(k.value())),
        Value::Object(o) => {
            let o = o.read();
            contains_nan(&o.args) || o.state.as_ref().is_some_and(contains_nan)
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_values_round_trip_at_every_protocol(v in value()) {
        for proto in 2..=5u8 {
            let bytes = encode_with(&v, &EncodeOptions::protocol(proto)).expect("encode");
            let back = decode(&bytes).expect("decode");
            prop_assert_eq!(inspect(&v), inspect(&back), "protocol {}", proto);
            let again = encode_with(&back, &EncodeOptions::protocol(proto)).expect("encode again");
            prop_assert!(again == bytes, "protocol {}: re-encoded bytes differ", proto);
            if !contains_nan(&v) {
                prop_assert!(py_eq(&v, &back).expect("comparable"), "protocol {}: {:?} != {:?}", proto, v, back);
            }
            // Sharing is preserved: a list built as [v, v] decodes to two
            // identical items (for everything pickle memoizes: not ints,
            // which CPython never memoizes either).
            if let (Value::List(a), Value::List(b)) = (&v, &back) {
                let (a, b) = (a.read(), b.read());
                if a.len() == 2 && a[0].is(&a[1]) && a[0].identity().is_some() && !matches!(a[0], Value::BigInt(_)) {
                    prop_assert!(b[0].is(&b[1]), "protocol {}: sharing lost", proto);
                }
            }
        }
    }
}
