//! Recognising pickled manager proxies inside stored values.
//!
//! A proxy pickles as `RebuildProxy(func, token, serializer, kwds)` where
//! `token` is a `multiprocessing.managers.Token` rebuilt with `NEWOBJ` and a
//! `BUILD` state `(typeid, address, id)` (PROTOCOL.md §3.8–§3.9). The
//! decoder keeps both as opaque [`Object`](mpmanager_pickle::Object)s; this
//! module reads the token back out of that shape.

use std::collections::HashSet;

use mpmanager_pickle::{Construct, Value};

/// The token of a pickled proxy: what it points at.
#[derive(Clone, Debug)]
pub struct ProxyTarget {
    /// `token.typeid`, e.g. `"list"`.
    pub typeid: String,
    /// `token.id`, the referent's ident, e.g. `"7f1c82a25580"`.
    pub ident: String,
    /// `token.address` as decoded (a tuple, a `str` or `bytes`).
    pub address: Value,
}

fn is_global(v: &Value, module: &str, name: &str) -> bool {
    matches!(v, Value::Global(g) if g.is(module, name))
}

/// Reads a `multiprocessing.managers.Token` value.
pub fn parse_token(v: &Value) -> Option<ProxyTarget> {
    let Value::Object(o) = v else { return None };
    let o = o.read_recursive();
    if !is_global(&o.callable, "multiprocessing.managers", "Token") {
        return None;
    }
    let state = match (&o.state, o.construct) {
        (Some(s), _) => s.clone(),
        // Token(typeid, address, id) built by REDUCE (protocol 0/1 style).
        (None, Construct::Reduce) => o.args.clone(),
        _ => return None,
    };
    let Value::Tuple(t) = state else { return None };
    let [typeid, address, ident] = t.items.as_slice() else {
        return None;
    };
    Some(ProxyTarget {
        typeid: typeid.as_str()?.to_string(),
        ident: ident.as_str()?.to_string(),
        address: address.clone(),
    })
}

/// If `v` is a pickled proxy (`REDUCE(multiprocessing.managers.RebuildProxy,
/// (func, token, serializer, kwds))`), the token it carries.
///
/// ```
/// use mpmanager_objects::proxy::{parse_proxy, make_proxy};
/// use mpmanager_pickle::Value;
/// let p = make_proxy("ListProxy", "list", Value::str("/tmp/sock"), "7f00000010");
/// let t = parse_proxy(&p).unwrap();
/// assert_eq!((t.typeid.as_str(), t.ident.as_str()), ("list", "7f00000010"));
/// assert!(parse_proxy(&Value::Int(1)).is_none());
/// ```
pub fn parse_proxy(v: &Value) -> Option<ProxyTarget> {
    let Value::Object(o) = v else { return None };
    let o = o.read_recursive();
    if !is_global(&o.callable, "multiprocessing.managers", "RebuildProxy") {
        return None;
    }
    let args = o.args_slice();
    parse_token(args.get(1)?)
}

/// Builds the value of a pickled proxy, as a CPython client would send it:
/// `RebuildProxy(managers.<proxy_class>, Token(typeid, address, ident),
/// 'pickle', {})`. Used by tests and by the server when it needs to hand
/// out a proxy value.
pub fn make_proxy(proxy_class: &str, typeid: &str, address: Value, ident: &str) -> Value {
    use mpmanager_pickle::Object;
    let token = Value::object(Object::new_obj(
        mpmanager_pickle::Global::new("multiprocessing.managers", "Token"),
        vec![],
        Some(Value::tuple(vec![
            Value::str(typeid),
            address,
            Value::str(ident),
        ])),
    ));
    let kwds = Value::dict(vec![]).expect("empty dict");
    Value::object(Object::reduce(
        Value::global("multiprocessing.managers", "RebuildProxy"),
        vec![
            Value::global("multiprocessing.managers", proxy_class),
            token,
            Value::str("pickle"),
            kwds,
        ],
    ))
}

/// Calls `f` for every pickled proxy found anywhere inside `v` (following
/// tuples, lists, dicts, sets and opaque objects; each shared container is
/// visited once, so cycles are fine; no recursion, so depth is fine).
///
/// Cost: one visit per container element; scalars are skipped cheaply.
pub fn for_each_proxy(v: &Value, f: &mut dyn FnMut(ProxyTarget)) {
    if !may_contain_proxy(v) {
        return;
    }
    let mut seen: HashSet<usize> = HashSet::new();
    let mut stack: Vec<Value> = vec![v.clone()];
    while let Some(v) = stack.pop() {
        if !may_contain_proxy(&v) {
            continue;
        }
        if let Some(id) = v.identity() {
            if !seen.insert(id) {
                continue;
            }
        }
        let push = |stack: &mut Vec<Value>, x: &Value| {
            if may_contain_proxy(x) {
                stack.push(x.clone())
            }
        };
        match &v {
            Value::Tuple(t) => t.items.iter().for_each(|x| push(&mut stack, x)),
            Value::List(l) => l
                .read_recursive()
                .items
                .iter()
                .for_each(|x| push(&mut stack, x)),
            Value::Dict(d) => {
                for (k, x) in d.read_recursive().iter() {
                    push(&mut stack, k.value());
                    push(&mut stack, x);
                }
            }
            Value::Set(s) => s
                .read_recursive()
                .iter()
                .for_each(|k| push(&mut stack, k.value())),
            Value::FrozenSet(s) => s.iter().for_each(|k| push(&mut stack, k.value())),
            Value::Object(_) => {
                if let Some(t) = parse_proxy(&v) {
                    f(t);
                    continue;
                }
                let Value::Object(o) = &v else { unreachable!() };
                let o = o.read_recursive();
                push(&mut stack, &o.callable);
                push(&mut stack, &o.args);
                if let Some(k) = &o.kwargs {
                    push(&mut stack, k);
                }
                if let Some(s) = &o.state {
                    push(&mut stack, s);
                }
                o.list_items.iter().for_each(|x| push(&mut stack, x));
                for (k, x) in &o.dict_items {
                    push(&mut stack, k);
                    push(&mut stack, x);
                }
            }
            _ => {}
        }
    }
}

/// True for values that may (transitively) hold a proxy.
fn may_contain_proxy(v: &Value) -> bool {
    matches!(
        v,
        Value::Tuple(_)
            | Value::List(_)
            | Value::Dict(_)
            | Value::Set(_)
            | Value::FrozenSet(_)
            | Value::Object(_)
    )
}
