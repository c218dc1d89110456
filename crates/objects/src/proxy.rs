//! Pickled manager proxies inside stored values.
//!
//! Parsing and walking are `mpmanager_protocol`'s ([`ProxyRef`],
//! [`find_proxies`]); this module adds the registry's cheap fast path for
//! values that cannot hold a proxy.

use mpmanager_pickle::Value;
pub use mpmanager_protocol::{find_proxies, ProxyRef, PyAddress, Token};

/// Calls `f` for every pickled proxy found anywhere inside `v` (following
/// tuples, lists, dicts, sets and opaque objects; each shared container is
/// visited once, so cycles are fine; no recursion, so depth is fine).
///
/// Scalars, strings and bytes cost nothing: the per-call scan of method
/// arguments stays off the hot path.
///
/// ```
/// use mpmanager_objects::proxy::{for_each_proxy, ProxyRef, PyAddress, Token};
/// use mpmanager_pickle::Value;
/// let p = ProxyRef::class_proxy("ListProxy", Token::new("list", PyAddress::tcp("127.0.0.1", 1), "7f01"));
/// let mut ids = Vec::new();
/// for_each_proxy(&Value::list(vec![Value::Int(1), p.to_value()]), &mut |r| ids.push(r.token.id));
/// assert_eq!(ids, ["7f01"]);
/// ```
pub fn for_each_proxy(v: &Value, f: &mut dyn FnMut(ProxyRef)) {
    let may_contain = matches!(
        v,
        Value::Tuple(_)
            | Value::List(_)
            | Value::Dict(_)
            | Value::Set(_)
            | Value::FrozenSet(_)
            | Value::Object(_)
    );
    if may_contain {
        find_proxies(v).into_iter().for_each(f);
    }
}
