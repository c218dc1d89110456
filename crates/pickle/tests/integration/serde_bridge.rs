//! Tests of the serde bridge: `to_value`, `from_value` and the serde impls
//! of `Value`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use mpmanager_pickle::hash::py_eq;
use mpmanager_pickle::serde_bridge::MAX_DEPTH;
use mpmanager_pickle::{
    from_value, shared, to_value, Construct, Global, Object, PyStr, SerdeError, Slice, Value,
};
use num_bigint::BigInt;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------------------
// Helpers

/// Python equality plus the same Python type at every level (py_eq alone
/// says `1 == 1.0 == True` and `(1,) != [1]` only at the top).
fn same(a: &Value, b: &Value) -> bool {
    fn kinds(a: &Value, b: &Value) -> bool {
        if a.type_name() != b.type_name() {
            return false;
        }
        match (a, b) {
            (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
            (Value::Tuple(x), Value::Tuple(y)) => {
                x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| kinds(p, q))
            }
            (Value::List(x), Value::List(y)) => {
                let (x, y) = (x.read_recursive(), y.read_recursive());
                x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| kinds(p, q))
            }
            (Value::Dict(x), Value::Dict(y)) => {
                let (x, y) = (x.read_recursive(), y.read_recursive());
                x.len() == y.len()
                    && x.iter()
                        .zip(y.iter())
                        .all(|((k1, v1), (k2, v2))| kinds(k1.value(), k2.value()) && kinds(v1, v2))
            }
            _ => true,
        }
    }
    // NaN != NaN in Python; `kinds` compares floats bitwise instead.
    kinds(a, b) && (has_nan(a) || py_eq(a, b).unwrap())
}

fn has_nan(v: &Value) -> bool {
    match v {
        Value::Float(f) => f.is_nan(),
        Value::Tuple(t) => t.iter().any(has_nan),
        Value::List(l) => l.read_recursive().iter().any(has_nan),
        Value::Dict(d) => d.read_recursive().values().any(has_nan),
        _ => false,
    }
}

fn s(x: &str) -> Value {
    Value::str(x)
}
fn i(x: i64) -> Value {
    Value::Int(x)
}
fn dict(pairs: Vec<(Value, Value)>) -> Value {
    Value::dict(pairs).unwrap()
}
fn big(x: &str) -> Value {
    Value::from_bigint(x.parse::<BigInt>().unwrap())
}

#[track_caller]
fn assert_to(x: &(impl Serialize + ?Sized), expected: Value) {
    let v = to_value(x).unwrap();
    assert!(
        same(&v, &expected),
        "to_value gave a {} not matching the expected {}",
        v.type_name(),
        expected.type_name()
    );
}

#[track_caller]
fn err<T: DeserializeOwned + fmt::Debug>(v: &Value) -> String {
    match from_value::<T>(v) {
        Ok(x) => panic!("expected an error, got {x:?}"),
        Err(e) => e.to_string(),
    }
}

/// A byte buffer that serializes with `serialize_bytes`, as `serde_bytes` does.
#[derive(Debug, Clone, PartialEq)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Bytes, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element()? {
                    out.push(b);
                }
                Ok(Bytes(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// An f64 compared bitwise (so NaN payloads and -0.0 must survive).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
struct F64(f64);
impl PartialEq for F64 {
    fn eq(&self, o: &F64) -> bool {
        self.0.to_bits() == o.0.to_bits()
    }
}

/// An f32 compared bitwise, except that any NaN equals any NaN (widening
/// an f32 to f64 may quiet a signaling NaN).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
struct F32(f32);
impl PartialEq for F32 {
    fn eq(&self, o: &F32) -> bool {
        (self.0.is_nan() && o.0.is_nan()) || self.0.to_bits() == o.0.to_bits()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meters(F64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pair(i32, String);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum E {
    Unit,
    Newtype(i128),
    Tuple(u8, String, Option<bool>),
    Struct {
        a: Option<i64>,
        b: Vec<bool>,
        c: Bytes,
    },
    Nested(Box<E>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Inner {
    name: String,
    tags: Vec<String>,
    score: F64,
    choice: E,
    extra: Option<Box<Inner>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Data {
    b: bool,
    i8_: i8,
    i16_: i16,
    i32_: i32,
    i64_: i64,
    i128_: i128,
    u8_: u8,
    u16_: u16,
    u32_: u32,
    u64_: u64,
    u128_: u128,
    f32_: F32,
    f64_: F64,
    ch: char,
    text: String,
    bytes: Bytes,
    raw_u8s: Vec<u8>,
    opt: Option<u64>,
    unit: (),
    unit_struct: Unit,
    newtype: Meters,
    pair: Pair,
    tup: (u8, Option<F64>, String),
    list: Vec<Inner>,
    map: HashMap<String, Vec<E>>,
    int_map: BTreeMap<i64, Option<String>>,
    tuple_keys: HashMap<(i32, String), u8>,
    set: BTreeSet<u64>,
    enums: Vec<E>,
}

// ---------------------------------------------------------------------------
// proptest round trips

fn f64_any() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        prop::num::f64::ANY,
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(f64::MIN_POSITIVE / 2.0),
    ]
}

fn f32_any() -> impl Strategy<Value = f32> {
    prop_oneof![
        any::<u32>().prop_map(f32::from_bits),
        prop::num::f32::ANY,
        Just(f32::NAN)
    ]
}

fn i128_any() -> impl Strategy<Value = i128> {
    prop_oneof![
        any::<i128>(),
        Just(i128::MIN),
        Just(i128::MAX),
        Just(0),
        Just(i64::MIN as i128),
        Just(i64::MIN as i128 - 1),
        Just(i64::MAX as i128),
        Just(i64::MAX as i128 + 1),
        any::<i64>().prop_map(i128::from),
    ]
}

fn u64_any() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(u64::MAX),
        Just(i64::MAX as u64),
        Just(i64::MAX as u64 + 1),
        Just(0)
    ]
}

fn u128_any() -> impl Strategy<Value = u128> {
    prop_oneof![
        any::<u128>(),
        Just(u128::MAX),
        Just(0),
        u64_any().prop_map(u128::from)
    ]
}

fn bytes_any() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..16).prop_map(Bytes)
}

fn e_any() -> impl Strategy<Value = E> {
    let leaf = prop_oneof![
        Just(E::Unit),
        i128_any().prop_map(E::Newtype),
        (any::<u8>(), any::<String>(), any::<Option<bool>>())
            .prop_map(|(a, b, c)| E::Tuple(a, b, c)),
        (
            any::<Option<i64>>(),
            prop::collection::vec(any::<bool>(), 0..4),
            bytes_any()
        )
            .prop_map(|(a, b, c)| E::Struct { a, b, c }),
    ];
    leaf.prop_recursive(3, 8, 1, |inner| inner.prop_map(|e| E::Nested(Box::new(e))))
}

fn inner_any() -> impl Strategy<Value = Inner> {
    let base = (
        any::<String>(),
        prop::collection::vec(any::<String>(), 0..3),
        f64_any(),
        e_any(),
    )
        .prop_map(|(name, tags, score, choice)| Inner {
            name,
            tags,
            score: F64(score),
            choice,
            extra: None,
        });
    base.prop_recursive(3, 6, 1, |inner| {
        (inner, e_any()).prop_map(|(mut i, e)| {
            let child = i.clone();
            i.choice = e;
            i.extra = Some(Box::new(child));
            i
        })
    })
}

prop_compose! {
    fn data_any()(
        ints in (any::<bool>(), any::<i8>(), any::<i16>(), any::<i32>(), any::<i64>(), i128_any()),
        uints in (any::<u8>(), any::<u16>(), any::<u32>(), u64_any(), u128_any()),
        floats in (f32_any(), f64_any()),
        ch in any::<char>(),
        text in any::<String>(),
        bytes in bytes_any(),
        raw_u8s in prop::collection::vec(any::<u8>(), 0..8),
        opt in prop::option::of(u64_any()),
        meters in f64_any(),
        pair in (any::<i32>(), any::<String>()),
        tup in (any::<u8>(), prop::option::of(f64_any()), any::<String>()),
        list in prop::collection::vec(inner_any(), 0..3),
        map in prop::collection::hash_map(any::<String>(), prop::collection::vec(e_any(), 0..3), 0..3),
        int_map in prop::collection::btree_map(any::<i64>(), any::<Option<String>>(), 0..4),
        tuple_keys in prop::collection::hash_map((any::<i32>(), "[a-c]{0,2}"), any::<u8>(), 0..4),
        set in prop::collection::btree_set(u64_any(), 0..4),
        enums in prop::collection::vec(e_any(), 0..4),
    ) -> Data {
        let (b, i8_, i16_, i32_, i64_, i128_) = ints;
        let (u8_, u16_, u32_, u64_, u128_) = uints;
        Data {
            b, i8_, i16_, i32_, i64_, i128_, u8_, u16_, u32_, u64_, u128_,
            f32_: F32(floats.0),
            f64_: F64(floats.1),
            ch, text, bytes, raw_u8s, opt,
            unit: (),
            unit_struct: Unit,
            newtype: Meters(F64(meters)),
            pair: Pair(pair.0, pair.1),
            tup: (tup.0, tup.1.map(F64), tup.2),
            list, map, int_map, tuple_keys, set, enums,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn nested_rust_data_round_trips(x in data_any()) {
        let v = to_value(&x).unwrap();
        let back: Data = from_value(&v).unwrap();
        prop_assert_eq!(&back, &x);
        // A Value round-trips through the bridge as itself.
        let again: Value = from_value(&v).unwrap();
        prop_assert!(same(&again, &v));
        prop_assert!(same(&to_value(&again).unwrap(), &v));
    }

    #[test]
    fn ints_map_to_int_or_bigint(x in i128_any(), y in u128_any(), z in u64_any()) {
        let v = to_value(&x).unwrap();
        prop_assert_eq!(v.to_bigint().unwrap(), BigInt::from(x));
        prop_assert_eq!(matches!(v, Value::Int(_)), i64::try_from(x).is_ok());
        prop_assert_eq!(from_value::<i128>(&v).unwrap(), x);
        let v = to_value(&y).unwrap();
        prop_assert_eq!(v.to_bigint().unwrap(), BigInt::from(y));
        prop_assert_eq!(matches!(v, Value::Int(_)), i64::try_from(y).is_ok());
        prop_assert_eq!(from_value::<u128>(&v).unwrap(), y);
        let v = to_value(&z).unwrap();
        prop_assert_eq!(matches!(v, Value::Int(_)), i64::try_from(z).is_ok());
        prop_assert_eq!(from_value::<u64>(&v).unwrap(), z);
        // Range checks agree with Rust's own conversions.
        prop_assert_eq!(from_value::<i64>(&to_value(&x).unwrap()).ok(), i64::try_from(x).ok());
        prop_assert_eq!(from_value::<u32>(&to_value(&x).unwrap()).ok(), u32::try_from(x).ok());
        prop_assert_eq!(from_value::<i8>(&to_value(&y).unwrap()).ok(), i8::try_from(y).ok());
    }

    #[test]
    fn json_values_round_trip_through_the_model(j in json_any()) {
        // serde_json::Value goes through deserialize_any and Serialize.
        let v = to_value(&j).unwrap();
        let back: serde_json::Value = from_value(&v).unwrap();
        prop_assert_eq!(&back, &j);
        // And Value itself writes JSON and reads it back.
        // (serde_json's float parsing is not exact without its
        // `float_roundtrip` feature, so compare with its own reading.)
        let text = serde_json::to_string(&v).unwrap();
        let reread: serde_json::Value = serde_json::from_str(&text).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        prop_assert!(same(&parsed, &to_value(&reread).unwrap()));
        prop_assert_eq!(serde_json::to_string(&parsed).unwrap(), reread.to_string());
    }
}

fn json_any() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value as J;
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(J::from),
        any::<u64>().prop_map(J::from),
        prop::num::f64::NORMAL.prop_map(J::from),
        any::<String>().prop_map(J::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
            prop::collection::vec((any::<String>(), inner), 0..4)
                .prop_map(|kv| J::Object(kv.into_iter().collect())),
        ]
    })
}

// ---------------------------------------------------------------------------
// to_value: one test per mapping row

#[test]
fn scalars_map_to_python_scalars() {
    assert_to(&true, Value::Bool(true));
    assert_to(&-5i8, i(-5));
    assert_to(&i16::MIN, i(i16::MIN as i64));
    assert_to(&i32::MAX, i(i32::MAX as i64));
    assert_to(&i64::MIN, i(i64::MIN));
    assert_to(&255u8, i(255));
    assert_to(&u16::MAX, i(65535));
    assert_to(&u32::MAX, i(u32::MAX as i64));
    assert_to(&(i64::MAX as u64), i(i64::MAX));
    assert_to(&u64::MAX, big("18446744073709551615"));
    assert!(matches!(to_value(&u64::MAX).unwrap(), Value::BigInt(_)));
    assert_to(&-1i128, i(-1));
    assert!(matches!(to_value(&-1i128).unwrap(), Value::Int(-1)));
    assert_to(&i128::MIN, big("-170141183460469231731687303715884105728"));
    assert_to(&u128::MAX, big("340282366920938463463374607431768211455"));
    assert_to(&1.5f32, Value::Float(1.5));
    assert_to(&-0.0f64, Value::Float(-0.0));
    assert_to(&f64::NAN, Value::Float(f64::NAN));
    assert_to(&'é', s("é"));
    assert_to("text", s("text"));
    assert_to(&String::from("ü"), s("ü"));
    assert_to(&Bytes(vec![0, 255]), Value::bytes(&[0, 255]));
}

#[test]
fn none_unit_and_some_map_as_in_json() {
    assert_to(&None::<i32>, Value::None);
    assert_to(&Some(3), i(3));
    assert_to(&(), Value::None);
    assert_to(&Unit, Value::None);
    assert_to(&Meters(F64(2.0)), Value::Float(2.0));
    // Documented loss: Some(None) is None.
    let v = to_value(&Some(None::<i32>)).unwrap();
    assert!(matches!(v, Value::None));
    assert_eq!(from_value::<Option<Option<i32>>>(&v).unwrap(), None);
}

#[test]
fn sequences_tuples_and_maps() {
    assert_to(&vec![1, 2], Value::list(vec![i(1), i(2)]));
    assert_to(&BTreeSet::from([3u8]), Value::list(vec![i(3)]));
    assert_to(&(1, "a"), Value::tuple(vec![i(1), s("a")]));
    assert_to(&Pair(1, "a".into()), Value::tuple(vec![i(1), s("a")]));
    assert_to(
        &BTreeMap::from([(2, 'x'), (1, 'y')]),
        dict(vec![(i(1), s("y")), (i(2), s("x"))]),
    );
    assert_to(
        &HashMap::from([((1, 2), true)]),
        dict(vec![(Value::tuple(vec![i(1), i(2)]), Value::Bool(true))]),
    );
    // Vec<u8> without serde_bytes is a list of ints.
    assert_to(&vec![1u8, 2], Value::list(vec![i(1), i(2)]));
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Ordered {
    zeta: i32,
    alpha: Option<String>,
    mid: Vec<bool>,
}

#[test]
fn structs_are_dicts_in_field_order() {
    let v = to_value(&Ordered {
        zeta: 1,
        alpha: None,
        mid: vec![true],
    })
    .unwrap();
    let Value::Dict(d) = &v else {
        panic!("not a dict: {}", v.type_name())
    };
    let keys: Vec<String> = d
        .read()
        .keys()
        .map(|k| k.value().as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["zeta", "alpha", "mid"]);
    assert!(same(
        &v,
        &dict(vec![
            (s("zeta"), i(1)),
            (s("alpha"), Value::None),
            (s("mid"), Value::list(vec![Value::Bool(true)]))
        ])
    ));
}

#[test]
fn enums_are_externally_tagged() {
    assert_to(&E::Unit, s("Unit"));
    assert_to(&E::Newtype(5), dict(vec![(s("Newtype"), i(5))]));
    assert_to(
        &E::Tuple(1, "x".into(), None),
        dict(vec![(
            s("Tuple"),
            Value::tuple(vec![i(1), s("x"), Value::None]),
        )]),
    );
    assert_to(
        &E::Struct {
            a: Some(2),
            b: vec![],
            c: Bytes(vec![7]),
        },
        dict(vec![(
            s("Struct"),
            dict(vec![
                (s("a"), i(2)),
                (s("b"), Value::list(vec![])),
                (s("c"), Value::bytes(&[7])),
            ]),
        )]),
    );
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "type")]
enum Tagged {
    A { x: i32 },
    B { y: String },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(untagged)]
enum Untagged {
    Num(i64),
    Text(String),
    List(Vec<Untagged>),
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Flat {
    id: u32,
    #[serde(flatten)]
    rest: HashMap<String, i64>,
}

#[test]
fn serde_attributes_work() {
    let t = Tagged::B { y: "q".into() };
    let v = to_value(&t).unwrap();
    assert!(same(&v, &dict(vec![(s("type"), s("B")), (s("y"), s("q"))])));
    assert_eq!(from_value::<Tagged>(&v).unwrap(), t);

    let u = Untagged::List(vec![Untagged::Num(1), Untagged::Text("a".into())]);
    assert_eq!(from_value::<Untagged>(&to_value(&u).unwrap()).unwrap(), u);
    // Tuples are sequences for untagged enums too.
    let tv = Value::tuple(vec![i(2)]);
    assert_eq!(
        from_value::<Untagged>(&tv).unwrap(),
        Untagged::List(vec![Untagged::Num(2)])
    );

    let f = Flat {
        id: 1,
        rest: HashMap::from([("k".into(), 2)]),
    };
    let v = to_value(&f).unwrap();
    assert!(same(&v, &dict(vec![(s("id"), i(1)), (s("k"), i(2))])));
    assert_eq!(from_value::<Flat>(&v).unwrap(), f);
}

// ---------------------------------------------------------------------------
// from_value: what is accepted

#[test]
fn from_value_accepts_python_flavours() {
    // bool is an int subclass: accepted for ints and floats.
    assert_eq!(from_value::<u8>(&Value::Bool(true)).unwrap(), 1);
    assert_eq!(from_value::<f64>(&Value::Bool(true)).unwrap(), 1.0);
    // int for float.
    assert_eq!(from_value::<f64>(&i(3)).unwrap(), 3.0);
    assert_eq!(
        from_value::<f32>(&big("1000000000000000000000000000000")).unwrap(),
        1e30
    );
    // BigInt into i128 / u128.
    assert_eq!(
        from_value::<u128>(&big("340282366920938463463374607431768211455")).unwrap(),
        u128::MAX
    );
    // Any Python sequence for a Vec, tuple or set.
    let fs = Value::frozenset(vec![i(1)]).unwrap();
    assert_eq!(from_value::<Vec<i32>>(&fs).unwrap(), [1]);
    assert_eq!(
        from_value::<(i32,)>(&Value::list(vec![i(4)])).unwrap(),
        (4,)
    );
    assert_eq!(
        from_value::<BTreeSet<i32>>(&Value::set(vec![i(2), i(1)]).unwrap()).unwrap(),
        BTreeSet::from([1, 2])
    );
    // bytes and bytearray for byte buffers and Vec<u8>; a list of ints for a byte buffer.
    assert_eq!(
        from_value::<Bytes>(&Value::bytes(b"ab")).unwrap(),
        Bytes(b"ab".to_vec())
    );
    assert_eq!(
        from_value::<Bytes>(&Value::bytearray(b"cd".to_vec())).unwrap(),
        Bytes(b"cd".to_vec())
    );
    assert_eq!(
        from_value::<Bytes>(&Value::list(vec![i(1)])).unwrap(),
        Bytes(vec![1])
    );
    assert_eq!(from_value::<Vec<u8>>(&Value::bytes(b"ef")).unwrap(), b"ef");
    assert_eq!(
        from_value::<Vec<u8>>(&Value::bytearray(vec![9])).unwrap(),
        [9]
    );
    // A struct from a dict or a tuple.
    let p = Ordered {
        zeta: 1,
        alpha: Some("a".into()),
        mid: vec![],
    };
    let t = Value::tuple(vec![i(1), s("a"), Value::list(vec![])]);
    assert_eq!(from_value::<Ordered>(&t).unwrap(), p);
    // char from a one-character str.
    assert_eq!(from_value::<char>(&s("\u{1F600}")).unwrap(), '\u{1F600}');
    // Enums: str for unit variants, {name: payload} for others; {name: None} for unit too.
    assert_eq!(from_value::<E>(&s("Unit")).unwrap(), E::Unit);
    assert_eq!(
        from_value::<E>(&dict(vec![(s("Unit"), Value::None)])).unwrap(),
        E::Unit
    );
    assert_eq!(
        from_value::<E>(&dict(vec![(
            s("Tuple"),
            Value::list(vec![i(1), s("z"), Value::Bool(false)])
        )]))
        .unwrap(),
        E::Tuple(1, "z".into(), Some(false))
    );
    // Unknown dict keys are ignored by structs, as usual in serde.
    let d = dict(vec![
        (s("zeta"), i(0)),
        (s("alpha"), Value::None),
        (s("mid"), Value::list(vec![])),
        (s("zz"), i(1)),
    ]);
    assert_eq!(from_value::<Ordered>(&d).unwrap().zeta, 0);
    // Option: None and anything else.
    assert_eq!(from_value::<Option<i32>>(&Value::None).unwrap(), None);
    assert_eq!(from_value::<Option<i32>>(&i(2)).unwrap(), Some(2));
    assert!(from_value::<()>(&Value::None).is_ok());
}

#[test]
fn deserialize_any_describes_what_serde_lacks() {
    use serde_json::json;
    let obj = Object {
        callable: Value::global("datetime", "date"),
        args: Value::tuple(vec![i(2024)]),
        kwargs: None,
        construct: Construct::Reduce,
        state: Some(dict(vec![(s("k"), i(1))])),
        list_items: vec![],
        dict_items: vec![(s("a"), i(2))],
    };
    let v = Value::list(vec![
        Value::Complex(1.0, -2.0),
        Value::Slice(std::sync::Arc::new(Slice {
            start: Value::None,
            stop: i(5),
            step: Value::None,
        })),
        Value::Global(std::sync::Arc::new(Global::new("builtins", "int"))),
        Value::object(obj),
        Value::tuple(vec![Value::set(vec![i(1)]).unwrap()]),
        big("10000000000000000000"),
        Value::frozenset(vec![s("f")]).unwrap(),
        Value::Bool(false),
        Value::Float(0.5),
    ]);
    let j: serde_json::Value = from_value(&v).unwrap();
    let expected = json!([
        {"$complex": [1.0, -2.0]},
        {"$slice": [null, 5, null]},
        {"$global": ["builtins", "int"]},
        {"$object": ["datetime", "date"], "construct": "reduce", "args": [2024],
         "state": {"k": 1}, "dict_items": [["a", 2]]},
        [[1]],
        10000000000000000000u64,
        ["f"],
        false,
        0.5,
    ]);
    assert_eq!(j, expected);
    // The Serialize impl writes the same description.
    assert_eq!(serde_json::to_value(&v).unwrap(), expected);
    // deserialize_any gives bytes as bytes, which serde_json::Value refuses
    // (its serializer, though, writes them as a list of ints).
    let ba = Value::bytearray(vec![104, 105]);
    assert!(err::<serde_json::Value>(&ba).contains("invalid type: byte array"));
    assert_eq!(serde_json::to_string(&ba).unwrap(), "[104,105]");
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(untagged)]
    enum AnyBytes {
        B(Bytes),
    }
    assert_eq!(
        from_value::<AnyBytes>(&ba).unwrap(),
        AnyBytes::B(Bytes(b"hi".to_vec()))
    );
}

#[test]
fn value_fields_are_carried_over_unchanged() {
    #[derive(Serialize, Deserialize)]
    struct Msg {
        id: u32,
        payload: Value,
        more: Option<Value>,
        many: Vec<Value>,
    }
    let inner = Value::list(vec![Value::Complex(0.0, 1.0)]);
    let odd = PyStr::from_code_points([0x61, 0xD800]).unwrap();
    let m = Msg {
        id: 1,
        payload: inner.clone(),
        more: Some(Value::Str(odd.clone())),
        many: vec![big("-99999999999999999999999999999999999999999999")],
    };
    let v = to_value(&m).unwrap();
    let back: Msg = from_value(&v).unwrap();
    // The very same list object, by reference, as Python assignment.
    assert!(back.payload.is(&inner));
    let Some(Value::Str(s2)) = &back.more else {
        panic!("lost the str")
    };
    assert!(*s2 == odd);
    assert!(same(
        &back.many[0],
        &big("-99999999999999999999999999999999999999999999")
    ));
    // Value -> Value is the identity.
    let w: Value = from_value(&inner).unwrap();
    assert!(w.is(&inner));
    assert!(to_value(&inner).unwrap().is(&inner));
}

#[test]
fn value_reads_json_like_data() {
    let v: Value = serde_json::from_str(
        r#"{"a": [1, 2.5, null, true, "x"], "b": {"c": 18446744073709551615}}"#,
    )
    .unwrap();
    let expected = dict(vec![
        (
            s("a"),
            Value::list(vec![
                i(1),
                Value::Float(2.5),
                Value::None,
                Value::Bool(true),
                s("x"),
            ]),
        ),
        (s("b"), dict(vec![(s("c"), big("18446744073709551615"))])),
    ]);
    assert!(same(&v, &expected));
    // Value written as JSON: tuples and sets become arrays.
    let t = Value::tuple(vec![
        i(1),
        Value::frozenset(vec![s("q")]).unwrap(),
        Value::bytes(b"\x01"),
    ]);
    assert_eq!(serde_json::to_string(&t).unwrap(), r#"[1,["q"],[1]]"#);
}

// ---------------------------------------------------------------------------
// Errors, with their messages

#[test]
fn wrong_type_errors_name_python_types() {
    assert_eq!(err::<i32>(&s("7")), "expected an int, found 'str'");
    assert_eq!(
        err::<i32>(&Value::Float(1.0)),
        "expected an int, found 'float'"
    );
    assert_eq!(err::<bool>(&i(1)), "expected a bool, found 'int'");
    assert_eq!(err::<f64>(&s("1")), "expected a float, found 'str'");
    assert_eq!(
        err::<String>(&Value::bytes(b"a")),
        "expected a str, found 'bytes'"
    );
    assert_eq!(
        err::<Bytes>(&s("a")),
        "expected bytes or bytearray, found 'str'"
    );
    assert_eq!(
        err::<Vec<i32>>(&dict(vec![])),
        "expected a list, tuple, set or frozenset, found 'dict'"
    );
    assert_eq!(
        err::<HashMap<String, i32>>(&Value::list(vec![])),
        "expected a dict, found 'list'"
    );
    assert_eq!(err::<Ordered>(&i(1)), "expected a dict, found 'int'");
    assert_eq!(err::<()>(&i(0)), "expected None, found 'int'");
    assert_eq!(
        err::<char>(&s("ab")),
        "expected a str of length 1, found a str of length 2"
    );
    assert_eq!(
        err::<Vec<String>>(&Value::list(vec![Value::None])),
        "expected a str, found 'NoneType'"
    );
    assert_eq!(
        err::<E>(&i(1)),
        "expected a str or a single-key dict (enum E), found 'int'"
    );
    assert_eq!(
        err::<E>(&dict(vec![(s("Unit"), i(1)), (s("Newtype"), i(2))])),
        "expected a str or a single-key dict (enum E), found a dict with 2 keys"
    );
    assert_eq!(
        err::<E>(&s("Newtype")),
        "expected a single-key dict {'Newtype': payload} for a newtype variant, found 'str'"
    );
    assert_eq!(
        err::<E>(&dict(vec![(s("Unit"), i(3))])),
        "expected None as the payload of a unit variant, found 'int'"
    );
    assert!(err::<E>(&s("Nope")).contains("unknown variant `Nope`"));
    // (a missing Option field is None, as usual in serde)
    assert_eq!(
        err::<Ordered>(&dict(vec![(s("zeta"), i(1))])),
        "missing field `mid`"
    );
    let e = from_value::<i32>(&Value::Complex(1.0, 0.0)).unwrap_err();
    assert!(
        matches!(&e, SerdeError::Type { found, .. } if found == "complex"),
        "{e:?}"
    );
    let obj = Value::object(Object::new_obj(Global::new("m", "Klass"), vec![], None));
    assert_eq!(err::<String>(&obj), "expected a str, found 'Klass'");
}

#[test]
fn out_of_range_ints_are_refused() {
    assert_eq!(err::<u8>(&i(256)), "int 256 out of range for u8");
    assert_eq!(err::<u8>(&i(-1)), "int -1 out of range for u8");
    assert_eq!(err::<i8>(&i(-129)), "int -129 out of range for i8");
    assert_eq!(err::<u64>(&i(-1)), "int -1 out of range for u64");
    assert_eq!(
        err::<i64>(&big("9223372036854775808")),
        "int 9223372036854775808 out of range for i64"
    );
    assert_eq!(
        err::<u128>(&big("340282366920938463463374607431768211456")),
        "int 340282366920938463463374607431768211456 out of range for u128"
    );
    assert_eq!(
        err::<i128>(&big("-170141183460469231731687303715884105729")),
        "int -170141183460469231731687303715884105729 out of range for i128"
    );
    // Huge ints are abbreviated.
    let huge = Value::from_bigint(BigInt::from(10).pow(400));
    assert_eq!(
        err::<i64>(&huge),
        "int 10000000000000000000...(401 digits) out of range for i64"
    );
    assert_eq!(
        err::<f64>(&huge),
        "int 10000000000000000000...(401 digits) out of range for float"
    );
    // deserialize_any cannot go beyond 128 bits.
    assert_eq!(
        err::<serde_json::Value>(&huge),
        "int 10000000000000000000...(401 digits) out of range for serde (i128/u128)"
    );
    assert!(serde_json::to_string(&huge)
        .unwrap_err()
        .to_string()
        .contains("out of range for serde"));
    let e = from_value::<u16>(&i(70000)).unwrap_err();
    assert!(matches!(e, SerdeError::OutOfRange { target: "u16", .. }));
}

#[test]
fn unhashable_map_keys_are_refused() {
    let m = BTreeMap::from([(vec![1], 2)]);
    let e = to_value(&m).unwrap_err();
    assert!(matches!(e, SerdeError::Unhashable(_)));
    assert_eq!(
        e.to_string(),
        "unhashable dict key: TypeError: unhashable type: 'list'"
    );
    // Also inside a tuple key.
    let m = HashMap::from([((1, vec![2]), 3)]);
    assert_eq!(
        to_value(&m).unwrap_err().to_string(),
        "unhashable dict key: TypeError: unhashable type: 'list'"
    );
    // A map key that is a struct (a dict) is unhashable too.
    #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
    struct K {
        a: u8,
    }
    let e = to_value(&BTreeMap::from([(K { a: 1 }, 1)])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unhashable dict key: TypeError: unhashable type: 'dict'"
    );
}

#[test]
fn lone_surrogates_cannot_become_strings() {
    let v = Value::Str(PyStr::from_code_points([0x61, 0xDC80]).unwrap());
    assert_eq!(
        err::<String>(&v),
        "str contains lone surrogates and cannot be a Rust string: 'a\\udc80'"
    );
    assert!(matches!(
        from_value::<String>(&v).unwrap_err(),
        SerdeError::Surrogates(_)
    ));
    assert!(matches!(
        from_value::<serde_json::Value>(&v).unwrap_err(),
        SerdeError::Surrogates(_)
    ));
    assert!(matches!(
        from_value::<Bytes>(&v).unwrap_err(),
        SerdeError::Type { .. }
    ));
    let j = serde_json::to_string(&v).unwrap_err().to_string();
    assert!(j.contains("lone surrogates"), "{j}");
    // As a map key for a struct field too.
    let d = dict(vec![(v.clone(), i(1))]);
    assert!(matches!(
        from_value::<HashMap<String, i32>>(&d).unwrap_err(),
        SerdeError::Surrogates(_)
    ));
}

#[test]
fn tuple_length_must_match() {
    let v = Value::tuple(vec![i(1), i(2), i(3)]);
    assert_eq!(
        err::<(i32, i32)>(&v),
        "expected 2 elements, found a tuple of 3"
    );
    assert!(err::<(i32, i32, i32, i32)>(&v).contains("invalid length 3"));
    assert_eq!(
        err::<Pair>(&Value::list(vec![i(1), s("a"), i(3)])),
        "expected 2 elements, found a list of 3"
    );
}

// ---------------------------------------------------------------------------
// Cycles, sharing and depth

#[test]
fn self_containing_values_fail_instead_of_looping() {
    let l = Value::list(vec![i(1)]);
    if let Value::List(inner) = &l {
        inner.write().push(l.clone());
    }
    let e = from_value::<serde_json::Value>(&l).unwrap_err();
    assert_eq!(
        e.to_string(),
        "recursive structure: a 'list' contains itself"
    );
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    enum Tree {
        Leaf(i64),
        Node(Vec<Tree>),
    }
    #[derive(Deserialize, Debug)]
    #[serde(untagged)]
    #[allow(dead_code)]
    enum UTree {
        Leaf(i64),
        Node(Vec<UTree>),
    }
    assert!(matches!(
        from_value::<UTree>(&l).unwrap_err(),
        SerdeError::Custom(_) | SerdeError::Recursive(_)
    ));
    assert!(serde_json::to_string(&l)
        .unwrap_err()
        .to_string()
        .contains("recursive structure"));

    // A dict holding itself, and an object whose state holds itself.
    let d = dict(vec![]);
    if let Value::Dict(inner) = &d {
        inner
            .write()
            .insert(mpmanager_pickle::Key::str("me"), d.clone());
    }
    assert!(matches!(
        from_value::<serde_json::Value>(&d).unwrap_err(),
        SerdeError::Recursive(_)
    ));
    let o = Value::object(Object::new_obj(Global::new("m", "C"), vec![], None));
    if let Value::Object(inner) = &o {
        inner.write().state = Some(Value::list(vec![o.clone()]));
    }
    let e = from_value::<serde_json::Value>(&o).unwrap_err();
    assert_eq!(e.to_string(), "recursive structure: a 'C' contains itself");
    assert!(serde_json::to_string(&o)
        .unwrap_err()
        .to_string()
        .contains("recursive structure"));
    // Break the cycles so the values can be freed.
    if let Value::List(inner) = &l {
        inner.write().clear();
    }
    if let Value::Dict(inner) = &d {
        inner.write().clear();
    }
    if let Value::Object(inner) = &o {
        inner.write().state = None;
    }
}

#[test]
fn shared_containers_are_not_cycles() {
    let x = Value::list(vec![i(1)]);
    let v = Value::list(vec![x.clone(), Value::tuple(vec![x.clone()]), x]);
    let got: Vec<serde_json::Value> = from_value(&v).unwrap();
    assert_eq!(
        serde_json::Value::Array(got),
        serde_json::json!([[1], [[1]], [1]])
    );
    assert_eq!(serde_json::to_string(&v).unwrap(), "[[1],[[1]],[1]]");
}

fn nested_lists(depth: usize) -> Value {
    let mut v = Value::list(vec![]);
    for _ in 1..depth {
        v = Value::list(vec![v]);
    }
    v
}

#[derive(Deserialize, Serialize, Debug)]
struct Rec(Vec<Rec>);

/// Counts the nesting depth of lists through `deserialize_any`.
struct Count(usize);
impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("nested lists")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Count, A::Error> {
                let mut most = 0;
                while let Some(Count(n)) = a.next_element()? {
                    most = most.max(n);
                }
                Ok(Count(most + 1))
            }
        }
        d.deserialize_any(V)
    }
}

#[test]
fn deep_values_through_deserialize_any() {
    let ok = nested_lists(MAX_DEPTH);
    let j: serde_json::Value = from_value(&ok).unwrap();
    assert_eq!(serde_json::to_string(&j).unwrap().len(), 2 * MAX_DEPTH);
}

#[test]
fn depth_limit_and_stack_growth() {
    // Run on a small stack: only the bridge's stack growth makes this pass.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            // MAX_DEPTH levels are fine ...
            let ok = nested_lists(MAX_DEPTH);
            let r: Rec = from_value(&ok).unwrap();
            let mut n = 0;
            let mut cur = &r;
            while let Some(next) = cur.0.first() {
                n += 1;
                cur = next;
            }
            assert_eq!(n + 1, MAX_DEPTH);
            let back = to_value(&r).unwrap();
            assert!(py_eq(&back, &ok).unwrap());
            // deserialize_any too (IgnoredAny is not enough: it skips the walk).
            assert_eq!(from_value::<Count>(&ok).unwrap().0, MAX_DEPTH);
            // ... one more is refused, in each direction.
            let deep = nested_lists(MAX_DEPTH + 2);
            assert_eq!(
                from_value::<Rec>(&deep).unwrap_err().to_string(),
                format!("nesting deeper than {MAX_DEPTH} levels")
            );
            assert!(matches!(
                from_value::<serde_json::Value>(&deep).unwrap_err(),
                SerdeError::TooDeep(_)
            ));
            let too_deep_rec = (0..MAX_DEPTH + 2).fold(Rec(vec![]), |acc, _| Rec(vec![acc]));
            assert!(matches!(
                to_value(&too_deep_rec).unwrap_err(),
                SerdeError::TooDeep(_)
            ));
            assert!(serde_json::to_string(&deep)
                .unwrap_err()
                .to_string()
                .contains("nesting deeper"));
            // Avoid a deep recursive drop of the Rust tree on this small stack.
            std::mem::forget(too_deep_rec);
            std::mem::forget(r);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn self_recursive_types_stop_at_the_depth_limit() {
    // `A` never consumes any nesting of the value: without a limit this
    // would recurse forever.
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct A(Option<Box<A>>);
    let e = from_value::<A>(&i(1)).unwrap_err();
    assert!(matches!(e, SerdeError::TooDeep(MAX_DEPTH)), "{e:?}");
}

#[test]
fn big_ints_inside_values_and_json() {
    let v = big("-18446744073709551616");
    assert_eq!(serde_json::to_string(&v).unwrap(), "-18446744073709551616");
    assert_eq!(from_value::<i128>(&v).unwrap(), -(1i128 << 64));
    // Between i64::MAX and u64::MAX, visitors get a u64.
    let j: serde_json::Value = from_value(&big("18446744073709551615")).unwrap();
    assert_eq!(j, serde_json::json!(u64::MAX));
    let wide: Value = serde_json::from_str("18446744073709551615").unwrap();
    assert!(same(&wide, &big("18446744073709551615")));
    let _ = shared(0);
}
