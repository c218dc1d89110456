//! Python ordering (`<`, `<=`, `>`, `>=`) and `list.sort()` on the value model.
//!
//! * Numbers (`bool`, `int`, `float`, `decimal.Decimal`,
//!   `fractions.Fraction`) compare exactly across types; a comparison with
//!   a float NaN is false, except that one involving a `Decimal` and any NaN
//!   (a `Decimal` NaN, or a float NaN against a `Decimal`) raises
//!   `decimal.InvalidOperation`, as the C `decimal` module's default context
//!   does. `complex` is not ordered.
//! * `str` by code point, `bytes`/`bytearray` by byte.
//! * `tuple` with `tuple`, `list` with `list`: lexicographically — the first
//!   index where the items are not equal ([`py_eq`]) decides with the same
//!   operator, otherwise the lengths do.
//! * `set`/`frozenset`: subset / superset tests.
//! * Everything else raises CPython's `TypeError`:
//!   `'<' not supported between instances of 'str' and 'int'`.
//!
//! Known differences: other opaque objects (`datetime`, user classes …)
//! are never ordered (CPython would call their `__lt__`).
//!
//! [`sort`] is a stable sort that only uses `<`, with CPython 3.8–3.12's
//! timsort run detection and binary insertion (so for lists shorter than 64
//! items it performs exactly their comparisons, including which pair raises
//! the `TypeError`); longer runs are merged without galloping (3.8's merge
//! order), which gives the same result for any consistent ordering. Only for
//! inconsistent orderings (NaN, sets) can the result differ from CPython —
//! and CPython's own results differ there between versions (3.13 changed run
//! detection, 3.11 the merge order).

use std::cmp::Ordering;

use num_bigint::BigInt;

use crate::exc::PyErr;
use crate::hash::{
    cmp_int_float, cmp_real, invalid_operation, numeric_object, object_type_name, py_eq, real_of,
    MAX_COMPARE_DEPTH, RED_ZONE, STACK_GROWTH,
};
use crate::value::{Set, Value};

/// A rich-comparison ordering operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CompareOp {
    /// The operator's symbol (`"<"`, …).
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    fn holds(self, o: Ordering) -> bool {
        match self {
            CompareOp::Lt => o == Ordering::Less,
            CompareOp::Le => o != Ordering::Greater,
            CompareOp::Gt => o == Ordering::Greater,
            CompareOp::Ge => o != Ordering::Less,
        }
    }
}

/// `a <op> b` as Python evaluates it.
///
/// ```
/// use mpmanager_pickle::{ord::{py_compare, CompareOp}, Value};
/// assert!(py_compare(&Value::Int(1), &Value::Float(1.5), CompareOp::Lt).unwrap());
/// let e = py_compare(&Value::str("a"), &Value::Int(1), CompareOp::Lt).unwrap_err();
/// assert_eq!(e.to_string(), "TypeError: '<' not supported between instances of 'str' and 'int'");
/// ```
pub fn py_compare(a: &Value, b: &Value, op: CompareOp) -> Result<bool, PyErr> {
    compare_at(a, b, op, 0)
}

/// `a < b`.
pub fn py_lt(a: &Value, b: &Value) -> Result<bool, PyErr> {
    compare_at(a, b, CompareOp::Lt, 0)
}

fn not_supported(a: &Value, b: &Value, op: CompareOp) -> PyErr {
    PyErr::type_error(format!(
        "'{}' not supported between instances of '{}' and '{}'",
        op.symbol(),
        object_type_name(a),
        object_type_name(b)
    ))
}

/// `a <op> b` where one side is a `Decimal` or `Fraction`: `Ok(None)` if
/// neither is.
fn numeric_object_cmp(a: &Value, b: &Value, op: CompareOp) -> Result<Option<bool>, PyErr> {
    let (oa, ob) = (numeric_object(a), numeric_object(b));
    if oa.is_none() && ob.is_none() {
        return Ok(None);
    }
    let (Some(x), Some(y)) = (oa.or_else(|| real_of(a)), ob.or_else(|| real_of(b))) else {
        return Err(not_supported(a, b, op));
    };
    match cmp_real(&x, &y) {
        Some(o) => Ok(Some(op.holds(o))),
        None if x.is_decimal() || y.is_decimal() => Err(invalid_operation()),
        None => Ok(Some(false)),
    }
}

/// Exact ordering of two real numbers; `None` if either is not a real
/// number, `Some(None)` if unordered (NaN).
fn num_cmp(a: &Value, b: &Value) -> Option<Option<Ordering>> {
    use Value::{BigInt as Big, Bool, Float, Int};
    let int = |v: &Value| -> Option<BigInt> { v.to_bigint() };
    Some(match (a, b) {
        (Bool(_) | Int(_), Bool(_) | Int(_)) => Some(a.as_i64()?.cmp(&b.as_i64()?)),
        (Bool(_) | Int(_) | Big(_), Bool(_) | Int(_) | Big(_)) => Some(int(a)?.cmp(&int(b)?)),
        (Float(x), Float(y)) => x.partial_cmp(y),
        (Bool(_) | Int(_) | Big(_), Float(f)) => cmp_int_float(&int(a)?, *f),
        (Float(f), Bool(_) | Int(_) | Big(_)) => cmp_int_float(&int(b)?, *f).map(Ordering::reverse),
        _ => return None,
    })
}

fn subset(a: &Set, b: &Set) -> bool {
    a.len() <= b.len() && a.iter().all(|k| b.contains(k))
}

fn compare_at(a: &Value, b: &Value, op: CompareOp, depth: usize) -> Result<bool, PyErr> {
    stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || compare_inner(a, b, op, depth))
}

fn seq_compare(x: &[Value], y: &[Value], op: CompareOp, depth: usize) -> Result<bool, PyErr> {
    for (p, q) in x.iter().zip(y) {
        if !py_eq(p, q)? {
            return compare_at(p, q, op, depth + 1);
        }
    }
    Ok(op.holds(x.len().cmp(&y.len())))
}

fn compare_inner(a: &Value, b: &Value, op: CompareOp, depth: usize) -> Result<bool, PyErr> {
    use Value::{ByteArray, Bytes, FrozenSet, List, Set as PySet, Str, Tuple};
    if depth > MAX_COMPARE_DEPTH {
        return Err(PyErr::recursion("in comparison"));
    }
    if let Some(o) = num_cmp(a, b) {
        return Ok(o.is_some_and(|o| op.holds(o)));
    }
    if matches!(a, Value::Object(_)) || matches!(b, Value::Object(_)) {
        if let Some(r) = numeric_object_cmp(a, b, op)? {
            return Ok(r);
        }
    }
    let bytes_of = |v: &Value| -> Option<Vec<u8>> {
        match v {
            Bytes(b) => Some(b.to_vec()),
            ByteArray(b) => Some(b.read_recursive().clone()),
            _ => None,
        }
    };
    Ok(match (a, b) {
        (Str(x), Str(y)) => op.holds(x.cmp(y)),
        (Bytes(x), Bytes(y)) => op.holds(x[..].cmp(&y[..])),
        (Bytes(_) | ByteArray(_), Bytes(_) | ByteArray(_)) => match (bytes_of(a), bytes_of(b)) {
            (Some(x), Some(y)) => op.holds(x.cmp(&y)),
            _ => return Err(not_supported(a, b, op)),
        },
        (Tuple(x), Tuple(y)) => seq_compare(x, y, op, depth)?,
        (List(x), List(y)) => {
            // Copy the items out so no lock is held while comparing.
            let xs = x.read_recursive().items.clone();
            let ys = y.read_recursive().items.clone();
            seq_compare(&xs, &ys, op, depth)?
        }
        (PySet(_) | FrozenSet(_), PySet(_) | FrozenSet(_)) => {
            let get = |v: &Value| -> Set {
                match v {
                    PySet(s) => s.read_recursive().clone(),
                    FrozenSet(s) => (**s).clone(),
                    _ => Set::default(),
                }
            };
            let (x, y) = (get(a), get(b));
            match op {
                CompareOp::Lt => x.len() < y.len() && subset(&x, &y),
                CompareOp::Le => subset(&x, &y),
                CompareOp::Gt => x.len() > y.len() && subset(&y, &x),
                CompareOp::Ge => subset(&y, &x),
            }
        }
        _ => return Err(not_supported(a, b, op)),
    })
}

/// `list.sort()` (`reverse=True` reverses, sorts stably, and reverses
/// again, as CPython does, so equal items keep their original order).
///
/// On error (the first `TypeError` raised by `<`) the list is left as it
/// was. CPython leaves a partially sorted permutation instead; both hold the
/// same items.
///
/// ```
/// use mpmanager_pickle::{ord::sort, repr, Value};
/// let mut v = vec![Value::Int(3), Value::Float(1.5), Value::Bool(true)];
/// sort(&mut v, false).unwrap();
/// assert_eq!(repr(&Value::list(v)), "[True, 1.5, 3]");
/// ```
pub fn sort(items: &mut Vec<Value>, reverse: bool) -> Result<(), PyErr> {
    if items.len() < 2 {
        return Ok(());
    }
    if reverse {
        items.reverse();
    }
    let r = if let Some(key) = fast_key(items) {
        fast_sort(items, key);
        Ok(())
    } else {
        generic_sort(items)
    };
    if reverse {
        // Undo the first reversal on error too, leaving the list as it was.
        items.reverse();
    }
    r
}

/// Kinds of homogeneous lists that have a total order and can be sorted
/// without fallible comparisons.
#[derive(Clone, Copy)]
enum FastKey {
    /// Only `bool`/`int`/`float` (no NaN).
    Num,
    /// Only `str`.
    Str,
    /// Only `bytes`.
    Bytes,
}

fn fast_key(items: &[Value]) -> Option<FastKey> {
    let key = match &items[0] {
        Value::Bool(_) | Value::Int(_) | Value::BigInt(_) | Value::Float(_) => FastKey::Num,
        Value::Str(_) => FastKey::Str,
        Value::Bytes(_) => FastKey::Bytes,
        _ => return None,
    };
    let ok = items.iter().all(|v| match (key, v) {
        (FastKey::Num, Value::Float(f)) => !f.is_nan(),
        (FastKey::Num, Value::Bool(_) | Value::Int(_) | Value::BigInt(_)) => true,
        (FastKey::Str, Value::Str(_)) => true,
        (FastKey::Bytes, Value::Bytes(_)) => true,
        _ => false,
    });
    ok.then_some(key)
}

fn fast_sort(items: &mut [Value], key: FastKey) {
    match key {
        FastKey::Num => items.sort_by(|a, b| num_cmp(a, b).flatten().unwrap_or(Ordering::Equal)),
        FastKey::Str => items.sort_by(|a, b| match (a, b) {
            (Value::Str(x), Value::Str(y)) => x.cmp(y),
            _ => Ordering::Equal,
        }),
        FastKey::Bytes => items.sort_by(|a, b| match (a, b) {
            (Value::Bytes(x), Value::Bytes(y)) => x[..].cmp(&y[..]),
            _ => Ordering::Equal,
        }),
    }
}

/// Timsort's structure with fallible comparisons, on a permutation of
/// indices; the items are only rearranged once sorting succeeded.
fn generic_sort(items: &mut Vec<Value>) -> Result<(), PyErr> {
    let n = items.len();
    let mut idx: Vec<usize> = (0..n).collect();
    {
        let vals: &[Value] = items;
        let lt = |i: usize, j: usize| py_lt(&vals[i], &vals[j]);
        let minrun = compute_minrun(n);
        let mut runs: Vec<(usize, usize)> = Vec::new(); // (start, len)
        let mut lo = 0;
        while lo < n {
            let (mut len, descending) = count_run(&idx[lo..], &lt)?;
            if descending {
                idx[lo..lo + len].reverse();
            }
            if len < minrun {
                let force = (n - lo).min(minrun);
                binary_sort(&mut idx[lo..lo + force], len, &lt)?;
                len = force;
            }
            runs.push((lo, len));
            merge_collapse(&mut idx, &mut runs, &lt, false)?;
            lo += len;
        }
        merge_collapse(&mut idx, &mut runs, &lt, true)?;
    }
    let mut old: Vec<Option<Value>> = std::mem::take(items).into_iter().map(Some).collect();
    items.extend(idx.into_iter().map(|i| old[i].take().unwrap_or_default()));
    Ok(())
}

fn compute_minrun(mut n: usize) -> usize {
    let mut r = 0;
    while n >= 64 {
        r |= n & 1;
        n >>= 1;
    }
    n + r
}

type Lt<'a> = dyn Fn(usize, usize) -> Result<bool, PyErr> + 'a;

/// CPython's `count_run`: the length of the run at the start, and whether
/// it is strictly descending.
fn count_run(s: &[usize], lt: &Lt<'_>) -> Result<(usize, bool), PyErr> {
    if s.len() == 1 {
        return Ok((1, false));
    }
    let mut n = 2;
    if lt(s[1], s[0])? {
        while n < s.len() && lt(s[n], s[n - 1])? {
            n += 1;
        }
        Ok((n, true))
    } else {
        while n < s.len() && !lt(s[n], s[n - 1])? {
            n += 1;
        }
        Ok((n, false))
    }
}

/// CPython's `binarysort`: `s[..start]` is sorted; insert the rest.
fn binary_sort(s: &mut [usize], start: usize, lt: &Lt<'_>) -> Result<(), PyErr> {
    for i in start.max(1)..s.len() {
        let pivot = s[i];
        let (mut l, mut r) = (0, i);
        while l < r {
            let p = l + ((r - l) >> 1);
            if lt(pivot, s[p])? {
                r = p;
            } else {
                l = p + 1;
            }
        }
        s.copy_within(l..i, l + 1);
        s[l] = pivot;
    }
    Ok(())
}

/// Merges runs so that the stack invariants hold (CPython 3.8's
/// `merge_collapse`), or all of them when `force`.
fn merge_collapse(
    idx: &mut [usize],
    runs: &mut Vec<(usize, usize)>,
    lt: &Lt<'_>,
    force: bool,
) -> Result<(), PyErr> {
    while runs.len() > 1 {
        let mut n = runs.len() - 2;
        let len = |i: usize, runs: &Vec<(usize, usize)>| runs[i].1;
        if force {
            if n > 0 && len(n - 1, runs) < len(n + 1, runs) {
                n -= 1;
            }
        } else if (n > 0 && len(n - 1, runs) <= len(n, runs) + len(n + 1, runs))
            || (n > 1 && len(n - 2, runs) <= len(n - 1, runs) + len(n, runs))
        {
            if len(n - 1, runs) < len(n + 1, runs) {
                n -= 1;
            }
        } else if len(n, runs) > len(n + 1, runs) {
            break;
        }
        let (a, alen) = runs[n];
        let (_, blen) = runs[n + 1];
        merge(&mut idx[a..a + alen + blen], alen, lt)?;
        runs[n] = (a, alen + blen);
        runs.remove(n + 1);
    }
    Ok(())
}

/// Stable merge of `s[..mid]` and `s[mid..]`, taking from the right only
/// when its item is `<` the left one.
fn merge(s: &mut [usize], mid: usize, lt: &Lt<'_>) -> Result<(), PyErr> {
    let left: Vec<usize> = s[..mid].to_vec();
    let right: Vec<usize> = s[mid..].to_vec();
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < left.len() && j < right.len() {
        if lt(right[j], left[i])? {
            s[k] = right[j];
            j += 1;
        } else {
            s[k] = left[i];
            i += 1;
        }
        k += 1;
    }
    for &x in &left[i..] {
        s[k] = x;
        k += 1;
    }
    for &x in &right[j..] {
        s[k] = x;
        k += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_sort_is_stable_on_many_items() {
        // Tuples force the generic path; keys collide so stability matters.
        let mut v: Vec<Value> = (0..1000)
            .map(|i| Value::tuple(vec![Value::Int((i * 7919) % 13), Value::Int(i)]))
            .collect();
        let mut expect: Vec<(i64, i64)> = (0..1000).map(|i| ((i * 7919) % 13, i)).collect();
        expect.sort();
        sort(&mut v, false).unwrap();
        let got: Vec<(i64, i64)> = v
            .iter()
            .map(|t| match t {
                Value::Tuple(t) => (t[0].as_i64().unwrap(), t[1].as_i64().unwrap()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn failed_sort_keeps_items() {
        let mut v: Vec<Value> = (0..200).map(Value::from).collect();
        v.push(Value::str("x"));
        v.push(Value::tuple(vec![]));
        let before = crate::repr::repr(&Value::list(v.clone()));
        assert!(sort(&mut v, false).is_err());
        assert_eq!(crate::repr::repr(&Value::list(v)), before);
    }
}
