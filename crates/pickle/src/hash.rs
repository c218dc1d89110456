//! Python equality and hashing on the value model.
//!
//! Equality follows `PyObject_RichCompareBool`, which containers use
//! (`in`, `list.count`, `list.index`, dict lookups): identical objects are
//! equal, then values are compared. Numbers compare exactly across `bool`,
//! `int`, `float`, `complex`, `decimal.Decimal` and `fractions.Fraction`
//! (`1 == 1.0 == True`, `2**53 + 1 != 2.0**53`, `Decimal('-0') == 0`,
//! `Decimal('1.5') == 1.5` but `Decimal('1.1') != 1.1`, `Fraction(1, 2) ==
//! Decimal('0.5')`), `bytes == bytearray` by content, `set == frozenset` by
//! members.
//!
//! Hashes agree with equality (equal numbers hash alike, using CPython's
//! modular numeric hash, for `Decimal` and `Fraction` too:
//! `hash(Decimal('1.5')) == hash(1.5) == hash(Fraction(3, 2))`). They never
//! leave the process, so `str` hashes are not CPython's.
//!
//! # NaN
//!
//! A NaN is never equal to anything, itself included; only the identity
//! shortcut of `PyObject_RichCompareBool` (`x is y`) makes a container find
//! the *same* NaN object. Over the wire every NaN a client sends is a fresh
//! object, so in CPython's server `d[float('nan')]` raises `KeyError` and
//! `[nan].count(float('nan'))` is 0. A float has no identity in the value
//! model, so [`Value::is`] is false for two NaN floats (or complexes with a
//! NaN part) whatever their bits: a NaN float never finds itself. A
//! `Decimal` NaN is an opaque object, which has an identity: it finds
//! itself, as in CPython, and nothing else.
//!
//! `Decimal` follows the C `decimal` module (the one CPython uses): a
//! signaling NaN (`Decimal('sNaN')`) compared with `==` to a number raises
//! `decimal.InvalidOperation([<class 'decimal.InvalidOperation'>])`, as
//! the default context traps the signal (inside [`key_eq`] the error counts
//! as "not equal"), and hashing it raises
//! `TypeError: Cannot hash a signaling NaN value`. A quiet `Decimal` NaN
//! hashes to 0 (CPython 3.10+ hashes it by identity; since it is only ever
//! equal to itself, any constant is consistent).
//!
//! A `Decimal` or `Fraction` with more than [`MAX_EXACT_DIGITS`] digits
//! (in its coefficient, numerator or denominator) is not treated as a
//! number: it compares and hashes structurally, like any opaque object, so
//! that no request can make the server spend quadratic time on a huge
//! number.
//!
//! Known differences from CPython, which calls user code the server cannot
//! run: opaque objects compare and hash *structurally* (same class, same
//! arguments and state), not with their class's `__eq__`/`__hash__`. So
//! the `collections` containers, which print as CPython prints them (see
//! [`repr`](mod@crate::repr)), compare structurally too: a `defaultdict` or
//! `Counter` never equals a plain `dict` with the same items, as it would
//! in CPython.
//! They are unhashable (`OrderedDict`, `defaultdict`, `deque`, `Counter`),
//! as in CPython.

use std::hash::Hasher;

use std::sync::Arc;

use num_bigint::{BigInt, BigUint, Sign};
use num_traits::{ToPrimitive, Zero};

use crate::exc::{ExcType, PyErr};
use crate::value::{Construct, Global, Object, Set, Value};

/// Maximum nesting that comparisons and hashes follow before raising
/// `RecursionError` ([`limits::MAX_DEPTH`](crate::limits::MAX_DEPTH)).
pub const MAX_COMPARE_DEPTH: usize = crate::limits::MAX_DEPTH;

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
    // Each call gets its own memo of shared containers (restored after, so
    // a nested call cannot disturb an outer one).
    let outer = HASH_MEMO.with(|m| std::mem::take(&mut *m.borrow_mut()));
    let r = hash_at(v, 0, false);
    HASH_MEMO.with(|m| *m.borrow_mut() = outer);
    r
}

thread_local! {
    /// Hashes of shared containers met during the current [`py_hash`]
    /// call, by `(identity, structural)`: a value built as a DAG (a pickle
    /// can share one tuple under many parents with `DUP`/memo) is hashed
    /// in time linear in its size, not in the size of its tree expansion.
    static HASH_MEMO: std::cell::RefCell<std::collections::HashMap<(usize, bool), i64>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
    /// Results of comparing two shared containers during the current
    /// [`py_eq`] call, by their identities (same reason).
    static EQ_MEMO: std::cell::RefCell<std::collections::HashMap<(usize, usize), bool>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The identity under which a container's result may be memoized: only
/// containers shared by several references can be met twice.
fn memo_key(v: &Value) -> Option<usize> {
    if v.holds_values() && v.strong_count().is_some_and(|n| n > 1) {
        v.identity()
    } else {
        None
    }
}

fn unhashable(v: &Value) -> PyErr {
    PyErr::type_error(format!("unhashable type: '{}'", object_type_name(v)))
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
    let key = memo_key(v).map(|id| (id, structural));
    if let Some(k) = key {
        if let Some(h) = HASH_MEMO.with(|m| m.borrow().get(&k).copied()) {
            return Ok(h);
        }
    }
    let h = stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || {
        hash_at_inner(v, depth, structural)
    })?;
    if let Some(k) = key {
        HASH_MEMO.with(|m| m.borrow_mut().insert(k, h));
    }
    Ok(h)
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
            if let Some(r) = numeric_of(&o) {
                match hash_real_object(&r) {
                    Ok(h) => return Ok(h),
                    // Inside an opaque object's state, a signaling NaN
                    // hashes structurally (CPython would not hash it).
                    Err(_) if structural => {}
                    Err(e) => return Err(e),
                }
            }
            if !structural && is_mutable_collection(&o) {
                drop(o);
                return Err(unhashable(v));
            }
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
    let outer = EQ_MEMO.with(|m| std::mem::take(&mut *m.borrow_mut()));
    let r = eq_at(a, b, 0);
    EQ_MEMO.with(|m| *m.borrow_mut() = outer);
    r
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

// ---------------------------------------------------------------------------
// decimal.Decimal and fractions.Fraction

/// The most digits a `Decimal` coefficient or a `Fraction` numerator or
/// denominator may have and still get numeric semantics
/// ([`limits::INT_MAX_STR_DIGITS`](crate::limits::INT_MAX_STR_DIGITS)).
pub const MAX_EXACT_DIGITS: usize = crate::limits::INT_MAX_STR_DIGITS;
/// [`MAX_EXACT_DIGITS`] in bits (rounded up).
const MAX_EXACT_BITS: u64 = (MAX_EXACT_DIGITS as u64 * 3322).div_ceil(1000);

/// A `decimal.Decimal`, parsed from the string it pickles as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dec {
    /// `(-1)**neg * coef * 10**exp` (`Decimal('-0')` has `neg` set).
    Finite {
        /// The sign.
        neg: bool,
        /// The coefficient.
        coef: BigUint,
        /// The exponent.
        exp: i64,
    },
    /// `Infinity` / `-Infinity`.
    Inf {
        /// The sign.
        neg: bool,
    },
    /// `NaN` or `sNaN` (sign and payload do not matter here).
    NaN {
        /// `sNaN`.
        signaling: bool,
    },
}

/// Parses Python's decimal string syntax (what `str(Decimal)` writes, and
/// what the constructor accepts, without `_` separators or non-ASCII
/// digits): `-1.10`, `1E+3`, `.5`, `Infinity`, `-inf`, `NaN`, `sNaN12`.
pub(crate) fn parse_decimal(s: &str) -> Option<Dec> {
    let s = s.trim();
    if s.len() > MAX_EXACT_DIGITS + 32 {
        return None;
    }
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let digits = |x: &str| x.bytes().all(|c| c.is_ascii_digit());
    if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        return Some(Dec::Inf { neg });
    }
    for (prefix, signaling) in [("snan", true), ("nan", false)] {
        if body.len() >= prefix.len()
            && body.is_char_boundary(prefix.len())
            && body[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            return digits(&body[prefix.len()..]).then_some(Dec::NaN { signaling });
        }
    }
    let (mant, exp_part) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = mant.split_once('.').unwrap_or((mant, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || !digits(int_part) || !digits(frac_part) {
        return None;
    }
    let mut exp: i64 = 0;
    if let Some(e) = exp_part {
        let (eneg, e) = match e.as_bytes().first()? {
            b'-' => (true, &e[1..]),
            b'+' => (false, &e[1..]),
            _ => (false, e),
        };
        if e.is_empty() || !digits(e) {
            return None;
        }
        exp = e.parse().ok()?;
        if eneg {
            exp = -exp;
        }
    }
    let exp = exp.checked_sub(i64::try_from(frac_part.len()).ok()?)?;
    let coef = if frac_part.is_empty() {
        int_part.parse::<BigUint>().ok()?
    } else {
        format!("{int_part}{frac_part}").parse::<BigUint>().ok()?
    };
    Some(Dec::Finite { neg, coef, exp })
}

/// A real number of one of Python's numeric types.
#[derive(Clone, Debug)]
pub(crate) enum Real {
    /// `bool` or `int`.
    Int(BigInt),
    /// `float`.
    Float(f64),
    /// `decimal.Decimal`.
    Dec(Dec),
    /// `fractions.Fraction(numerator, denominator)`, normalized
    /// (`denominator > 0`, no common factor).
    Frac(BigInt, BigInt),
}

impl Real {
    /// True for a `Decimal`.
    pub(crate) fn is_decimal(&self) -> bool {
        matches!(self, Real::Dec(_))
    }

    /// True for a signaling `Decimal` NaN.
    pub(crate) fn is_snan(&self) -> bool {
        matches!(self, Real::Dec(Dec::NaN { signaling: true }))
    }

    fn exact(&self) -> Exact {
        match self {
            Real::Int(i) => Exact::Fin {
                num: i.clone(),
                den: BigInt::from(1),
                exp10: 0,
            },
            Real::Float(f) if f.is_nan() => Exact::NaN,
            Real::Float(f) if f.is_infinite() => Exact::Inf { neg: *f < 0.0 },
            Real::Float(f) => {
                let (m, e) = float_parts(*f);
                if e >= 0 {
                    Exact::Fin {
                        num: BigInt::from(m) << e as usize,
                        den: BigInt::from(1),
                        exp10: 0,
                    }
                } else {
                    Exact::Fin {
                        num: BigInt::from(m),
                        den: BigInt::from(1) << (-e) as usize,
                        exp10: 0,
                    }
                }
            }
            Real::Dec(Dec::Finite { neg, coef, exp }) => Exact::Fin {
                num: BigInt::from_biguint(
                    if *neg { Sign::Minus } else { Sign::Plus },
                    coef.clone(),
                ),
                den: BigInt::from(1),
                exp10: *exp,
            },
            Real::Dec(Dec::Inf { neg }) => Exact::Inf { neg: *neg },
            Real::Dec(Dec::NaN { .. }) => Exact::NaN,
            Real::Frac(n, d) => Exact::Fin {
                num: n.clone(),
                den: d.clone(),
                exp10: 0,
            },
        }
    }
}

/// `f == m * 2**e` exactly, for a finite float (`m` signed).
fn float_parts(f: f64) -> (i64, i32) {
    let bits = f.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = (bits & ((1u64 << 52) - 1)) as i64;
    let (m, e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1i64 << 52), exp - 1075)
    };
    (if f.is_sign_negative() { -m } else { m }, e)
}

/// An exact real: `num / den * 10**exp10` (`den > 0`), or an infinity, or NaN.
enum Exact {
    Fin {
        num: BigInt,
        den: BigInt,
        exp10: i64,
    },
    Inf {
        neg: bool,
    },
    NaN,
}

/// Exact ordering of two reals; `None` if either is a NaN.
///
/// Values whose decimal exponents are far apart are told apart by size
/// first, so `Decimal('1e999999999')` never builds a billion-digit number.
pub(crate) fn cmp_real(a: &Real, b: &Real) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering::*;
    Some(match (a.exact(), b.exact()) {
        (Exact::NaN, _) | (_, Exact::NaN) => return None,
        (Exact::Inf { neg: x }, Exact::Inf { neg: y }) => y.cmp(&x),
        (Exact::Inf { neg }, Exact::Fin { .. }) => {
            if neg {
                Less
            } else {
                Greater
            }
        }
        (Exact::Fin { .. }, Exact::Inf { neg }) => {
            if neg {
                Greater
            } else {
                Less
            }
        }
        (
            Exact::Fin {
                num: na,
                den: da,
                exp10: ea,
            },
            Exact::Fin {
                num: nb,
                den: db,
                exp10: eb,
            },
        ) => {
            let sign = |n: &BigInt| match n.sign() {
                Sign::Minus => -1,
                Sign::NoSign => 0,
                Sign::Plus => 1,
            };
            let (sa, sb) = (sign(&na), sign(&nb));
            if sa != sb || sa == 0 {
                return Some(sa.cmp(&sb));
            }
            // Both nonzero, same sign: compare |na|*db*10**ea with |nb|*da*10**eb.
            let x = na.magnitude() * db.magnitude();
            let y = nb.magnitude() * da.magnitude();
            let k = ea as i128 - eb as i128;
            let ten = |k: i128| BigUint::from(10u32).pow(k as u32);
            // x, y >= 1 and 10**k > 2**(3k) for k >= 1: if 3k >= bits(y),
            // x * 10**k > y.
            let mag = if k >= 0 {
                if k * 3 >= y.bits() as i128 {
                    Greater
                } else {
                    (x * ten(k)).cmp(&y)
                }
            } else if -k * 3 >= x.bits() as i128 {
                Less
            } else {
                x.cmp(&(y * ten(-k)))
            };
            if sa < 0 {
                mag.reverse()
            } else {
                mag
            }
        }
    })
}

/// The `Decimal` or `Fraction` an opaque object is, if it is one: a plain
/// `REDUCE(decimal.Decimal, ('1.5',))` (module `decimal`, `_decimal` or
/// `_pydecimal`), or `REDUCE(fractions.Fraction, ('1/3',))` (3.8–3.11) /
/// `(1, 3)` (3.12+).
pub(crate) fn numeric_of(o: &Object) -> Option<Real> {
    if o.construct != Construct::Reduce
        || o.state.is_some()
        || o.kwargs.is_some()
        || !o.list_items.is_empty()
        || !o.dict_items.is_empty()
    {
        return None;
    }
    let g = o.global()?;
    match (&*g.module, &*g.name) {
        ("decimal" | "_decimal" | "_pydecimal", "Decimal") => match o.args_slice() {
            [Value::Str(s)] => parse_decimal(s.as_str()?).map(Real::Dec),
            _ => None,
        },
        ("fractions", "Fraction") => {
            let args = o.args_slice();
            let small = |v: &Value| match v {
                Value::Str(s) => s.as_wtf8().len() <= 2 * MAX_EXACT_DIGITS + 8,
                Value::BigInt(b) => b.bits() <= MAX_EXACT_BITS,
                _ => true,
            };
            if !args.iter().all(small) {
                return None;
            }
            crate::repr::fraction(args).map(|(n, d)| Real::Frac(n, d))
        }
        _ => None,
    }
}

/// [`numeric_of`] for a value.
pub(crate) fn numeric_object(v: &Value) -> Option<Real> {
    match v {
        Value::Object(o) => numeric_of(&o.read_recursive()),
        _ => None,
    }
}

/// Any real number: `bool`, `int`, `float`, `Decimal`, `Fraction`.
pub(crate) fn real_of(v: &Value) -> Option<Real> {
    match v {
        Value::Bool(b) => Some(Real::Int(BigInt::from(*b as i64))),
        Value::Int(i) => Some(Real::Int(BigInt::from(*i))),
        Value::BigInt(b) => Some(Real::Int((**b).clone())),
        Value::Float(f) => Some(Real::Float(*f)),
        Value::Object(_) => numeric_object(v),
        _ => None,
    }
}

/// `decimal.InvalidOperation([<class 'decimal.InvalidOperation'>])`, what
/// the C `decimal` module raises when a trapped signal fires.
pub(crate) fn invalid_operation() -> PyErr {
    let cls = Global::new("decimal", "InvalidOperation");
    PyErr::with_args(
        ExcType::Other(Arc::new(cls.clone())),
        vec![Value::list(vec![Value::Global(Arc::new(cls))])],
    )
}

/// `a == b` where one side is a `Decimal` or `Fraction`; `None` if the
/// other side is not a number (the caller goes on with its other rules).
fn numeric_object_eq(a: &Value, b: &Value) -> Option<Result<bool, PyErr>> {
    let (oa, ob) = (numeric_object(a), numeric_object(b));
    if oa.is_none() && ob.is_none() {
        return None;
    }
    // `Some(None)`: a complex with a nonzero imaginary part, never equal.
    let side = |v: &Value, o: Option<Real>| -> Option<Option<Real>> {
        match (o, v) {
            (Some(r), _) => Some(Some(r)),
            (None, Value::Complex(re, im)) => Some((*im == 0.0).then_some(Real::Float(*re))),
            (None, v) => real_of(v).map(Some),
        }
    };
    let (x, y) = (side(a, oa)?, side(b, ob)?);
    let (Some(x), Some(y)) = (x, y) else {
        return Some(Ok(false));
    };
    if x.is_snan() || y.is_snan() {
        return Some(Err(invalid_operation()));
    }
    Some(Ok(cmp_real(&x, &y) == Some(std::cmp::Ordering::Equal)))
}

/// `x**e mod MODULUS`.
fn modpow(x: u64, mut e: u64) -> u64 {
    let m = MODULUS as u128;
    let mut acc: u128 = 1;
    let mut x = (x % MODULUS) as u128;
    while e > 0 {
        if e & 1 == 1 {
            acc = acc * x % m;
        }
        x = x * x % m;
        e >>= 1;
    }
    acc as u64
}

fn mod_p(b: &BigUint) -> u64 {
    (b % BigUint::from(MODULUS)).to_u64().unwrap_or(0)
}

/// The hash of a `Decimal` or `Fraction`, as CPython computes it
/// (`_pydecimal.Decimal.__hash__`, `Fraction.__hash__`): the modular hash
/// of the rational value, so it agrees with equal ints and floats.
fn hash_real_object(r: &Real) -> Result<i64, PyErr> {
    let signed = |neg: bool, h: u64| fix(if neg { -(h as i64) } else { h as i64 });
    Ok(match r {
        Real::Dec(Dec::NaN { signaling: true }) => {
            return Err(PyErr::type_error("Cannot hash a signaling NaN value"))
        }
        Real::Dec(Dec::NaN { signaling: false }) => 0,
        Real::Dec(Dec::Inf { neg }) => {
            if *neg {
                -HASH_INF
            } else {
                HASH_INF
            }
        }
        Real::Dec(Dec::Finite { neg, coef, exp }) => {
            // 10**-1 mod P is 10**(P - 2).
            let exp_hash = if *exp >= 0 {
                modpow(10, *exp as u64)
            } else {
                modpow(modpow(10, MODULUS - 2), exp.unsigned_abs())
            };
            let h = (mod_p(coef) as u128 * exp_hash as u128 % MODULUS as u128) as u64;
            signed(*neg, h)
        }
        Real::Frac(n, d) => {
            let dm = mod_p(d.magnitude());
            let h = if dm == 0 {
                HASH_INF as u64
            } else {
                (mod_p(n.magnitude()) as u128 * modpow(dm, MODULUS - 2) as u128 % MODULUS as u128)
                    as u64
            };
            signed(n.sign() == Sign::Minus, h)
        }
        Real::Int(i) => hash_bigint(i),
        Real::Float(f) => hash_f64(*f),
    })
}

/// The name CPython's messages give an opaque object's type
/// (`type(x).__name__` for classes written in Python, the C type's
/// `tp_name` — with its module — for the standard library's C types).
pub(crate) fn object_type_name(v: &Value) -> String {
    if let Value::Object(o) = v {
        let o = o.read_recursive();
        if let Some(g) = o.new_of().map(|(g, _)| g).or_else(|| o.global()) {
            let c_type = matches!(
                (&*g.module, &*g.name),
                ("decimal" | "_decimal", "Decimal")
                    | ("collections", "OrderedDict" | "defaultdict" | "deque")
                    | (
                        "datetime",
                        "date" | "datetime" | "time" | "timedelta" | "timezone"
                    )
                    | ("array", "array")
            );
            if c_type {
                let m = if &*g.module == "_decimal" {
                    "decimal"
                } else {
                    &g.module
                };
                return format!("{m}.{}", g.name);
            }
            return g.name.rsplit('.').next().unwrap_or(&g.name).to_string();
        }
    }
    v.type_name()
}

/// The known mutable containers of `collections` (unhashable in CPython).
fn is_mutable_collection(o: &Object) -> bool {
    o.construct == Construct::Reduce
        && o.global().is_some_and(|g| {
            &*g.module == "collections"
                && matches!(
                    &*g.name,
                    "OrderedDict" | "defaultdict" | "deque" | "Counter"
                )
        })
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
    let key = match (memo_key(a), memo_key(b)) {
        (Some(x), Some(y)) => Some((x, y)),
        _ => None,
    };
    if let Some(k) = key {
        if let Some(r) = EQ_MEMO.with(|m| m.borrow().get(&k).copied()) {
            return Ok(r);
        }
    }
    let r = stacker::maybe_grow(RED_ZONE, STACK_GROWTH, || eq_at_inner(a, b, depth))?;
    if let Some(k) = key {
        EQ_MEMO.with(|m| m.borrow_mut().insert(k, r));
    }
    Ok(r)
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
    if matches!(a, Object(_)) || matches!(b, Object(_)) {
        if let Some(r) = numeric_object_eq(a, b) {
            return r;
        }
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

/// Python truthiness (`bool(x)`); opaque objects are true, except a zero
/// `Decimal` or `Fraction`.
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
        Value::Object(o) => match numeric_of(&o.read_recursive()) {
            Some(Real::Dec(Dec::Finite { coef, .. })) => !coef.is_zero(),
            Some(Real::Frac(n, _)) => !n.is_zero(),
            _ => true,
        },
        Value::Slice(_) | Value::Global(_) => true,
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
    }

    #[test]
    fn nan_is_never_identical_nor_equal() {
        let nan = Value::Float(f64::NAN);
        assert!(!nan.is(&nan.clone()), "a NaN float has no identity");
        assert!(!py_eq(&nan, &nan.clone()).unwrap());
        assert!(!py_eq(&nan, &Value::Float(-f64::NAN)).unwrap());
        let cnan = Value::Complex(1.0, f64::NAN);
        assert!(!cnan.is(&cnan.clone()) && !py_eq(&cnan, &cnan.clone()).unwrap());
        let cnan = Value::Complex(f64::NAN, 0.0);
        assert!(!cnan.is(&cnan.clone()) && !py_eq(&cnan, &cnan.clone()).unwrap());
        // As a dict key, a NaN is found by no other key, itself included.
        let k = Key::new(nan.clone()).unwrap();
        assert!(k != k.clone());
        // Other floats keep their identity and equality.
        assert!(Value::Float(1.5).is(&Value::Float(1.5)));
        assert!(Value::Complex(1.0, -0.0).is(&Value::Complex(1.0, -0.0)));
        // A containing tuple is identical to itself, so it finds itself.
        let t = Value::tuple(vec![nan]);
        assert!(py_eq(&t, &t.clone()).unwrap());
        assert!(!py_eq(&t, &Value::tuple(vec![Value::Float(f64::NAN)])).unwrap());
    }

    #[test]
    fn decimal_strings_parse_as_the_decimal_constructor_reads_them() {
        let fin = |neg: bool, coef: u64, exp: i64| {
            Some(Dec::Finite {
                neg,
                coef: BigUint::from(coef),
                exp,
            })
        };
        assert_eq!(parse_decimal("1.10"), fin(false, 110, -2));
        assert_eq!(parse_decimal("-0"), fin(true, 0, 0));
        assert_eq!(parse_decimal(" +.5 "), fin(false, 5, -1));
        assert_eq!(parse_decimal("1."), fin(false, 1, 0));
        assert_eq!(parse_decimal("2.25E+2"), fin(false, 225, 0));
        assert_eq!(parse_decimal("1e-7"), fin(false, 1, -7));
        assert_eq!(parse_decimal("0E-7"), fin(false, 0, -7));
        assert_eq!(parse_decimal("-Infinity"), Some(Dec::Inf { neg: true }));
        assert_eq!(parse_decimal("inf"), Some(Dec::Inf { neg: false }));
        assert_eq!(parse_decimal("-NaN"), Some(Dec::NaN { signaling: false }));
        assert_eq!(parse_decimal("sNaN12"), Some(Dec::NaN { signaling: true }));
        for bad in [
            "",
            "-",
            ".",
            "1..2",
            "e5",
            "1e",
            "1e+",
            "nan1x",
            "1_0",
            "0x1",
            "Infinity1",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        // An exponent beyond i64 is not a number the model handles.
        assert_eq!(parse_decimal("1E+99999999999999999999"), None);
    }

    #[test]
    fn decimal_and_fraction_hashes_match_cpython() {
        // Values printed by CPython 3.11: hash(x).
        let h = |r: Real| hash_real_object(&r).unwrap();
        let dec = |s: &str| Real::Dec(parse_decimal(s).unwrap());
        assert_eq!(h(dec("1.5")), hash_f64(1.5));
        assert_eq!(h(dec("-0")), 0);
        assert_eq!(h(dec("1E-1000")), 2080493841679496175);
        assert_eq!(
            h(Real::Frac(BigInt::from(1), BigInt::from(3))),
            1537228672809129301
        );
        assert_eq!(
            h(Real::Frac(BigInt::from(-3), BigInt::from(2))),
            hash_f64(-1.5)
        );
        assert_eq!(h(dec("-Infinity")), -HASH_INF);
        assert!(hash_real_object(&dec("sNaN")).is_err());
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
