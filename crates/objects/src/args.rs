//! Argument checking and conversion helpers with CPython's error texts.
//!
//! CPython builtins use a handful of argument-checking styles, each with its
//! own `TypeError` wording (texts of CPython 3.13):
//!
//! | style | example text | helper |
//! |---|---|---|
//! | `METH_O` | `list.append() takes exactly one argument (0 given)` | [`one`] |
//! | `METH_NOARGS` | `list.reverse() takes no arguments (1 given)` | [`none`] |
//! | slot wrapper | `expected 1 argument, got 0` | [`slot`] |
//! | `_PyArg_CheckPositional` | `pop expected at most 1 argument, got 2` | [`range`] |
//! | no keywords | `list.append() takes no keyword arguments` | [`no_kwargs`] |
//!
//! They are public so that custom [`Referent`](crate::Referent)s can use them.

use mpmanager_pickle::{ExcType, PyErr, Slice, Value};
use num_bigint::Sign;

/// `METH_O`: exactly one positional argument.
///
/// ```
/// use mpmanager_objects::args;
/// use mpmanager_pickle::Value;
/// let e = args::one("list.append", &[]).unwrap_err();
/// assert_eq!(e.to_string(), "TypeError: list.append() takes exactly one argument (0 given)");
/// assert!(args::one("list.append", &[Value::Int(1)]).is_ok());
/// ```
pub fn one<'a>(qualname: &str, args: &'a [Value]) -> Result<&'a Value, PyErr> {
    match args {
        [a] => Ok(a),
        _ => Err(PyErr::type_error(format!(
            "{qualname}() takes exactly one argument ({} given)",
            args.len()
        ))),
    }
}

/// `METH_NOARGS`: no positional arguments.
pub fn none(qualname: &str, args: &[Value]) -> Result<(), PyErr> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(PyErr::type_error(format!(
            "{qualname}() takes no arguments ({} given)",
            args.len()
        )))
    }
}

/// A slot wrapper (`__len__`, `__setitem__`, …): exactly `n` arguments.
///
/// CPython checks two-argument slots (`__setitem__`, `__setattr__`) with
/// `PyArg_UnpackTuple(args, "", 2, 2)`, whose text starts with a space:
/// `' expected 2 arguments, got 1'`; that quirk is kept.
///
/// ```
/// use mpmanager_objects::args;
/// let e = args::slot::<1>(&[]).unwrap_err();
/// assert_eq!(e.to_string(), "TypeError: expected 1 argument, got 0");
/// ```
pub fn slot<const N: usize>(args: &[Value]) -> Result<[&Value; N], PyErr> {
    if args.len() != N {
        return Err(PyErr::type_error(format!(
            "{}expected {N} argument{}, got {}",
            if N >= 2 { " " } else { "" },
            if N == 1 { "" } else { "s" },
            args.len()
        )));
    }
    Ok(std::array::from_fn(|i| &args[i]))
}

/// Exactly `N` positional arguments, checked as `_PyArg_CheckPositional`
/// words it when `min == max`: `insert expected 2 arguments, got 1`.
pub fn exact<'a, const N: usize>(name: &str, args: &'a [Value]) -> Result<[&'a Value; N], PyErr> {
    range(name, args, N, N)?;
    Ok(std::array::from_fn(|i| &args[i]))
}

/// Between `min` and `max` positional arguments, with
/// `_PyArg_CheckPositional`'s texts: `index expected at least 1 argument,
/// got 0`, `pop expected at most 1 argument, got 2`.
///
/// ```
/// use mpmanager_objects::args;
/// use mpmanager_pickle::Value;
/// let two = [Value::Int(1), Value::Int(2)];
/// assert_eq!(args::range("pop", &two, 0, 1).unwrap_err().to_string(),
///            "TypeError: pop expected at most 1 argument, got 2");
/// ```
pub fn range(name: &str, args: &[Value], min: usize, max: usize) -> Result<(), PyErr> {
    let n = args.len();
    let plural = |k: usize| if k == 1 { "" } else { "s" };
    if n < min {
        let how = if min == max { "" } else { "at least " };
        return Err(PyErr::type_error(format!(
            "{name} expected {how}{min} argument{}, got {n}",
            plural(min)
        )));
    }
    if n > max {
        let how = if min == max { "" } else { "at most " };
        return Err(PyErr::type_error(format!(
            "{name} expected {how}{max} argument{}, got {n}",
            plural(max)
        )));
    }
    Ok(())
}

/// No keyword arguments allowed: `list.append() takes no keyword arguments`.
pub fn no_kwargs(qualname: &str, kwargs: &crate::Kwargs) -> Result<(), PyErr> {
    if kwargs.is_empty() {
        Ok(())
    } else {
        Err(PyErr::type_error(format!(
            "{qualname}() takes no keyword arguments"
        )))
    }
}

/// `AttributeError: 'list' object has no attribute 'x'`.
pub fn no_attribute(class: &str, name: &str) -> PyErr {
    let short = class.rsplit('.').next().unwrap_or(class);
    PyErr::new(
        ExcType::AttributeError,
        format!("'{short}' object has no attribute '{name}'"),
    )
}

/// An integer argument as `__index__` sees it (`int` or `bool`):
/// `Some(Ok(i))` if it fits in an `i64`, `Some(Err(negative))` if it does
/// not, `None` if it is not an integer at all.
pub fn int_like(v: &Value) -> Option<Result<i64, bool>> {
    match v {
        Value::Int(i) => Some(Ok(*i)),
        Value::Bool(b) => Some(Ok(*b as i64)),
        Value::BigInt(b) => Some(Err(b.sign() == Sign::Minus)),
        _ => None,
    }
}

/// `TypeError: '<' not supported between instances of 'str' and 'int'`.
pub(crate) fn compare_error(op: &str, left: &str, right: &str) -> PyErr {
    PyErr::type_error(format!(
        "'{op}' not supported between instances of '{left}' and '{right}'"
    ))
}

/// An integer argument that the Python code compares with a bound before
/// using it (`Barrier(parties)`, `Semaphore(value)`, `release(n)`):
/// `Ok(None)` if it is not an integer (the caller says which `TypeError`),
/// an integer below `i64::MIN` as `i64::MIN` (every such bound rejects it
/// as too small), and `OverflowError: mpmanager: <what> must fit in 64
/// bits` above `i64::MAX`.
pub(crate) fn bounded_int(v: &Value, what: &str) -> Result<Option<i64>, PyErr> {
    match int_like(v) {
        Some(Ok(i)) => Ok(Some(i)),
        Some(Err(true)) => Ok(Some(i64::MIN)),
        Some(Err(false)) => Err(PyErr::new(
            ExcType::OverflowError,
            format!("mpmanager: {what} must fit in 64 bits"),
        )),
        None => Ok(None),
    }
}

/// `operator.index(v)` clamped to a Python `Py_ssize_t`: `TypeError:
/// 'str' object cannot be interpreted as an integer`; too large →
/// `OverflowError: cannot fit 'int' into an index-sized integer`.
///
/// ```
/// use mpmanager_objects::args;
/// use mpmanager_pickle::Value;
/// assert_eq!(args::index(&Value::Bool(true)).unwrap(), 1);
/// assert_eq!(args::index(&Value::str("a")).unwrap_err().to_string(),
///            "TypeError: 'str' object cannot be interpreted as an integer");
/// ```
pub fn index(v: &Value) -> Result<i64, PyErr> {
    match int_like(v) {
        Some(Ok(i)) => Ok(i),
        Some(Err(_)) => Err(PyErr::new(
            ExcType::OverflowError,
            "cannot fit 'int' into an index-sized integer",
        )),
        None => Err(PyErr::type_error(format!(
            "'{}' object cannot be interpreted as an integer",
            v.type_name()
        ))),
    }
}

/// A sequence index (`list[i]`): an integer, normalised against `len`
/// (negative counts from the end). Returns `None` when out of range; the
/// caller raises its own `IndexError`. A non-integer raises `TypeError`
/// with `what`, e.g. `list indices must be integers or slices, not str`.
pub(crate) fn seq_index(v: &Value, len: usize, what: &str) -> Result<Option<usize>, PyErr> {
    let i = match int_like(v) {
        Some(Ok(i)) => i,
        Some(Err(_)) => {
            return Err(PyErr::index_error(
                "cannot fit 'int' into an index-sized integer",
            ))
        }
        None => {
            return Err(PyErr::type_error(format!(
                "{what} indices must be integers or slices, not {}",
                v.type_name()
            )))
        }
    };
    let len = len as i64;
    let i = if i < 0 { i + len } else { i };
    Ok(if (0..len).contains(&i) {
        Some(i as usize)
    } else {
        None
    })
}

/// A resolved slice: `PySlice_Unpack` + `PySlice_AdjustIndices`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceIndices {
    /// First index.
    pub start: i64,
    /// Stop (exclusive, may be -1 for negative steps).
    pub stop: i64,
    /// Step (never 0).
    pub step: i64,
    /// Number of items selected.
    pub len: usize,
}

impl SliceIndices {
    /// The selected indices, in order.
    pub fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).map(move |k| (self.start + k as i64 * self.step) as usize)
    }
}

fn slice_part(v: &Value, default: i64) -> Result<i64, PyErr> {
    match v {
        Value::None => Ok(default),
        _ => match int_like(v) {
            Some(Ok(i)) => Ok(i),
            // _PyEval_SliceIndex clamps big ints to PY_SSIZE_T_MIN/MAX.
            Some(Err(true)) => Ok(i64::MIN),
            Some(Err(false)) => Ok(i64::MAX),
            None => Err(PyErr::type_error(
                "slice indices must be integers or None or have an __index__ method",
            )),
        },
    }
}

/// Resolves `slice` against a sequence of length `len`, as `list` does.
///
/// ```
/// use mpmanager_objects::args::slice_indices;
/// use mpmanager_pickle::{Slice, Value};
/// let s = Slice { start: Value::None, stop: Value::None, step: Value::Int(-2) };
/// let r = slice_indices(&s, 5).unwrap();
/// assert_eq!(r.indices().collect::<Vec<_>>(), vec![4, 2, 0]);
/// ```
pub fn slice_indices(slice: &Slice, len: usize) -> Result<SliceIndices, PyErr> {
    let step = match &slice.step {
        Value::None => 1,
        v => slice_part(v, 1)?,
    };
    if step == 0 {
        return Err(PyErr::value_error("slice step cannot be zero"));
    }
    // PySlice_Unpack clamps step to -PY_SSIZE_T_MAX.
    let step = step.max(-i64::MAX);
    let (dstart, dstop) = if step < 0 {
        (i64::MAX, i64::MIN)
    } else {
        (0, i64::MAX)
    };
    let mut start = slice_part(&slice.start, dstart)?;
    let mut stop = slice_part(&slice.stop, dstop)?;
    let len = len as i64;
    let adjust = |x: &mut i64| {
        if *x < 0 {
            *x = x.saturating_add(len);
            if *x < 0 {
                *x = if step < 0 { -1 } else { 0 };
            }
        } else if *x >= len {
            *x = if step < 0 { len - 1 } else { len };
        }
    };
    adjust(&mut start);
    adjust(&mut stop);
    let n = if step < 0 {
        if stop < start {
            (start - stop - 1) / (-step) + 1
        } else {
            0
        }
    } else if start < stop {
        (stop - start - 1) / step + 1
    } else {
        0
    };
    Ok(SliceIndices {
        start,
        stop,
        step,
        len: n as usize,
    })
}

/// `list(v)` for the iterables a client can send: `list`, `tuple`, `str`
/// (its characters), `bytes`/`bytearray` (ints), `dict` (keys), `set`,
/// `frozenset`, `range` (pickled as `builtins.range(start, stop, step)`).
/// Anything else: `TypeError: 'int' object is not iterable`.
///
/// ```
/// use mpmanager_objects::args::iterate;
/// use mpmanager_pickle::Value;
/// assert_eq!(iterate(&Value::str("ab")).unwrap().len(), 2);
/// assert_eq!(iterate(&Value::bytes(b"\x05")).unwrap()[0].as_i64(), Some(5));
/// assert!(iterate(&Value::Int(3)).is_err());
/// // range(1, 7, 2), as `m.list(range(1, 7, 2))` sends it
/// let r = Value::object(mpmanager_pickle::Object::reduce(
///     Value::global("builtins", "range"),
///     vec![Value::Int(1), Value::Int(7), Value::Int(2)],
/// ));
/// let items: Vec<i64> = iterate(&r).unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
/// assert_eq!(items, [1, 3, 5]);
/// ```
pub fn iterate(v: &Value) -> Result<Vec<Value>, PyErr> {
    if let Some(r) = range_args(v) {
        return range_items(r);
    }
    Ok(match v {
        Value::List(l) => l.read_recursive().items.clone(),
        Value::Tuple(t) => t.items.clone(),
        Value::Str(s) => s
            .code_points()
            .map(|c| {
                Value::Str(
                    mpmanager_pickle::PyStr::from_code_points([c]).expect("valid code point"),
                )
            })
            .collect(),
        Value::Bytes(b) => b.iter().map(|&x| Value::Int(x as i64)).collect(),
        Value::ByteArray(b) => b
            .read_recursive()
            .iter()
            .map(|&x| Value::Int(x as i64))
            .collect(),
        Value::Dict(d) => d
            .read_recursive()
            .keys()
            .map(|k| k.value().clone())
            .collect(),
        Value::Set(s) => s
            .read_recursive()
            .iter()
            .map(|k| k.value().clone())
            .collect(),
        Value::FrozenSet(s) => s.iter().map(|k| k.value().clone()).collect(),
        other => {
            return Err(PyErr::type_error(format!(
                "'{}' object is not iterable",
                other.type_name()
            )))
        }
    })
}

/// `(start, stop, step)` if `v` is a pickled `range` with `int` bounds.
fn range_args(v: &Value) -> Option<(i64, i64, i64)> {
    let Value::Object(o) = v else { return None };
    let o = o.read_recursive();
    if !matches!(o.construct, mpmanager_pickle::Construct::Reduce)
        || !o.global()?.is("builtins", "range")
        || o.state.is_some()
    {
        return None;
    }
    match o.args_slice() {
        [a, b, c] => Some((a.as_i64()?, b.as_i64()?, c.as_i64()?)),
        _ => None,
    }
}

/// The items of `range(start, stop, step)`.
fn range_items((start, stop, step): (i64, i64, i64)) -> Result<Vec<Value>, PyErr> {
    if step == 0 {
        return Err(PyErr::value_error("range() arg 3 must not be zero"));
    }
    let (start, stop, step) = (start as i128, stop as i128, step as i128);
    let n = if step > 0 && start < stop {
        (stop - start - 1) / step + 1
    } else if step < 0 && start > stop {
        (start - stop - 1) / (-step) + 1
    } else {
        0
    };
    let mut out = alloc_values(usize::try_from(n).map_err(|_| memory_error())?)?;
    out.extend((0..n).map(|i| Value::Int((start + i * step) as i64)));
    Ok(out)
}

/// True if `v` is an iterable [`iterate`] accepts.
pub(crate) fn is_iterable(v: &Value) -> bool {
    range_args(v).is_some()
        || matches!(
            v,
            Value::List(_)
                | Value::Tuple(_)
                | Value::Str(_)
                | Value::Bytes(_)
                | Value::ByteArray(_)
                | Value::Dict(_)
                | Value::Set(_)
                | Value::FrozenSet(_)
        )
}

/// `MemoryError()` (no message), as CPython raises for impossible sizes.
pub(crate) fn memory_error() -> PyErr {
    PyErr::with_args(ExcType::MemoryError, vec![])
}

/// Allocates room for `n` values or fails with `MemoryError`.
pub(crate) fn alloc_values(n: usize) -> Result<Vec<Value>, PyErr> {
    // CPython's limit is PY_SSIZE_T_MAX / sizeof(PyObject *); anything
    // beyond a few GiB would abort the server, so refuse it politely.
    const MAX_ITEMS: usize = 1 << 28;
    if n > MAX_ITEMS {
        return Err(memory_error());
    }
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| memory_error())?;
    Ok(v)
}

/// A `Py_ssize_t` argument converted by Argument Clinic (`list.pop(i)`,
/// `list.insert(i, x)`): like [`index`], but an `int` too large is
/// `OverflowError: Python int too large to convert to C ssize_t`.
pub fn ssize(v: &Value) -> Result<i64, PyErr> {
    match int_like(v) {
        Some(Err(_)) => Err(PyErr::new(
            ExcType::OverflowError,
            "Python int too large to convert to C ssize_t",
        )),
        _ => index(v),
    }
}

/// Binds `args`/`kwargs` to the parameters of a Python function defined
/// as `def qualname(self, p1, p2=default, …)`, with CPython's error texts
/// (`Value.__init__() missing 1 required positional argument: 'value'`,
/// `… takes from 3 to 4 positional arguments but 5 were given`, `… got an
/// unexpected keyword argument 'x'`). `params` are `(name, default)`; the
/// implicit `self` is counted in the messages as Python does.
///
/// ```
/// use mpmanager_objects::{args::bind, Kwargs};
/// use mpmanager_pickle::Value;
/// let p = [("typecode", None), ("value", None), ("lock", Some(Value::Bool(true)))];
/// let got = bind("Value.__init__", &p, &[Value::str("i"), Value::Int(3)], &Kwargs::new()).unwrap();
/// assert_eq!(got[1].as_i64(), Some(3));
/// let e = bind("Value.__init__", &p, &[Value::str("i")], &Kwargs::new()).unwrap_err();
/// assert_eq!(e.to_string(), "TypeError: Value.__init__() missing 1 required positional argument: 'value'");
/// ```
pub fn bind(
    qualname: &str,
    params: &[(&str, Option<Value>)],
    args: &[Value],
    kwargs: &crate::Kwargs,
) -> Result<Vec<Value>, PyErr> {
    let max = params.len();
    let min = params.iter().filter(|(_, d)| d.is_none()).count();
    if args.len() > max {
        let takes = if min == max {
            format!(
                "{} positional argument{}",
                max + 1,
                if max == 0 { "" } else { "s" }
            )
        } else {
            format!("from {} to {} positional arguments", min + 1, max + 1)
        };
        let given = args.len() + 1;
        return Err(PyErr::type_error(format!(
            "{qualname}() takes {takes} but {given} {} given",
            if given == 1 { "was" } else { "were" }
        )));
    }
    let mut slots: Vec<Option<Value>> = args.iter().cloned().map(Some).collect();
    slots.resize(max, None);
    for (k, v) in kwargs.iter() {
        match params.iter().position(|(n, _)| *n == k) {
            Some(i) if i < args.len() => {
                return Err(PyErr::type_error(format!(
                    "{qualname}() got multiple values for argument '{k}'"
                )))
            }
            Some(i) => slots[i] = Some(v.clone()),
            None => {
                return Err(PyErr::type_error(format!(
                    "{qualname}() got an unexpected keyword argument '{k}'"
                )))
            }
        }
    }
    let missing: Vec<&str> = params
        .iter()
        .zip(&slots)
        .filter(|((_, d), s)| d.is_none() && s.is_none())
        .map(|((n, _), _)| *n)
        .collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|n| format!("'{n}'")).collect();
        let list = match names.len() {
            1 => names[0].clone(),
            2 => format!("{} and {}", names[0], names[1]),
            _ => format!(
                "{}, and {}",
                names[..names.len() - 1].join(", "),
                names[names.len() - 1]
            ),
        };
        return Err(PyErr::type_error(format!(
            "{qualname}() missing {} required positional argument{}: {list}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" }
        )));
    }
    Ok(slots
        .into_iter()
        .zip(params)
        .map(|(s, (_, d))| s.or_else(|| d.clone()).expect("bound"))
        .collect())
}
