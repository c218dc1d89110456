//! `Lock`, `RLock`, `Semaphore` and `BoundedSemaphore` (clients'
//! `AcquirerProxy`), and what `Condition` (`condition.rs`) needs of them.
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

use std::collections::HashMap;
use std::sync::Arc;

use mpmanager_pickle::hash::truthy;
use mpmanager_pickle::{ExcType, PyErr, Value};
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::wait::{py_number, wait_until, Wait};
use crate::args;
use crate::referent::{CallContext, CallError, Closed, Kwargs, Outcome, Referent};

// ---------------------------------------------------------------------------
// Shared helpers.

/// `TypeError: cannot pickle '<what>' object`, what CPython's server
/// answers to `#GETVALUE` on a lock.
pub(super) fn cannot_pickle(what: &str) -> PyErr {
    PyErr::type_error(format!("cannot pickle '{what}' object"))
}

/// The address shown in a repr (`0x…`): the object's own address.
fn addr<T>(x: &T) -> usize {
    x as *const T as usize
}

/// How long `acquire(...)` or `__enter__()` (which waits forever) waits.
pub(super) fn acquire_wait(method: &str, a: &[Value], kw: &Kwargs) -> Result<Wait, PyErr> {
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
pub(super) fn no_args(name: &str, a: &[Value], kw: &Kwargs) -> Result<(), PyErr> {
    args::no_kwargs(name, kw)?;
    args::none(name, a)
}

// ---------------------------------------------------------------------------
// The lock state shared by Lock, RLock and Condition.

/// Which kind of lock: `_thread.lock` or `_thread.RLock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) trait Acquirer: Send + Sync {
    /// `acquire` by `owner`, waiting as `wait` allows (and until `cx` is
    /// cancelled).
    fn acquire_as(&self, cx: &CallContext, owner: u64, wait: Wait) -> Result<bool, CallError>;
    /// `release` by `owner`.
    fn release_as(&self, owner: u64) -> Result<(), PyErr>;
    /// `locked()`.
    fn locked(&self) -> Result<bool, PyErr>;
    /// `repr()`.
    fn repr_text(&self) -> String;
    /// Releases what `owner` (a closed connection) holds: an owned lock
    /// always, a plain lock or permits only with `release_unowned`.
    /// Describes the release, if any.
    fn release_owner(&self, owner: u64, release_unowned: bool) -> Option<String>;

    /// True for a lock (plain or reentrant): one taken through a
    /// `Condition` is owned by that condition's caller, so it is released
    /// when the caller's connection closes. False for a semaphore, whose
    /// permits have no owner.
    fn is_lock(&self) -> bool;
}

/// [`Referent::reply_lost`] of a lock or semaphore: an `acquire` that
/// returned `True` to a client that never read it is undone as `owner`;
/// `what` says what was given back.
pub(super) fn undo_acquire(
    lock: &dyn Acquirer,
    owner: u64,
    method: &str,
    value: &Value,
    what: impl FnOnce() -> String,
) -> Option<String> {
    if !matches!(method, "acquire" | "__enter__") || !matches!(value, Value::Bool(true)) {
        return None;
    }
    lock.release_as(owner).ok()?;
    Some(format!("{} a dead client's {method} had taken", what()))
}

/// Acquires the lock in `guard` for `me`, waiting on `cv` as `wait`
/// allows. Returns whether it was acquired.
fn acquire_in(
    cx: &CallContext,
    guard: &mut MutexGuard<'_, LockState>,
    cv: &Condvar,
    kind: Kind,
    me: u64,
    wait: Wait,
) -> Result<bool, CallError> {
    let mut failed = None;
    let got = wait_until(cx, wait, cv, guard, |st| match st.try_acquire(kind, me) {
        Ok(got) => got,
        Err(e) => {
            failed = Some(e);
            true
        }
    });
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(got?),
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
    pub(super) fn new(kind: Kind) -> LockObject {
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
    pub(super) fn is_owned_by(&self, owner: u64) -> bool {
        self.state.lock().is_owned(self.kind, owner)
    }

    /// `RLock._release_save()`: releases every level; returns the count.
    pub(super) fn release_save(&self, owner: u64) -> Result<u64, PyErr> {
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
    pub(super) fn acquire_restore(
        &self,
        cx: &CallContext,
        owner: u64,
        count: u64,
    ) -> Result<(), CallError> {
        let mut g = self.state.lock();
        acquire_in(cx, &mut g, &self.cv, Kind::Plain, owner, Wait::Forever)?;
        g.owner = owner;
        g.count = count;
        Ok(())
    }
}

impl Acquirer for LockObject {
    fn acquire_as(&self, cx: &CallContext, owner: u64, wait: Wait) -> Result<bool, CallError> {
        let mut g = self.state.lock();
        acquire_in(cx, &mut g, &self.cv, self.kind, owner, wait)
    }

    fn is_lock(&self) -> bool {
        true
    }

    fn release_owner(&self, owner: u64, release_unowned: bool) -> Option<String> {
        let mut g = self.state.lock();
        if g.count == 0 || g.owner != owner {
            return None;
        }
        let what = match self.kind {
            Kind::Reentrant => format!(
                "released an RLock its closed connection held ({} level{})",
                g.count,
                if g.count == 1 { "" } else { "s" }
            ),
            Kind::Plain if release_unowned => "released a Lock its closed connection had acquired \
                 (--release-on-disconnect)"
                .to_string(),
            Kind::Plain => return None,
        };
        *g = LockState::default();
        drop(g);
        self.cv.notify_all();
        Some(what)
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
                let got = acquire_in(cx, &mut g, &self.cv, self.kind, me, wait)?;
                if got {
                    cx.hold();
                }
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

    fn may_block(&self, method: &str) -> bool {
        matches!(method, "acquire" | "__enter__")
    }

    /// An acquisition the client never learnt of is released.
    fn reply_lost(&self, cx: &CallContext, method: &str, value: &Value) -> Option<String> {
        undo_acquire(self, cx.connection, method, value, || {
            format!("released the {}", self.type_name())
        })
    }

    fn connection_closed(&self, closed: &Closed) -> Vec<String> {
        self.release_owner(closed.connection, closed.release_unowned)
            .into_iter()
            .collect()
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
    value: Mutex<Permits>,
    cv: Condvar,
}

/// A semaphore's value, and the permits each owner (a connection) took and
/// has not given back itself (what `--release-on-disconnect` returns).
#[derive(Default)]
struct Permits {
    value: i64,
    taken: HashMap<u64, u64>,
}

impl Permits {
    /// Takes a permit for `owner` if one is free.
    fn try_take(&mut self, owner: u64) -> bool {
        if self.value > 0 {
            self.value -= 1;
            *self.taken.entry(owner).or_default() += 1;
            true
        } else {
            false
        }
    }

    /// Notes that `owner` gave back up to `n` permits it had taken.
    fn given_back(&mut self, owner: u64, n: i64) {
        if let Some(t) = self.taken.get_mut(&owner) {
            *t = t.saturating_sub(n.max(0) as u64);
            if *t == 0 {
                self.taken.remove(&owner);
            }
        }
    }
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
            value: Mutex::new(Permits {
                value: value.max(0),
                taken: HashMap::new(),
            }),
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

    fn acquire(&self, cx: &CallContext, a: &[Value], kw: &Kwargs) -> Result<bool, CallError> {
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
            return Err(
                PyErr::value_error("can't specify timeout for non-blocking acquire").into(),
            );
        }
        if self.value.lock().try_take(cx.connection) {
            return Ok(true);
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
        self.acquire_wait(cx, cx.connection, wait)
    }

    /// Takes a permit for `owner`, waiting as `wait` allows.
    fn acquire_wait(&self, cx: &CallContext, owner: u64, wait: Wait) -> Result<bool, CallError> {
        let mut v = self.value.lock();
        Ok(wait_until(cx, wait, &self.cv, &mut v, |p| {
            p.try_take(owner)
        })?)
    }

    fn release(&self, owner: u64, a: &[Value], kw: &Kwargs) -> Result<(), PyErr> {
        let q = format!("{}.release", self.qualname());
        let b = args::bind(&q, &[("n", Some(Value::Int(1)))], a, kw)?;
        let n = args::bounded_int(&b[0], "a semaphore value")?
            .ok_or_else(|| args::compare_error("<", &b[0].type_name(), "int"))?;
        if n < 1 {
            return Err(PyErr::value_error("n must be one or more"));
        }
        let mut v = self.value.lock();
        let new = v.value.checked_add(n).ok_or_else(|| {
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
        v.value = new;
        v.given_back(owner, n);
        drop(v);
        self.cv.notify_all();
        Ok(())
    }
}

impl Acquirer for SemaphoreObject {
    fn acquire_as(&self, cx: &CallContext, owner: u64, wait: Wait) -> Result<bool, CallError> {
        self.acquire_wait(cx, owner, wait)
    }

    fn release_as(&self, owner: u64) -> Result<(), PyErr> {
        self.release(owner, &[], &Kwargs::new())
    }

    fn is_lock(&self) -> bool {
        false
    }

    fn release_owner(&self, owner: u64, release_unowned: bool) -> Option<String> {
        let mut p = self.value.lock();
        let n = p.taken.remove(&owner)?;
        if !release_unowned {
            return None;
        }
        // A bounded semaphore never goes past its initial value.
        let n = match self.bound {
            Some(b) => (n as i64).min(b - p.value).max(0),
            None => n as i64,
        };
        if n == 0 {
            return None;
        }
        p.value += n;
        drop(p);
        self.cv.notify_all();
        Some(format!(
            "returned {n} permit{} of a {} its closed connection had taken \
             (--release-on-disconnect)",
            if n == 1 { "" } else { "s" },
            self.qualname()
        ))
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
        cx: &CallContext,
        method: &str,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        match method {
            "acquire" | "__enter__" => {
                let got = self.acquire(cx, a, kw)?;
                if got {
                    cx.hold();
                }
                Ok(Value::Bool(got).into())
            }
            "release" => {
                self.release(cx.connection, a, kw)?;
                Ok(Outcome::none())
            }
            "__exit__" => {
                self.release(cx.connection, &[], &Kwargs::new())?;
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
        let v = self.value.lock().value;
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

    fn may_block(&self, method: &str) -> bool {
        matches!(method, "acquire" | "__enter__")
    }

    /// A permit the client never learnt of is given back.
    fn reply_lost(&self, cx: &CallContext, method: &str, value: &Value) -> Option<String> {
        undo_acquire(self, cx.connection, method, value, || {
            format!("gave back the {} permit", self.qualname())
        })
    }

    fn connection_closed(&self, closed: &Closed) -> Vec<String> {
        self.release_owner(closed.connection, closed.release_unowned)
            .into_iter()
            .collect()
    }
}
