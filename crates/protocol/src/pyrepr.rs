//! The Python `repr`s this crate's texts need (token reprs, error messages,
//! traceback lines), all from `mpmanager_pickle::repr`.

use mpmanager_pickle::{PyStr, Value};

pub(crate) use mpmanager_pickle::repr::{bytes_repr, repr};

/// Python's `repr()` of a `str`, e.g. `'abc'`, `"it's"`.
pub(crate) fn str_repr(s: &str) -> String {
    mpmanager_pickle::repr::str_repr(&PyStr::new(s))
}

/// A short description of a value's type for error messages: `'tuple of 2
/// items'`, `'str'`.
pub(crate) fn describe(v: &Value) -> String {
    let n = match v {
        Value::Tuple(t) => Some(t.len()),
        Value::List(l) => Some(l.read_recursive().len()),
        _ => None,
    };
    match n {
        Some(1) => format!("{} of 1 item", v.type_name()),
        Some(n) => format!("{} of {n} items", v.type_name()),
        None => v.type_name(),
    }
}
