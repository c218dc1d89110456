//! `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore` and `Condition`
//! (clients' `AcquirerProxy` and `ConditionProxy`).
//!
//! CPython's server runs every client connection on its own thread, so the
//! "current thread" its `threading` objects see is the client connection:
//! here the owner of an `RLock` (and of a `Condition`'s lock) is
//! [`CallContext::connection`]. `Lock` and the semaphores have no owner:
//! any connection may release them.
//!
//! Blocking calls (`acquire`, `Condition.wait`) wait on a
//! `parking_lot::Condvar` with the object's data mutex released, so they
//! block only the calling connection's thread and cost no CPU while they
//! wait. Timeouts are computed server-side, as in CPython.
//!
//! Argument checks and error texts follow the newest CPython where versions
//! differ (3.13: `ValueError('timeout value must be a non-negative
//! number')`, `Semaphore.release(n)`, the 3.11+ `repr`s); `locked()` is
//! CPython 3.14's (`Lock`, `RLock`, `Condition`; a `Semaphore` has none).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpmanager_pickle::{ExcType, PyErr, Value};
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::args;
use crate::referent::{CallContext, CallError, Kwargs, Outcome, Referent};
use crate::Registry;

// ---------------------------------------------------------------------------
// Shared helpers.

/// How long a blocking operation may wait.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Wait {
    /// Do not block at all.
    NonBlocking,
    /// Block without a time limit.
    Forever,
    /// Block until this instant.
    Until(Instant),
}

impl Wait {
    /// A wait of `secs` seconds from now (`secs <= 0`: do not block; a
    /// deadline too far away to represent: forever).
    pub(crate) fn after_secs(secs: f64) -> Wait {
        if secs.is_nan() || secs <= 0.0 {
            return Wait::NonBlocking;
        }
        match Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| Instant::now().checked_add(d))
        {
            Some(t) => Wait::Until(t),
            None => Wait::Forever,
        }
    }

    /// Waits on `cv` once (spurious wake-ups possible). Returns `false` if
    /// the deadline has passed (or the wait is non-blocking) and nothing
    /// was waited for.
    pub(crate) fn wait<T>(self, cv: &Condvar, guard: &mut MutexGuard<'_, T>) -> bool {
        match self {
            Wait::NonBlocking => false,
            Wait::Forever => {
                cv.wait(guard);
                true
            }
            Wait::Until(t) => {
                if Instant::now() >= t {
                    return false;
                }
                cv.wait_until(guard, t);
                true
            }
        }
    }

    /// True once the deadline has passed (never for `Forever`; always for
    /// `NonBlocking`).
    pub(crate) fn expired(self) -> bool {
        match self {
            Wait::NonBlocking => true,
            Wait::Forever => false,
            Wait::Until(t) => Instant::now() >= t,
        }
    }
}

/// Python truthiness of a value a client sent.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::None => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::BigInt(_) => true,
        Value::Float(f) => *f != 0.0,
        Value::Complex(a, b) => *a != 0.0 || *b != 0.0,
        Value::Str(s) => s.char_len() > 0,
        Value::Bytes(b) => !b.is_empty(),
        Value::ByteArray(b) => !b.read_recursive().is_empty(),
        Value::Tuple(t) => !t.items.is_empty(),
        Value::List(l) => !l.read_recursive().items.is_empty(),
        Value::Dict(d) => !d.read_recursive().is_empty(),
        Value::Set(s) => !s.read_recursive().is_empty(),
        Value::FrozenSet(s) => !s.is_empty(),
        _ => true,
    }
}

/// A timeout as a Python-level `float(timeout)` would see it: `int`,
/// `bool` or `float`; `what` is the operation text of the `TypeError`
/// (e.g. `'>' not supported between instances of 'str' and 'int'`).
pub(crate) fn py_number(v: &Value, op: &str) -> Result<f64, PyErr> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Bool(b) => Ok(*b as i64 as f64),
        Value::Float(f) => Ok(*f),
        Value::BigInt(b) => Ok(num_traits::ToPrimitive::to_f64(&**b).unwrap_or(f64::INFINITY)),
        other => Err(args::compare_error(op, &other.type_name(), "int")),
    }
}

/// `TypeError: cannot pickle '<what>' object`, what CPython's server
/// answers to `#GETVALUE` on a lock.
fn cannot_pickle(what: &str) -> PyErr {
    PyErr::type_error(format!("cannot pickle '{what}' object"))
}

/// The address shown in a repr (`0x…`): the object's own address.
fn addr<T>(x: &T) -> usize {
    x as *const T as usize
}

/// How long `acquire(...)` or `__enter__()` (which waits forever) waits.
fn acquire_wait(method: &str, a: &[Value], kw: &Kwargs) -> Result<Wait, PyErr> {
    if method == "acquire" {
        parse_lock_acquire(a, kw)
    } else {
        no_args(method, a, kw)?;
        Ok(Wait::Forever)
    }
}

/// `_thread.lock.acquire(blocking=True, timeout=-1)`'s argument parsing
/// (`lock_acquire_parse_args`, CPython 3.13 texts).
fn parse_lock_acquire(a: &[Value], kw: &Kwargs) -> Result<Wait, PyErr> {
    if a.len() + kw.len() > 2 {
        return Err(PyErr::type_error(format!(
            "acquire() takes at most 2 arguments ({} given)",
            a.len() + kw.len()
        )));
    }
    let names = ["blocking", "timeout"];
    let mut slots: [Option<&Value>; 2] = [a.first(), a.get(1)];
    for (k, v) in kw.iter() {
        match names.iter().position(|n| *n == k) {
            Some(i) if i < a.len() => {
                return Err(PyErr::type_error(format!(
                    "argument for acquire() given by name ('{k}') and position ({})",
                    i + 1
                )))
            }
            Some(i) => slots[i] = Some(v),
            None => {
                return Err(PyErr::type_error(format!(
                    "acquire() got an unexpected keyword argument '{k}'"
                )))
            }
        }
    }
    let blocking = slots[0].is_none_or(truthy);
    // The timeout in seconds; `None`: the default -1 ("unset").
    let timeout = match slots[1] {
        None => None,
        Some(v) => Some(time_from_seconds(v)?),
    };
    let unset = |t: f64| t == -1.0;
    match timeout {
        Some(t) if !blocking && !unset(t) => Err(PyErr::value_error(
            "can't specify a timeout for a non-blocking call",
        )),
        Some(t) if t < 0.0 && !unset(t) => Err(PyErr::value_error(
            "timeout value must be a non-negative number",
        )),
        _ if !blocking => Ok(Wait::NonBlocking),
        Some(t) if !unset(t) => {
            // PY_TIMEOUT_MAX, in seconds.
            if t > 9_223_372_036.0 {
                return Err(PyErr::new(
                    ExcType::OverflowError,
                    "timeout value is too large",
                ));
            }
            Ok(match Wait::after_secs(t) {
                // acquire(True, 0) is a non-blocking attempt.
                Wait::NonBlocking => Wait::NonBlocking,
                w => w,
            })
        }
        _ => Ok(Wait::Forever),
    }
}

/// `_PyTime_FromSecondsObject` (seconds as `int` or `float`, nanosecond
/// resolution, CPython 3.13 texts).
fn time_from_seconds(v: &Value) -> Result<f64, PyErr> {
    const NS_MAX: f64 = i64::MAX as f64;
    let too_large = || {
        PyErr::new(
            ExcType::OverflowError,
            "timestamp too large to convert to C PyTime_t",
        )
    };
    match v {
        Value::Float(f) => {
            if f.is_nan() {
                return Err(PyErr::value_error("Invalid value NaN (not a number)"));
            }
            if (f * 1e9).abs() >= NS_MAX {
                return Err(PyErr::new(
                    ExcType::OverflowError,
                    "timestamp out of range for platform time_t",
                ));
            }
            Ok(*f)
        }
        Value::BigInt(_) => Err(too_large()),
        _ => match args::int_like(v) {
            Some(Ok(i)) => {
                if i.checked_mul(1_000_000_000).is_none() {
                    return Err(too_large());
                }
                Ok(i as f64)
            }
            Some(Err(_)) => Err(too_large()),
            None => Err(PyErr::type_error(format!(
                "'{}' object cannot be interpreted as an integer",
                v.type_name()
            ))),
        },
    }
}

/// Fails unless `kw` is empty and there are no positional arguments, with
/// the `METH_NOARGS` text `release() takes no arguments (1 given)`.
fn no_args(name: &str, a: &[Value], kw: &Kwargs) -> Result<(), PyErr> {
    args::no_kwargs(name, kw)?;
    args::none(name, a)
}

// ---------------------------------------------------------------------------
// The lock state shared by Lock, RLock and Condition.

/// Which kind of lock: `_thread.lock` or `_thread.RLock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    Reentrant,
}

/// The state of a `_thread.lock` / `_thread.RLock`: for a plain lock
/// `count` is 0 or 1 and `owner` is unused.
#[derive(Debug, Default)]
struct LockState {
    owner: u64,
    count: u64,
}

impl LockState {
    /// One non-blocking attempt by connection `me`.
    fn try_acquire(&mut self, kind: Kind, me: u64) -> Result<bool, PyErr> {
        if self.count == 0 {
            self.owner = me;
            self.count = 1;
            return Ok(true);
        }
        if kind == Kind::Reentrant && self.owner == me {
            self.count = self.count.checked_add(1).ok_or_else(|| {
                PyErr::new(ExcType::OverflowError, "Internal lock count overflowed")
            })?;
            return Ok(true);
        }
        Ok(false)
    }

    /// `release()` by connection `me`; true if the lock became free.
    fn release(&mut self, kind: Kind, me: u64) -> Result<bool, PyErr> {
        match kind {
            Kind::Plain => {
                if self.count == 0 {
                    return Err(PyErr::new(ExcType::RuntimeError, "release unlocked lock"));
                }
                self.count = 0;
                self.owner = 0;
                Ok(true)
            }
            Kind::Reentrant => {
                if self.count == 0 || self.owner != me {
                    return Err(PyErr::new(
                        ExcType::RuntimeError,
                        "cannot release un-acquired lock",
                    ));
                }
                self.count -= 1;
                if self.count == 0 {
                    self.owner = 0;
                }
                Ok(self.count == 0)
            }
        }
    }

    /// `Condition._is_owned()`: an RLock owned by `me`; a plain lock held by
    /// anyone (CPython's `acquire(False)` probe).
    fn is_owned(&self, kind: Kind, me: u64) -> bool {
        match kind {
            Kind::Plain => self.count > 0,
            Kind::Reentrant => self.count > 0 && self.owner == me,
        }
    }

    fn repr(&self, kind: Kind, at: usize) -> String {
        let state = if self.count > 0 { "locked" } else { "unlocked" };
        match kind {
            Kind::Plain => format!("<{state} _thread.lock object at {at:#x}>"),
            Kind::Reentrant => format!(
                "<{state} _thread.RLock object owner={} count={} at {at:#x}>",
                self.owner, self.count
            ),
        }
    }
}

/// What a `Condition` needs of a lock it was given as a proxy: CPython's
/// `Condition` falls back to `acquire`/`release` for such locks.
trait Acquirer: Send + Sync {
    /// `acquire` by `owner`, waiting as `wait` allows.
    fn acquire_as(&self, owner: u64, wait: Wait) -> Result<bool, PyErr>;
    /// `release` by `owner`.
    fn release_as(&self, owner: u64) -> Result<(), PyErr>;
    /// `locked()`.
    fn locked(&self) -> Result<bool, PyErr>;
    /// `repr()`.
    fn repr_text(&self) -> String;
}

/// Acquires the lock in `guard` for `me`, waiting on `cv` as `wait`
/// allows. Returns whether it was acquired.
fn acquire_in(
    guard: &mut MutexGuard<'_, LockState>,
    cv: &Condvar,
    kind: Kind,
    me: u64,
    wait: Wait,
) -> Result<bool, PyErr> {
    loop {
        if guard.try_acquire(kind, me)? {
            return Ok(true);
        }
        if !wait.wait(cv, guard) {
            return Ok(false);
        }
    }
}

// ---------------------------------------------------------------------------
// Lock and RLock.

/// `threading.Lock()` (`_thread.lock`) or `threading.RLock()`
/// (`_thread.RLock`), served to an `AcquirerProxy`.
///
/// * `acquire(blocking=True, timeout=-1)` → `True`/`False`, with
///   `_thread`'s `ValueError`s for a timeout on a non-blocking call and
///   negative timeouts;
/// * `release()`: `RuntimeError('release unlocked lock')` for a `Lock`,
///   `RuntimeError('cannot release un-acquired lock')` for an `RLock` not
///   held by the calling connection;
/// * `locked()` (CPython 3.14).
///
/// An `RLock` belongs to the client connection that acquired it (a client
/// thread or process); a `Lock` can be released by anyone.
///
/// ```
/// use mpmanager_objects::{types::LockObject, CallContext, Kwargs, Referent, Outcome};
/// use mpmanager_pickle::Value;
/// let r = LockObject::construct_rlock(&[], &Kwargs::new()).unwrap();
/// let (a, b) = (CallContext::new(1), CallContext::new(2));
/// let call = |cx: &CallContext, m: &str, args: &[Value]| match r.call(cx, m, args, &Kwargs::new()) {
///     Ok(Outcome::Return(v)) => Ok(v),
///     Ok(_) => unreachable!(),
///     Err(e) => Err(e.to_string()),
/// };
/// assert!(matches!(call(&a, "acquire", &[]), Ok(Value::Bool(true))));
/// assert!(matches!(call(&a, "acquire", &[]), Ok(Value::Bool(true))));
/// assert!(matches!(call(&b, "acquire", &[Value::Bool(false)]), Ok(Value::Bool(false))));
/// assert_eq!(call(&b, "release", &[]).err().unwrap(),
///            "RuntimeError: cannot release un-acquired lock");
/// assert!(r.repr().unwrap().starts_with("<locked _thread.RLock object owner=1 count=2 at 0x"));
/// ```
pub struct LockObject {
    kind: Kind,
    state: Mutex<LockState>,
    cv: Condvar,
}

impl LockObject {
    fn new(kind: Kind) -> LockObject {
        LockObject {
            kind,
            state: Mutex::new(LockState::default()),
            cv: Condvar::new(),
        }
    }

    /// `threading.Lock()` (no arguments).
    pub fn construct_lock(a: &[Value], kw: &Kwargs) -> Result<LockObject, PyErr> {
        no_args("allocate_lock", a, kw)?;
        Ok(LockObject::new(Kind::Plain))
    }

    /// `threading.RLock()` (no arguments).
    pub fn construct_rlock(a: &[Value], kw: &Kwargs) -> Result<LockObject, PyErr> {
        if !a.is_empty() || !kw.is_empty() {
            return Err(PyErr::type_error("RLock does not accept arguments"));
        }
        Ok(LockObject::new(Kind::Reentrant))
    }

    fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Plain => "_thread.lock",
            Kind::Reentrant => "_thread.RLock",
        }
    }
    /// `RLock._is_owned()`.
    fn is_owned_by(&self, owner: u64) -> bool {
        self.state.lock().is_owned(self.kind, owner)
    }

    /// `RLock._release_save()`: releases every level; returns the count.
    fn release_save(&self, owner: u64) -> Result<u64, PyErr> {
        let mut g = self.state.lock();
        if !g.is_owned(self.kind, owner) {
            return Err(PyErr::new(
                ExcType::RuntimeError,
                "cannot release un-acquired lock",
            ));
        }
        let count = std::mem::take(&mut *g).count;
        drop(g);
        self.cv.notify_all();
        Ok(count)
    }

    /// `RLock._acquire_restore((count, owner))`: waits for the lock, then
    /// restores the recursion level.
    fn acquire_restore(&self, owner: u64, count: u64) -> Result<(), PyErr> {
        let mut g = self.state.lock();
        acquire_in(&mut g, &self.cv, Kind::Plain, owner, Wait::Forever)?;
        g.owner = owner;
        g.count = count;
        Ok(())
    }
}

impl Acquirer for LockObject {
    fn acquire_as(&self, owner: u64, wait: Wait) -> Result<bool, PyErr> {
        let mut g = self.state.lock();
        acquire_in(&mut g, &self.cv, self.kind, owner, wait)
    }

    fn release_as(&self, owner: u64) -> Result<(), PyErr> {
        let freed = self.state.lock().release(self.kind, owner)?;
        if freed {
            self.cv.notify_all();
        }
        Ok(())
    }

    fn locked(&self) -> Result<bool, PyErr> {
        Ok(self.state.lock().count > 0)
    }

    fn repr_text(&self) -> String {
        self.state.lock().repr(self.kind, addr(self))
    }
}

impl Referent for LockObject {
    fn class_name(&self) -> &str {
        self.type_name()
    }

    fn call(
        &self,
        cx: &CallContext,
        method: &str,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        let me = cx.connection;
        match method {
            "acquire" | "__enter__" => {
                let wait = acquire_wait(method, a, kw)?;
                let mut g = self.state.lock();
                let got = acquire_in(&mut g, &self.cv, self.kind, me, wait)?;
                Ok(Value::Bool(got).into())
            }
            "release" | "__exit__" => {
                if method == "release" {
                    no_args("release", a, kw)?;
                }
                let freed = self.state.lock().release(self.kind, me)?;
                if freed {
                    self.cv.notify_all();
                }
                Ok(Outcome::none())
            }
            "locked" => {
                no_args("locked", a, kw)?;
                Ok(Value::Bool(self.state.lock().count > 0).into())
            }
            _ => Err(CallError::Python(args::no_attribute(
                self.class_name(),
                method,
            ))),
        }
    }

    /// `<unlocked _thread.lock object at 0x…>`, `<locked _thread.RLock
    /// object owner=3 count=2 at 0x…>` (the owner is the connection id where
    /// CPython shows a thread id).
    fn repr(&self) -> Result<String, PyErr> {
        Ok(self.state.lock().repr(self.kind, addr(self)))
    }

    fn get_value(&self) -> Result<Value, PyErr> {
        Err(cannot_pickle(self.type_name()))
    }

    fn into_any(self: Arc<Self>) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(self)
    }
}

// ---------------------------------------------------------------------------
// Semaphore and BoundedSemaphore.

/// `threading.Semaphore(value=1)` and `threading.BoundedSemaphore(value=1)`,
/// served to an `AcquirerProxy`.
///
/// `acquire(blocking=True, timeout=None)` → `True`/`False`
/// (`ValueError("can't specify timeout for non-blocking acquire")`);
/// `release(n=1)` (`ValueError('n must be one or more')`; a bounded
/// semaphore raises `ValueError('Semaphore released too many times')`
/// rather than exceed its initial value). No owner: any connection may
/// release.
///
/// ```
/// use mpmanager_objects::{types::SemaphoreObject, CallContext, Kwargs, Referent};
/// use mpmanager_pickle::Value;
/// let s = SemaphoreObject::construct_bounded(&[Value::Int(1)], &Kwargs::new()).unwrap();
/// let cx = CallContext::new(1);
/// s.call(&cx, "acquire", &[], &Kwargs::new()).unwrap();
/// s.call(&cx, "release", &[], &Kwargs::new()).unwrap();
/// let e = s.call(&cx, "release", &[], &Kwargs::new()).err().unwrap();
/// assert_eq!(e.to_string(), "ValueError: Semaphore released too many times");
/// assert!(s.repr().unwrap().ends_with(": value=1/1>"));
/// ```
pub struct SemaphoreObject {
    /// `Some(initial value)` for a `BoundedSemaphore`.
    bound: Option<i64>,
    value: Mutex<i64>,
    cv: Condvar,
}

impl SemaphoreObject {
    fn initial_value(qualname: &str, a: &[Value], kw: &Kwargs) -> Result<i64, PyErr> {
        let b = args::bind(qualname, &[("value", Some(Value::Int(1)))], a, kw)?;
        let value = args::bounded_int(&b[0], "a semaphore value")?.ok_or_else(|| {
            PyErr::type_error(format!(
                "mpmanager: a semaphore value must be an int, not '{}'",
                b[0].type_name()
            ))
        })?;
        if value < 0 {
            return Err(PyErr::value_error("semaphore initial value must be >= 0"));
        }
        Ok(value)
    }

    /// `threading.Semaphore(value=1)`.
    pub fn construct_semaphore(a: &[Value], kw: &Kwargs) -> Result<SemaphoreObject, PyErr> {
        let value = SemaphoreObject::initial_value("Semaphore.__init__", a, kw)?;
        Ok(SemaphoreObject::new(value, false))
    }

    /// `threading.BoundedSemaphore(value=1)`.
    pub fn construct_bounded(a: &[Value], kw: &Kwargs) -> Result<SemaphoreObject, PyErr> {
        let value = SemaphoreObject::initial_value("BoundedSemaphore.__init__", a, kw)?;
        Ok(SemaphoreObject::new(value, true))
    }

    /// A semaphore with `value` (>= 0) permits; `bounded` for a
    /// `BoundedSemaphore`.
    pub fn new(value: i64, bounded: bool) -> SemaphoreObject {
        SemaphoreObject {
            bound: bounded.then_some(value),
            value: Mutex::new(value.max(0)),
            cv: Condvar::new(),
        }
    }

    fn qualname(&self) -> &'static str {
        if self.bound.is_some() {
            "BoundedSemaphore"
        } else {
            "Semaphore"
        }
    }

    fn acquire(&self, a: &[Value], kw: &Kwargs) -> Result<bool, PyErr> {
        let q = format!("{}.acquire", self.qualname());
        let b = args::bind(
            &q,
            &[
                ("blocking", Some(Value::Bool(true))),
                ("timeout", Some(Value::None)),
            ],
            a,
            kw,
        )?;
        let blocking = truthy(&b[0]);
        let timeout = &b[1];
        if !blocking && !matches!(timeout, Value::None) {
            return Err(PyErr::value_error(
                "can't specify timeout for non-blocking acquire",
            ));
        }
        {
            let mut v = self.value.lock();
            if *v > 0 {
                *v -= 1;
                return Ok(true);
            }
        }
        if !blocking {
            return Ok(false);
        }
        let wait = match timeout {
            Value::None => Wait::Forever,
            t => {
                // `endtime = _time() + timeout`
                let secs = py_number(t, "+").map_err(|_| {
                    PyErr::type_error(format!(
                        "unsupported operand type(s) for +: 'float' and '{}'",
                        t.type_name()
                    ))
                })?;
                Wait::after_secs(secs)
            }
        };
        Ok(self.acquire_wait(wait))
    }

    /// Takes a permit, waiting as `wait` allows.
    fn acquire_wait(&self, wait: Wait) -> bool {
        let mut v = self.value.lock();
        loop {
            if *v > 0 {
                *v -= 1;
                return true;
            }
            if !wait.wait(&self.cv, &mut v) {
                return false;
            }
        }
    }

    fn release(&self, a: &[Value], kw: &Kwargs) -> Result<(), PyErr> {
        let q = format!("{}.release", self.qualname());
        let b = args::bind(&q, &[("n", Some(Value::Int(1)))], a, kw)?;
        let n = args::bounded_int(&b[0], "a semaphore value")?
            .ok_or_else(|| args::compare_error("<", &b[0].type_name(), "int"))?;
        if n < 1 {
            return Err(PyErr::value_error("n must be one or more"));
        }
        let mut v = self.value.lock();
        let new = v.checked_add(n).ok_or_else(|| {
            PyErr::new(
                ExcType::OverflowError,
                "mpmanager: a semaphore value must fit in 64 bits",
            )
        })?;
        if let Some(initial) = self.bound {
            if new > initial {
                return Err(PyErr::value_error("Semaphore released too many times"));
            }
        }
        *v = new;
        drop(v);
        self.cv.notify_all();
        Ok(())
    }
}

impl Acquirer for SemaphoreObject {
    fn acquire_as(&self, _owner: u64, wait: Wait) -> Result<bool, PyErr> {
        Ok(self.acquire_wait(wait))
    }

    fn release_as(&self, _owner: u64) -> Result<(), PyErr> {
        self.release(&[], &Kwargs::new())
    }

    fn locked(&self) -> Result<bool, PyErr> {
        Err(args::no_attribute(self.class_name(), "locked"))
    }

    fn repr_text(&self) -> String {
        self.repr().unwrap_or_default()
    }
}

impl Referent for SemaphoreObject {
    fn class_name(&self) -> &str {
        if self.bound.is_some() {
            "threading.BoundedSemaphore"
        } else {
            "threading.Semaphore"
        }
    }

    fn call(
        &self,
        _cx: &CallContext,
        method: &str,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        match method {
            "acquire" | "__enter__" => Ok(Value::Bool(self.acquire(a, kw)?).into()),
            "release" => {
                self.release(a, kw)?;
                Ok(Outcome::none())
            }
            "__exit__" => {
                self.release(&[], &Kwargs::new())?;
                Ok(Outcome::none())
            }
            // No `locked` on a threading.Semaphore (3.14's AcquirerProxy
            // exposes it anyway): AttributeError, which the registry turns
            // into CPython's `#TRACEBACK`.
            _ => Err(CallError::Python(args::no_attribute(
                self.class_name(),
                method,
            ))),
        }
    }

    /// `<threading.Semaphore at 0x…: value=2>`, `<threading.BoundedSemaphore
    /// at 0x…: value=1/2>` (CPython 3.11+).
    fn repr(&self) -> Result<String, PyErr> {
        let v = *self.value.lock();
        Ok(match self.bound {
            None => format!("<threading.Semaphore at {:#x}: value={v}>", addr(self)),
            Some(b) => format!(
                "<threading.BoundedSemaphore at {:#x}: value={v}/{b}>",
                addr(self)
            ),
        })
    }

    fn get_value(&self) -> Result<Value, PyErr> {
        Err(cannot_pickle("_thread.lock"))
    }

    fn into_any(self: Arc<Self>) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(self)
    }
}

// ---------------------------------------------------------------------------
// Condition.

/// The waiters of a condition (CPython's `_waiters` deque).
#[derive(Default)]
struct Waiters {
    /// Tickets of the waiters, oldest first.
    queue: VecDeque<u64>,
    /// Waiters that have been notified but not yet woken.
    notified: HashSet<u64>,
    next_ticket: u64,
}

/// The owner id under which a condition calls a lock it was given as a
/// proxy: CPython's server calls such a lock through a proxy, i.e. over a
/// connection of its own per client connection, which is a different owner
/// than the client connection itself.
const LOOPBACK: u64 = 1 << 63;

/// `threading.Condition(lock=None)`, served to a `ConditionProxy`: a
/// condition variable over its own `RLock`, or over a shared `Lock`/`RLock`
/// passed as a proxy (`manager.Condition(manager.Lock())`).
///
/// * `acquire`/`release`/`locked` are the lock's;
/// * `wait(timeout=None)` needs the lock (`RuntimeError('cannot wait on
///   un-acquired lock')`), releases it completely — every recursion level
///   of the RLock — waits for a `notify`, re-acquires it and restores the
///   recursion level; `True` if notified, `False` on timeout;
/// * `notify(n=1)` wakes the `n` longest waiting, `notify_all()` all
///   (`RuntimeError('cannot notify on un-acquired lock')`).
///
/// `wait_for` is a client-side loop of `wait` calls in `ConditionProxy`.
///
/// A lock passed as a proxy is used the way CPython's server uses it:
/// through `acquire`/`release` under an owner of its own per client
/// connection (CPython's loopback proxy connection), with
/// `threading.Condition`'s fallbacks for locks without `_is_owned`
/// (ownership probed by `acquire(False)`). So a shared `Lock` (or
/// semaphore) works like a `Condition(Lock())`, and a shared `RLock` fails
/// as it does with CPython's server. Proxies of other types, or of objects
/// of another manager, are refused with a `TypeError`.
///
/// ```
/// use mpmanager_objects::{types::ConditionObject, CallContext, Kwargs, Referent};
/// use mpmanager_pickle::Value;
/// let c = ConditionObject::new();
/// let cx = CallContext::new(1);
/// let e = c.call(&cx, "wait", &[Value::Int(0)], &Kwargs::new()).err().unwrap();
/// assert_eq!(e.to_string(), "RuntimeError: cannot wait on un-acquired lock");
/// c.call(&cx, "acquire", &[], &Kwargs::new()).unwrap();
/// let r = c.call(&cx, "wait", &[Value::Int(0)], &Kwargs::new()).unwrap();
/// assert!(matches!(r, mpmanager_objects::Outcome::Return(Value::Bool(false))));
/// assert!(c.repr().unwrap().starts_with("<Condition(<locked _thread.RLock object owner=1 count=1 at 0x"));
/// ```
pub struct ConditionObject {
    /// The condition's own RLock, or `None` for a lock passed as a proxy.
    own: Option<Arc<LockObject>>,
    lock: Arc<dyn Acquirer>,
    /// The proxy the lock was passed as (kept, and visited, so that the
    /// registry keeps the lock alive); `None` for the condition's own RLock.
    lock_proxy: Option<Value>,
    waiters: Mutex<Waiters>,
    cv: Condvar,
}

impl Default for ConditionObject {
    fn default() -> ConditionObject {
        ConditionObject::new()
    }
}

impl ConditionObject {
    /// `threading.Condition()`: over a new `RLock` of its own.
    pub fn new() -> ConditionObject {
        let own = Arc::new(LockObject::new(Kind::Reentrant));
        ConditionObject {
            own: Some(own.clone()),
            lock: own,
            lock_proxy: None,
            waiters: Mutex::new(Waiters::default()),
            cv: Condvar::new(),
        }
    }

    /// `threading.Condition(lock=None)` without a registry: `lock` must be
    /// `None` (a proxy needs [`ConditionObject::construct_in`]).
    pub fn construct(a: &[Value], kw: &Kwargs) -> Result<ConditionObject, PyErr> {
        ConditionObject::build(None, a, kw)
    }

    /// `threading.Condition(lock=None)` in `registry`: `lock` may be a
    /// proxy to a `Lock` or `RLock` of that registry.
    pub fn construct_in(
        registry: &Registry,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<ConditionObject, PyErr> {
        ConditionObject::build(Some(registry), a, kw)
    }

    fn build(
        registry: Option<&Registry>,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<ConditionObject, PyErr> {
        let b = args::bind("Condition.__init__", &[("lock", Some(Value::None))], a, kw)?;
        let v = &b[0];
        if matches!(v, Value::None) {
            return Ok(ConditionObject::new());
        }
        if !mpmanager_protocol::ProxyRef::is_proxy_value(v) {
            return Err(PyErr::new(
                ExcType::AttributeError,
                format!("'{}' object has no attribute 'acquire'", v.type_name()),
            ));
        }
        let refuse = |why: &str| {
            PyErr::type_error(format!(
                "mpmanager cannot build a Condition on this lock: {why}; pass a Lock (or \
                 RLock) of this manager, or use manager.Condition() (it has its own RLock)"
            ))
        };
        let p = mpmanager_protocol::ProxyRef::from_value(v)
            .map_err(|e| refuse(&format!("unreadable proxy ({e})")))?;
        let registry = registry.ok_or_else(|| refuse("no registry to find it in"))?;
        let ours = registry.typeid_of(&p.token.id).as_deref() == Some(p.token.typeid.as_str());
        let object = registry
            .get(&p.token.id)
            .filter(|_| ours)
            .ok_or_else(|| refuse("it is not a shared object of this manager"))?;
        let any = object.into_any();
        let lock: Arc<dyn Acquirer> = match any {
            Some(a) if a.is::<LockObject>() => a.downcast::<LockObject>().expect("checked"),
            Some(a) if a.is::<SemaphoreObject>() => {
                a.downcast::<SemaphoreObject>().expect("checked")
            }
            _ => {
                return Err(refuse(&format!(
                    "a {} proxy; this server supports Lock, RLock, Semaphore and \
                     BoundedSemaphore here",
                    p.token.typeid
                )))
            }
        };
        Ok(ConditionObject {
            own: None,
            lock,
            lock_proxy: Some(v.clone()),
            waiters: Mutex::new(Waiters::default()),
            cv: Condvar::new(),
        })
    }

    /// The owner under which connection `me` uses the lock.
    fn owner(&self, me: u64) -> u64 {
        if self.lock_proxy.is_some() {
            me | LOOPBACK
        } else {
            me
        }
    }

    /// `Condition._is_owned()`.
    fn is_owned(&self, me: u64) -> Result<bool, PyErr> {
        let owner = self.owner(me);
        if let Some(own) = &self.own {
            return Ok(own.is_owned_by(owner));
        }
        // The fallback for locks without _is_owned.
        if self.lock.acquire_as(owner, Wait::NonBlocking)? {
            self.lock.release_as(owner)?;
            Ok(false)
        } else {
            Ok(true)
        }
    }

    /// `_release_save()`: the state `_acquire_restore` needs.
    fn release_save(&self, owner: u64) -> Result<u64, PyErr> {
        if let Some(own) = &self.own {
            own.release_save(owner)
        } else {
            self.lock.release_as(owner).map(|()| 0)
        }
    }

    fn acquire_restore(&self, owner: u64, saved: u64) -> Result<(), PyErr> {
        if let Some(own) = &self.own {
            own.acquire_restore(owner, saved)
        } else {
            self.lock.acquire_as(owner, Wait::Forever).map(|_| ())
        }
    }

    fn wait(&self, me: u64, a: &[Value], kw: &Kwargs) -> Result<bool, PyErr> {
        let b = args::bind("Condition.wait", &[("timeout", Some(Value::None))], a, kw)?;
        if !self.is_owned(me)? {
            return Err(PyErr::new(
                ExcType::RuntimeError,
                "cannot wait on un-acquired lock",
            ));
        }
        let owner = self.owner(me);
        let ticket = {
            let mut w = self.waiters.lock();
            let t = w.next_ticket;
            w.next_ticket += 1;
            w.queue.push_back(t);
            t
        };
        // As in CPython, a failing _release_save leaves the waiter queued.
        let saved = self.release_save(owner)?;
        let remove = |w: &mut Waiters| {
            if let Some(i) = w.queue.iter().position(|t| *t == ticket) {
                w.queue.remove(i);
            }
        };
        let wait = match &b[0] {
            Value::None => Wait::Forever,
            t => match py_number(t, ">") {
                Ok(secs) => Wait::after_secs(secs),
                Err(e) => {
                    self.acquire_restore(owner, saved)?;
                    remove(&mut self.waiters.lock());
                    return Err(e);
                }
            },
        };
        let mut w = self.waiters.lock();
        let mut notified = false;
        loop {
            if w.notified.remove(&ticket) {
                notified = true;
                break;
            }
            if !wait.wait(&self.cv, &mut w) {
                break;
            }
        }
        if !notified {
            remove(&mut w);
        }
        drop(w);
        self.acquire_restore(owner, saved)?;
        Ok(notified)
    }

    fn notify(&self, me: u64, n: Option<f64>) -> Result<(), PyErr> {
        if !self.is_owned(me)? {
            return Err(PyErr::new(
                ExcType::RuntimeError,
                "cannot notify on un-acquired lock",
            ));
        }
        let mut w = self.waiters.lock();
        let mut n = n.unwrap_or(f64::INFINITY);
        let mut woke = false;
        while n > 0.0 {
            let Some(t) = w.queue.pop_front() else { break };
            w.notified.insert(t);
            woke = true;
            n -= 1.0;
        }
        drop(w);
        if woke {
            self.cv.notify_all();
        }
        Ok(())
    }
}

impl Referent for ConditionObject {
    fn class_name(&self) -> &str {
        "threading.Condition"
    }

    fn call(
        &self,
        cx: &CallContext,
        method: &str,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        let me = cx.connection;
        match method {
            "acquire" | "__enter__" => {
                let wait = acquire_wait(method, a, kw)?;
                Ok(Value::Bool(self.lock.acquire_as(self.owner(me), wait)?).into())
            }
            "release" | "__exit__" => {
                if method == "release" {
                    no_args("release", a, kw)?;
                }
                self.lock.release_as(self.owner(me))?;
                Ok(Outcome::none())
            }
            "locked" => {
                no_args("locked", a, kw)?;
                Ok(Value::Bool(self.lock.locked()?).into())
            }
            "wait" => Ok(Value::Bool(self.wait(me, a, kw)?).into()),
            "notify" => {
                let b = args::bind("Condition.notify", &[("n", Some(Value::Int(1)))], a, kw)?;
                let n = py_number(&b[0], ">")?;
                self.notify(me, Some(n))?;
                Ok(Outcome::none())
            }
            "notify_all" | "notifyAll" => {
                args::bind(&format!("Condition.{method}"), &[], a, kw)?;
                self.notify(me, None)?;
                Ok(Outcome::none())
            }
            _ => Err(CallError::Python(args::no_attribute(
                self.class_name(),
                method,
            ))),
        }
    }

    /// `<Condition(<unlocked _thread.RLock object owner=0 count=0 at 0x…>, 0)>`
    /// (the lock's repr and the number of waiters).
    fn repr(&self) -> Result<String, PyErr> {
        let lock = self.lock.repr_text();
        Ok(format!(
            "<Condition({lock}, {})>",
            self.waiters.lock().queue.len()
        ))
    }

    fn get_value(&self) -> Result<Value, PyErr> {
        Err(cannot_pickle(match &self.own {
            Some(_) => "_thread.RLock",
            None => "_thread.lock",
        }))
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        if let Some(p) = &self.lock_proxy {
            f(p);
        }
    }
}
