//! The few Python `repr`s this crate needs for its own text (token reprs,
//! error messages, traceback lines).
//!
//! The full `repr` of the value model lives in `mpmanager_pickle::repr`; it
//! is being written at the same time as this crate, so the small, exactly
//! specified cases needed here (`str`, `bytes`, `int`, `bool`, `None`, and
//! tuples of those) are implemented locally. Anything else is delegated to
//! [`mpmanager_pickle::repr()`].
//!
//! Known difference from CPython: a `str` is escaped according to a built-in
//! table of the code points for which `str.isprintable()` is false (controls,
//! space/format/line/paragraph separators, surrogates, private use,
//! noncharacters). Checked against CPython 3.11 for every assigned code
//! point; **unassigned** code points, which CPython also escapes, are shown
//! as they are.

use mpmanager_pickle::{PyStr, Value};

/// Python's `repr()` of a `str`, e.g. `'abc'`, `"it's"`, `'a\n\x00'`.
///
/// ```
/// use mpmanager_protocol::pyrepr::str_repr;
/// assert_eq!(str_repr("abc"), "'abc'");
/// assert_eq!(str_repr("it's"), "\"it's\"");
/// assert_eq!(str_repr("both ' and \""), "'both \\' and \"'");
/// assert_eq!(str_repr("tab\t\u{0}\u{e9}"), "'tab\\t\\x00\u{e9}'");
/// ```
pub fn str_repr(s: &str) -> String {
    code_points_repr(&s.chars().map(|c| c as u32).collect::<Vec<_>>())
}

/// Python's `repr()` of a [`PyStr`] (which may hold lone surrogates,
/// shown as `\udc80`).
///
/// ```
/// use mpmanager_pickle::PyStr;
/// use mpmanager_protocol::pyrepr::pystr_repr;
/// let s = PyStr::from_code_points([0x61, 0xDC80]).unwrap();
/// assert_eq!(pystr_repr(&s), "'a\\udc80'");
/// ```
pub fn pystr_repr(s: &PyStr) -> String {
    code_points_repr(&s.code_points().collect::<Vec<_>>())
}

fn code_points_repr(cps: &[u32]) -> String {
    let single = cps.contains(&('\'' as u32));
    let double = cps.contains(&('"' as u32));
    let quote = if single && !double { '"' } else { '\'' };
    let mut out = String::new();
    out.push(quote);
    for &cp in cps {
        match cp {
            0x5C => out.push_str("\\\\"),
            0x09 => out.push_str("\\t"),
            0x0A => out.push_str("\\n"),
            0x0D => out.push_str("\\r"),
            c if c == quote as u32 => {
                out.push('\\');
                out.push(quote);
            }
            c if c < 0x20 || c == 0x7F => out.push_str(&format!("\\x{c:02x}")),
            c if c < 0x7F => out.push(char::from_u32(c).unwrap_or('?')),
            c if !is_printable(c) => {
                if c < 0x100 {
                    out.push_str(&format!("\\x{c:02x}"));
                } else if c < 0x10000 {
                    out.push_str(&format!("\\u{c:04x}"));
                } else {
                    out.push_str(&format!("\\U{c:08x}"));
                }
            }
            c => out.push(char::from_u32(c).unwrap_or('\u{FFFD}')),
        }
    }
    out.push(quote);
    out
}

/// An approximation of `str.isprintable()` for one non-ASCII code point.
fn is_printable(c: u32) -> bool {
    !matches!(c,
        0x80..=0xA0 | 0xAD // Latin-1 controls, NBSP, soft hyphen
        | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x1680 | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x2064
        | 0x2066..=0x206F | 0x3000 | 0xD800..=0xDFFF | 0xE000..=0xF8FF
        | 0xFDD0..=0xFDEF | 0xFEFF | 0xFFF9..=0xFFFB
        | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
        | 0xF0000..=0x10FFFF)
        && (c & 0xFFFE) != 0xFFFE
}

/// Python's `repr()` of a `bytes`, e.g. `b'\x00mgr'`.
///
/// ```
/// use mpmanager_protocol::pyrepr::bytes_repr;
/// assert_eq!(bytes_repr(b"\0mgr-x"), "b'\\x00mgr-x'");
/// assert_eq!(bytes_repr(b"it's"), "b\"it's\"");
/// ```
pub fn bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from("b");
    out.push(quote);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            c if c as char == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7E => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr()` for the simple values that appear in manager messages
/// (`None`, `bool`, `int`, `str`, `bytes`, and tuples and lists of those);
/// anything else is delegated to [`mpmanager_pickle::repr()`].
///
/// ```
/// use mpmanager_pickle::Value;
/// use mpmanager_protocol::pyrepr::repr;
/// let v = Value::tuple(vec![Value::str("127.0.0.1"), Value::Int(50011)]);
/// assert_eq!(repr(&v), "('127.0.0.1', 50011)");
/// assert_eq!(repr(&Value::tuple(vec![Value::None])), "(None,)");
/// ```
pub fn repr(v: &Value) -> String {
    let mut out = String::new();
    repr_into(v, &mut out, 0);
    out
}

fn repr_into(v: &Value, out: &mut String, depth: usize) {
    // Deeply nested values go to the general repr, which bounds its own depth.
    if depth > 16 {
        out.push_str(&mpmanager_pickle::repr(v));
        return;
    }
    let seq = |items: &[Value], open: &str, close: &str, out: &mut String| {
        out.push_str(open);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            repr_into(item, out, depth + 1);
        }
        if open == "(" && items.len() == 1 {
            out.push(',');
        }
        out.push_str(close);
    };
    match v {
        Value::None => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::BigInt(b) => out.push_str(&b.to_string()),
        Value::Str(s) => out.push_str(&pystr_repr(s)),
        Value::Bytes(b) => out.push_str(&bytes_repr(b)),
        Value::Tuple(t) => seq(t, "(", ")", out),
        Value::List(l) => {
            let items = l.read_recursive().items.clone();
            seq(&items, "[", "]", out)
        }
        other => out.push_str(&mpmanager_pickle::repr(other)),
    }
}

/// A short description of a value for error messages: its type, plus the
/// length for tuples and lists (`"int"`, `"tuple of 2 items"`).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_repr_matches_cpython() {
        // Expected strings produced by CPython 3.11's repr().
        assert_eq!(str_repr(""), "''");
        assert_eq!(str_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(str_repr("\\"), "'\\\\'");
        assert_eq!(
            str_repr("\u{7f}\u{85}\u{a0}\u{ad}"),
            "'\\x7f\\x85\\xa0\\xad'"
        );
        assert_eq!(str_repr("\u{2028}\u{feff}"), "'\\u2028\\ufeff'");
        assert_eq!(str_repr("\u{f0000}"), "'\\U000f0000'");
        assert_eq!(str_repr("\u{890}\u{600}"), "'\\u0890\\u0600'");
        assert_eq!(
            str_repr("h\u{e9}\u{4e2d}\u{1f600}"),
            "'h\u{e9}\u{4e2d}\u{1f600}'"
        );
        assert_eq!(bytes_repr(b""), "b''");
        assert_eq!(bytes_repr(b"\x7f\xff\\"), "b'\\x7f\\xff\\\\'");
    }

    #[test]
    fn simple_values() {
        let v = Value::tuple(vec![
            Value::None,
            Value::Bool(true),
            Value::Int(-3),
            Value::bytes(b"x"),
            Value::list(vec![Value::str("a")]),
        ]);
        assert_eq!(repr(&v), "(None, True, -3, b'x', ['a'])");
        assert_eq!(repr(&Value::tuple(vec![])), "()");
        assert_eq!(
            describe(&Value::tuple(vec![Value::None])),
            "tuple of 1 item"
        );
        assert_eq!(describe(&Value::Int(1)), "int");
    }
}
