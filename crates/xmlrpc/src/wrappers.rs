//! `xmlrpc.client.Binary` and `xmlrpc.client.DateTime` in the value model.

use mpmanager_pickle::{shared, Dict, Global, Key, Object, Value};

const MODULE: &str = "xmlrpc.client";

fn wrapper(class: &str, attr: &str, v: Value) -> Value {
    let mut state = Dict::default();
    state.insert(Key::str(attr), v);
    Value::Object(shared(Object::new_obj(
        Global::new(MODULE, class),
        Vec::new(),
        Some(Value::Dict(shared(state))),
    )))
}

/// An `xmlrpc.client.Binary(data)` object, as a `<base64>` element decodes
/// to (and as `pickle` would describe it: `NEWOBJ` of the class, state
/// `{'data': data}`).
///
/// ```
/// use mpmanager_xmlrpc::{as_binary, binary};
/// assert_eq!(as_binary(&binary(b"hi")).unwrap(), b"hi");
/// ```
pub fn binary(data: &[u8]) -> Value {
    wrapper("Binary", "data", Value::bytes(data))
}

/// An `xmlrpc.client.DateTime` whose `value` is `value` (the ISO 8601 text,
/// e.g. `20200101T00:00:00`), as a `<dateTime.iso8601>` element decodes to.
///
/// ```
/// use mpmanager_xmlrpc::{as_datetime, datetime};
/// assert_eq!(as_datetime(&datetime("20200101T00:00:00")).unwrap(), "20200101T00:00:00");
/// ```
pub fn datetime(value: &str) -> Value {
    wrapper("DateTime", "value", Value::str(value))
}

/// The `value` attribute of a `DateTime` object, if `v` is one.
pub(crate) fn attr_of(v: &Value, class: &str, attr: &str) -> Option<Value> {
    let Value::Object(o) = v else { return None };
    let o = o.read_recursive();
    let (g, args) = o.new_of()?;
    if !g.is(MODULE, class) || !args.is_empty() {
        return None;
    }
    let Some(Value::Dict(d)) = &o.state else {
        return None;
    };
    let d = d.read_recursive();
    d.get(&Key::str(attr)).cloned()
}

/// The data of an `xmlrpc.client.Binary` object, if `v` is one whose
/// `data` is `bytes` or `bytearray`.
///
/// ```
/// use mpmanager_pickle::Value;
/// use mpmanager_xmlrpc::as_binary;
/// assert!(as_binary(&Value::bytes(b"x")).is_none());
/// ```
pub fn as_binary(v: &Value) -> Option<Vec<u8>> {
    match attr_of(v, "Binary", "data")? {
        Value::Bytes(b) => Some(b.to_vec()),
        Value::ByteArray(b) => Some(b.read_recursive().clone()),
        _ => None,
    }
}

/// The `value` text of an `xmlrpc.client.DateTime` object, if `v` is one.
///
/// ```
/// use mpmanager_xmlrpc::{as_datetime, binary};
/// assert!(as_datetime(&binary(b"")).is_none());
/// ```
pub fn as_datetime(v: &Value) -> Option<String> {
    match attr_of(v, "DateTime", "value")? {
        Value::Str(s) => Some(s.to_string_lossy().into_owned()),
        _ => None,
    }
}
