//! Python equality and hashing on the value model.
//!
//! Equality follows `PyObject_RichCompareBool`, which containers use
//! (`in`, `list.count`, `list.index`, dict lookups): identical objects are
//! equal, then values are compared. Numbers compare exactly across `bool`,
//! `int`, `float` and `complex` (`1 == 1.0 == True`, `2**53 + 1 != 2.0**53`),
//! `bytes == bytearray` by content, `set == frozenset` by members.
//!
//! Hashes agree with equality (equal numbers hash alike, using CPython's
//! modular numeric hash). They never leave the process, so `str` hashes are
//! not CPython's.
//!
//! Known differences from CPython, which calls user code the server cannot
//! run: opaque objects compare and hash *structurally* (same class, same
//! arguments and state), not with their class's `__eq__`/`__hash__`; and a
//! float NaN is treated as identical to any NaN with the same bits.

use std::hash::Hasher;

use num_bigint::{BigInt, Sign};
use num_traits::{ToPrimitive, Zero};

use crate::exc::PyErr;
use crate::value::{Set, Value};

/// Maximum nesting that comparisons and hashes follow before raising
/// `RecursionError`, as CPython's recursion limit does.
pub const MAX_COMPARE_DEPTH: usize = 1000;

const MODULUS: u64 = (1u64 << 61) - 1;
const HASH_INF: i64 = 314_159;

fn fix(h: i64) -> i64 {
    if h == -1 {
        -2
    } else {
        h
    }
}

fn hash_i64(i: i64) -> i64 {
    let a = i.unsigned_abs() % MODULUS;
    fix(if i < 0 { -(a as i64) } else { a as i64 })
}

fn hash_bigint(b: &BigInt) -> i64 {
    let m = BigInt::from(MODULUS);
    let a = (b.magnitude() % m.magnitude()).to_u64().unwrap_or(0);
    fix(if b.sign() == Sign::Minus {
        -(a as i64)
    } else {
        a as i64
    })
}

/// CPython's `_Py_HashDouble` (NaN hashes to 0).
pub fn hash_f64(v: f64) -> i64 {
    if v.is_nan() {
        return 0;
    }
    if v.is_infinite() {
        return if v > 0.0 { HASH_INF } else { -HASH_INF };
    }
    let (mut m, mut e) = frexp(v);
    let sign: i64 = if m < 0.0 {
        m = -m;
        -1
    } else {
        1
    };
    let mut x: u64 = 0;
    while m != 0.0 {
        x = ((x << 28) & MODULUS) | (x >> (61 - 28));
        m *= 268_435_456.0; // 2**28
        e -= 28;
        let y = m as u64;
        m -= y as f64;
        x += y;
        if x >= MODULUS {
            x -= MODULUS;
        }
    }
    let e = if e >= 0 {
        e % 61
    } else {
        61 - 1 - ((-1 - e) % 61)
    } as u32;
    x = ((x << e) & MODULUS) | (x >> (61 - e));
    fix(x as i64 * sign)
}

/// `frexp`: `v == m * 2**e` with `0.5 <= |m| < 1` (or `m == 0`).
fn frexp(v: f64) -> (f64, i32) {
    if v == 0.0 || !v.is_finite() {
        return (v, 0);
    }
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale up first.
        let (m, e) = frexp(v * f64::from_bits(0x4350_0000_0000_0000)); // 2**54
        return (m, e - 54);
    }
    let m = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (m, exp - 1022)
}

fn fx_bytes(tag: u8, b: &[u8]) -> i64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write_u8(tag);
    h.write(b);
    fix(h.finish() as i64)
}

/// The Python hash of a value, or `TypeError: unhashable type: 'list'`.
///
/// ```
/// use mpmanager_pickle::{hash::py_hash, Value};
/// assert_eq!(py_hash(&Value::Int(1)).unwrap(), py_hash(&Value::Float(1.0)).unwrap());
/// assert_eq!(py_hash(&Value::Int(-1)).unwrap(), -2);
/// assert!(py_hash(&Value::list(vec![])).is_err());
/// ```
pub fn py_hash(v: &Value) -> Result<i64, PyErr> {
    hash_at(v, 0, false)
}

fn unhashable(v: &Value) -> PyErr {
    PyErr::type_error(format!("unhashable type: '{}'", v.type_name()))
}

fn combine(acc: u64, h: i64) -> u64 {
    // xxHash-style mixing, as CPython's tuple hash.
    const P1: u64 = 11400714785074694791;
    const P2: u64 = 14029467366897019727;
    let acc = acc.wrapping_add((h as u64).wrapping_mul(P2));
    acc.rotate_left(31).wrapping_mul(P1)
}

/// `structural`: hash mutable containers by content (used for opaque
/// objects, whose state is usually a dict).
fn hash_at(v: &Value, depth: usize, structural: bool) -> Result<i64, PyErr> {
    stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || {
        hash_at_inner(v, depth, structural)
    })
}

/// Stack left before a recursive walk grows a new segment, and its size.
pub(crate) const RED_ZONE: usize = 64 * 1024;
pub(crate) const STACK_GROWTH: usize = 1024 * 1024;

fn hash_at_inner(v: &Value, depth: usize, structural: bool) -> Result<i64, PyErr> {
    if depth > MAX_COMPARE_DEPTH {
        return Err(PyErr::recursion("while hashing"));
    }
    let seq = |items: &[Value], tag: u64| -> Result<i64, PyErr> {
        let mut acc: u64 = 2870177450012600261 ^ tag;
        for it in items {
            acc = combine(acc, hash_at(it, depth + 1, structural)?);
        }
        Ok(fix(acc.wrapping_add(items.len() as u64 ^ 3527539) as i64))
    };
    let set = |s: &Set, tag: u64| -> Result<i64, PyErr> {
        let mut acc: u64 = 1927868237 ^ tag;
        for k in s.iter() {
            let h = k.hash_value() as u64;
            acc ^= (h ^ (h << 16) ^ 89869747).wrapping_mul(3644798167);
        }
        Ok(fix(acc.wrapping_mul(69069).wrapping_add(907133923) as i64))
    };
    Ok(match v {
        Value::None => 0x5f3759df,
        Value::Bool(b) => *b as i64,
        Value::Int(i) => hash_i64(*i),
        Value::BigInt(b) => hash_bigint(b),
        Value::Float(f) => hash_f64(*f),
        Value::Complex(re, im) => {
            fix(hash_f64(*re).wrapping_add(1_000_003i64.wrapping_mul(hash_f64(*im))))
        }
        Value::Str(s) => fx_bytes(1, s.as_wtf8()),
        Value::Bytes(b) => fx_bytes(2, b),
        Value::Tuple(t) => seq(t, 0)?,
        Value::FrozenSet(s) => set(s, 0)?,
        Value::Slice(s) => seq(&[s.start.clone(), s.stop.clone(), s.step.clone()], 7)?,
        Value::Global(g) => {
            let mut h = rustc_hash::FxHasher::default();
            h.write(g.module.as_bytes());
            h.write_u8(b'.');
            h.write(g.name.as_bytes());
            fix(h.finish() as i64)
        }
        Value::Object(o) => {
            let o = o.read_recursive();
            let mut acc = combine(77, hash_at(&o.callable, depth + 1, true)?);
            acc = combine(acc, hash_at(&o.args, depth + 1, true)?);
            if let Some(k) = &o.kwargs {
                acc = combine(acc, hash_at(k, depth + 1, true)?);
            }
            if let Some(s) = &o.state {
                acc = combine(acc, hash_at(s, depth + 1, true)?);
            }
            for it in &o.list_items {
                acc = combine(acc, hash_at(it, depth + 1, true)?);
            }
            for (k, it) in &o.dict_items {
                acc = combine(acc, hash_at(k, depth + 1, true)?);
                acc = combine(acc, hash_at(it, depth + 1, true)?);
            }
            fix(acc as i64)
        }
        Value::List(l) if structural => seq(&l.read_recursive(), 1)?,
        Value::ByteArray(b) if structural => fx_bytes(2, &b.read_recursive()),
        Value::Set(s) if structural => set(&s.read_recursive(), 0)?,
        Value::Dict(d) if structural => {
            let d = d.read_recursive();
            let mut acc: u64 = 99;
            for (k, it) in d.iter() {
                acc = combine(acc, k.hash_value());
                acc = combine(acc, hash_at(it, depth + 1, true)?);
            }
            fix(acc as i64)
        }
        Value::List(_) | Value::ByteArray(_) | Value::Set(_) | Value::Dict(_) => {
            return Err(unhashable(v))
        }
    })
}

/// Equality of two hashable values (used by dict and set lookups).
pub fn key_eq(a: &Value, b: &Value) -> bool {
    py_eq(a, b).unwrap_or(false)
}

/// Python equality with container semantics (`PyObject_RichCompareBool`):
/// `Ok(true)` if `a is b` or `a == b`. Fails with `RecursionError` on
/// structures nested deeper than [`MAX_COMPARE_DEPTH`] (or distinct
/// self-containing structures, as CPython does).
///
/// ```
/// use mpmanager_pickle::{hash::py_eq, Value};
/// assert!(py_eq(&Value::Int(1), &Value::Bool(true)).unwrap());
/// assert!(py_eq(&Value::Float(-0.0), &Value::Int(0)).unwrap());
/// assert!(!py_eq(&Value::str("1"), &Value::Int(1)).unwrap());
/// assert!(!py_eq(&Value::tuple(vec![]), &Value::list(vec![])).unwrap());
/// ```
pub fn py_eq(a: &Value, b: &Value) -> Result<bool, PyErr> {
    eq_at(a, b, 0)
}

/// Exact comparison of an integer with a float: `Some(ordering)` or `None`
/// when `f` is NaN.
pub fn cmp_int_float(i: &BigInt, f: f64) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering::*;
    if f.is_nan() {
        return None;
    }
    if f.is_infinite() {
        return Some(if f > 0.0 { Less } else { Greater });
    }
    let fl = f.floor();
    let fi = float_to_bigint(fl);
    Some(match i.cmp(&fi) {
        Equal => {
            if f > fl {
                Less
            } else {
                Equal
            }
        }
        o => o,
    })
}

/// The exact integer value of a finite, integral float.
pub fn float_to_bigint(f: f64) -> BigInt {
    if f.abs() < 9.0e15 {
        return BigInt::from(f as i64);
    }
    let (m, e) = frexp(f);
    // f = m * 2**e, m has 53 significant bits.
    let mant = (m * (1u64 << 53) as f64) as i64;
    let b = BigInt::from(mant);
    let shift = e - 53;
    if shift >= 0 {
        b << shift as usize
    } else {
        b >> (-shift) as usize
    }
}

fn int_of(v: &Value) -> Option<BigInt> {
    v.to_bigint()
}

fn num_eq(a: &Value, b: &Value) -> Option<bool> {
    use Value::{BigInt, Bool, Complex, Float, Int};
    Some(match (a, b) {
        (Bool(_) | Int(_), Bool(_) | Int(_)) => a.as_i64() == b.as_i64(),
        (BigInt(x), BigInt(y)) => x == y,
        (BigInt(_), Bool(_) | Int(_)) | (Bool(_) | Int(_), BigInt(_)) => false,
        (Float(x), Float(y)) => x == y,
        (Bool(_) | Int(_) | BigInt(_), Float(f)) | (Float(f), Bool(_) | Int(_) | BigInt(_)) => {
            let i = if let Float(_) = a { b } else { a };
            if let Some(small) = i.as_i64() {
                if small.unsigned_abs() < (1u64 << 53) {
                    return Some(small as f64 == *f);
                }
            }
            cmp_int_float(&int_of(i)?, *f) == Some(std::cmp::Ordering::Equal)
        }
        (Complex(r1, i1), Complex(r2, i2)) => r1 == r2 && i1 == i2,
        (Complex(r, i), other) | (other, Complex(r, i)) => *i == 0.0 && num_eq(&Float(*r), other)?,
        _ => return None,
    })
}

fn eq_at(a: &Value, b: &Value, depth: usize) -> Result<bool, PyErr> {
    stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || eq_at_inner(a, b, depth))
}

fn eq_at_inner(a: &Value, b: &Value, depth: usize) -> Result<bool, PyErr> {
    use Value::{ByteArray, Bytes, Dict, FrozenSet, Global, List, Object, Set, Slice, Str, Tuple};
    if a.is(b) {
        return Ok(true);
    }
    if depth > MAX_COMPARE_DEPTH {
        return Err(PyErr::recursion("in comparison"));
    }
    if let Some(r) = num_eq(a, b) {
        return Ok(r);
    }
    let seq = |x: &[Value], y: &[Value]| -> Result<bool, PyErr> {
        if x.len() != y.len() {
            return Ok(false);
        }
        for (p, q) in x.iter().zip(y) {
            if !eq_at(p, q, depth + 1)? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let sets = |x: &crate::value::Set, y: &crate::value::Set| {
        x.len() == y.len() && x.iter().all(|k| y.contains(k))
    };
    Ok(match (a, b) {
        (Str(x), Str(y)) => x == y,
        (Bytes(x), Bytes(y)) => x == y,
        (Bytes(x), ByteArray(y)) | (ByteArray(y), Bytes(x)) => **x == **y.read_recursive(),
        (ByteArray(x), ByteArray(y)) => *x.read_recursive() == *y.read_recursive(),
        (Tuple(x), Tuple(y)) => seq(x, y)?,
        (List(x), List(y)) => {
            // Copy the items out so no lock is held while comparing (the
            // lists may contain each other).
            let xs: Vec<Value> = x.read_recursive().items.clone();
            let ys: Vec<Value> = y.read_recursive().items.clone();
            seq(&xs, &ys)?
        }
        (Dict(x), Dict(y)) => {
            let xs: Vec<_> = x
                .read_recursive()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let yd = y.read_recursive().items.clone();
            if xs.len() != yd.len() {
                return Ok(false);
            }
            for (k, v) in &xs {
                match yd.get(k) {
                    Some(w) => {
                        if !eq_at(v, w, depth + 1)? {
                            return Ok(false);
                        }
                    }
                    None => return Ok(false),
                }
            }
            true
        }
        (Set(x), Set(y)) => sets(&x.read_recursive(), &y.read_recursive()),
        (Set(x), FrozenSet(y)) | (FrozenSet(y), Set(x)) => sets(&x.read_recursive(), y),
        (FrozenSet(x), FrozenSet(y)) => sets(x, y),
        (Slice(x), Slice(y)) => seq(
            &[x.start.clone(), x.stop.clone(), x.step.clone()],
            &[y.start.clone(), y.stop.clone(), y.step.clone()],
        )?,
        (Global(x), Global(y)) => x == y,
        (Object(x), Object(y)) => {
            let (x, y) = (x.read_recursive().clone(), y.read_recursive().clone());
            let opt = |p: &Option<Value>, q: &Option<Value>| -> Result<bool, PyErr> {
                match (p, q) {
                    (None, None) => Ok(true),
                    (Some(p), Some(q)) => eq_at(p, q, depth + 1),
                    _ => Ok(false),
                }
            };
            x.construct == y.construct
                && eq_at(&x.callable, &y.callable, depth + 1)?
                && eq_at(&x.args, &y.args, depth + 1)?
                && opt(&x.kwargs, &y.kwargs)?
                && opt(&x.state, &y.state)?
                && seq(&x.list_items, &y.list_items)?
                && x.dict_items.len() == y.dict_items.len()
                && {
                    let mut all = true;
                    for ((k1, v1), (k2, v2)) in x.dict_items.iter().zip(&y.dict_items) {
                        if !(eq_at(k1, k2, depth + 1)? && eq_at(v1, v2, depth + 1)?) {
                            all = false;
                            break;
                        }
                    }
                    all
                }
        }
        _ => false,
    })
}

/// Python truthiness (`bool(x)`); opaque objects are true.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::None => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::BigInt(b) => !b.is_zero(),
        Value::Float(f) => *f != 0.0,
        Value::Complex(r, i) => *r != 0.0 || *i != 0.0,
        Value::Str(s) => !s.as_wtf8().is_empty(),
        Value::Bytes(b) => !b.is_empty(),
        Value::ByteArray(b) => !b.read_recursive().is_empty(),
        Value::Tuple(t) => !t.is_empty(),
        Value::List(l) => !l.read_recursive().is_empty(),
        Value::Dict(d) => !d.read_recursive().is_empty(),
        Value::Set(s) => !s.read_recursive().is_empty(),
        Value::FrozenSet(s) => !s.is_empty(),
        Value::Slice(_) | Value::Global(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Key;

    #[test]
    fn numeric_hashes_match_cpython() {
        // Values printed by CPython 3.11: hash(x).
        assert_eq!(hash_f64(0.5), 1152921504606846976);
        assert_eq!(hash_f64(1.5), 1152921504606846977);
        assert_eq!(hash_f64(-2.25), -576460752303423490);
        assert_eq!(hash_f64(1e300), 1224995262755759164);
        assert_eq!(hash_f64(5e-324), 16777216);
        assert_eq!(hash_i64(-1), -2);
        assert_eq!(hash_i64(i64::MAX), 3);
        assert_eq!(hash_bigint(&(BigInt::from(1) << 100)), 549755813888);
        assert_eq!(hash_f64(f64::INFINITY), 314159);
    }

    #[test]
    fn one_equals_one_float_equals_true_as_keys() {
        let k = |v| Key::new(v).unwrap();
        assert!(k(Value::Int(1)) == k(Value::Float(1.0)));
        assert!(k(Value::Int(1)) == k(Value::Bool(true)));
        assert!(k(Value::Float(-0.0)) == k(Value::Int(0)));
        assert!(k(Value::Complex(2.0, 0.0)) == k(Value::Int(2)));
        let big: BigInt = BigInt::from(1) << 70;
        assert!(k(Value::from_bigint(big.clone())) == k(Value::Float(2f64.powi(70))));
        assert!(k(Value::from_bigint(big + 1)) != k(Value::Float(2f64.powi(70))));
        assert!(k(Value::str("a")) != k(Value::bytes(b"a")));
        assert!(
            k(Value::tuple(vec![Value::Int(1), Value::str("x")]))
                == k(Value::tuple(vec![Value::Float(1.0), Value::str("x")]))
        );
        assert!(Key::new(Value::tuple(vec![Value::list(vec![])])).is_err());
        assert!(
            k(Value::frozenset(vec![Value::Int(1), Value::Int(2)]).unwrap())
                == k(Value::frozenset(vec![Value::Int(2), Value::Int(1)]).unwrap())
        );
    }

    #[test]
    fn exact_int_float_equality() {
        let big = Value::from_bigint(BigInt::from(1u64 << 53) + 1);
        assert!(!py_eq(&big, &Value::Float(2f64.powi(53))).unwrap());
        assert!(py_eq(&Value::Int(1 << 53), &Value::Float(2f64.powi(53))).unwrap());
        assert!(!py_eq(&Value::Int(1), &Value::Float(1.5)).unwrap());
        assert!(
            py_eq(&Value::Float(f64::NAN), &Value::Float(f64::NAN)).unwrap(),
            "same NaN bits are identical"
        );
        assert!(!py_eq(&Value::Float(f64::NAN), &Value::Float(-f64::NAN)).unwrap());
    }

    #[test]
    fn self_containing_list_equals_itself_and_distinct_ones_recurse() {
        let a = Value::list(vec![Value::Int(1)]);
        if let Value::List(l) = &a {
            l.write().push(a.clone());
        }
        assert!(py_eq(&a, &a).unwrap());
        let b = Value::list(vec![Value::Int(1)]);
        if let Value::List(l) = &b {
            l.write().push(b.clone());
        }
        let err = py_eq(&a, &b).unwrap_err();
        assert_eq!(err.ty, crate::exc::ExcType::RecursionError);
        // Break the cycles so the test does not leak.
        for v in [&a, &b] {
            if let Value::List(l) = v {
                l.write().clear();
            }
        }
    }
}
