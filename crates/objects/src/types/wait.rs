//! How the blocking methods of the built-in types wait: one deadline type,
//! the timeout conversions CPython's methods make, and the wait itself,
//! which a dead client's cancellation interrupts.
//!
//! CPython's blocking methods do not agree on what a timeout means, and the
//! server answers as each of them does:
//!
//! | method | `timeout <= 0` | NaN | huge |
//! |---|---|---|---|
//! | `threading` waits (`Condition.wait`, `Semaphore.acquire`, `Barrier.wait`, `Event.wait`) | no wait | no wait (`timeout > 0` is false) | no limit |
//! | `queue.Queue.get`/`put` | no wait (negative: `ValueError`) | no limit (CPython spins forever) | `OverflowError` once it waits |
//! | `_thread.lock.acquire` | no wait | `ValueError` | `OverflowError` |
//!
//! The parsing of each method's arguments (and its error texts) stays with
//! the method; what it gives is a [`Wait`].

use std::time::{Duration, Instant};

use mpmanager_pickle::{ExcType, PyErr, Value};
use num_traits::ToPrimitive;
use parking_lot::{Condvar, MutexGuard};

use crate::args::compare_error;
use crate::context::{CallContext, Waited};
use crate::referent::CallError;

/// `threading.TIMEOUT_MAX` on Linux (seconds): a wait longer than this is
/// an `OverflowError` in CPython.
pub(crate) const TIMEOUT_MAX: f64 = 9_223_372_036.0;

/// A Python real number as `f64` (`int`, `bool`, `float`; a huge `int`
/// becomes ±inf), or `None` for anything else.
pub(crate) fn real(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(*b as i64 as f64),
        Value::Int(i) => Some(*i as f64),
        Value::BigInt(b) => Some(b.to_f64().unwrap_or(f64::INFINITY)),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// [`real`], or the `TypeError` of comparing the value with an int
/// (`'>' not supported between instances of 'str' and 'int'`), which is how
/// CPython's timeouts fail for a non-number; `op` is the comparison.
pub(crate) fn py_number(v: &Value, op: &str) -> Result<f64, PyErr> {
    real(v).ok_or_else(|| compare_error(op, &v.type_name(), "int"))
}

/// How long a blocking call may wait.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Wait {
    /// Do not block at all.
    NonBlocking,
    /// Block without a time limit.
    Forever,
    /// Block until this instant (monotonic clock).
    Until(Instant),
    /// Longer than `threading.TIMEOUT_MAX`: waiting raises `OverflowError`
    /// (a `queue.Queue` timeout).
    TooLong,
}

/// Why a wait ended before its condition held or its deadline passed.
#[derive(Debug)]
pub(crate) enum Interrupted {
    /// The client is gone: take nothing.
    Cancelled,
    /// The wait cannot be made (a timeout too long to wait for).
    Error(PyErr),
}

impl From<Interrupted> for CallError {
    fn from(i: Interrupted) -> CallError {
        match i {
            Interrupted::Cancelled => CallError::Cancelled,
            Interrupted::Error(e) => CallError::Python(e),
        }
    }
}

impl From<PyErr> for Interrupted {
    fn from(e: PyErr) -> Interrupted {
        Interrupted::Error(e)
    }
}

impl Wait {
    /// A `threading` wait of `secs` seconds from now: not positive or NaN
    /// means do not block; a deadline too far to represent means no limit.
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

    /// A `queue.Queue` wait of `secs >= 0` seconds: `0` gives up at once,
    /// NaN waits forever (CPython's loop never sees `remaining <= 0`), over
    /// [`TIMEOUT_MAX`] is [`Wait::TooLong`].
    pub(crate) fn queue_secs(secs: f64) -> Wait {
        if secs.is_nan() {
            Wait::Forever
        } else if secs > TIMEOUT_MAX {
            Wait::TooLong
        } else if secs <= 0.0 {
            Wait::NonBlocking
        } else {
            match Instant::now().checked_add(Duration::from_secs_f64(secs)) {
                Some(at) => Wait::Until(at),
                None => Wait::Forever,
            }
        }
    }

    /// Waits once on `cv` (spurious wake-ups possible): `Ok(true)` when
    /// woken (check the condition again), `Ok(false)` when the deadline has
    /// passed and nothing was waited for.
    pub(crate) fn wait<T>(
        self,
        cx: &CallContext,
        cv: &Condvar,
        guard: &mut MutexGuard<'_, T>,
    ) -> Result<bool, Interrupted> {
        let deadline = match self {
            Wait::NonBlocking => return Ok(false),
            Wait::Forever => None,
            Wait::Until(t) => Some(t),
            Wait::TooLong => {
                return Err(Interrupted::Error(PyErr::new(
                    ExcType::OverflowError,
                    "timestamp out of range for platform time_t",
                )))
            }
        };
        match cx.wait(cv, guard, deadline) {
            Waited::Woken => Ok(true),
            Waited::TimedOut => Ok(false),
            _ => Err(Interrupted::Cancelled),
        }
    }
}

/// Waits on `cv` until `ready` holds: `Ok(true)` when it does, `Ok(false)`
/// when the wait times out first, `Err` when cancelled or impossible.
pub(crate) fn wait_until<T>(
    cx: &CallContext,
    wait: Wait,
    cv: &Condvar,
    guard: &mut MutexGuard<'_, T>,
    mut ready: impl FnMut(&mut T) -> bool,
) -> Result<bool, Interrupted> {
    loop {
        if ready(guard) {
            return Ok(true);
        }
        if !wait.wait(cx, cv, guard)? {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[test]
    fn threading_and_queue_rules_differ_only_where_cpython_does() {
        assert_eq!(Wait::after_secs(f64::NAN), Wait::NonBlocking);
        assert_eq!(Wait::after_secs(0.0), Wait::NonBlocking);
        assert_eq!(Wait::after_secs(-1.0), Wait::NonBlocking);
        assert_eq!(Wait::after_secs(1e300), Wait::Forever);
        assert!(matches!(Wait::after_secs(1.0), Wait::Until(_)));
        assert_eq!(Wait::queue_secs(f64::NAN), Wait::Forever);
        assert_eq!(Wait::queue_secs(0.0), Wait::NonBlocking);
        assert_eq!(Wait::queue_secs(1e300), Wait::TooLong);
        assert!(matches!(Wait::queue_secs(1.0), Wait::Until(_)));
    }

    #[test]
    fn a_cancelled_wait_takes_nothing() {
        let cx = CallContext::new(1);
        cx.cancel_handle().cancel();
        let (m, cv) = (Mutex::new(0), Condvar::new());
        let mut g = m.lock();
        let r = wait_until(&cx, Wait::Forever, &cv, &mut g, |v| *v > 0);
        assert!(matches!(r, Err(Interrupted::Cancelled)));
        // A ready condition is still seen first: the caller decides.
        *g = 1;
        assert!(wait_until(&cx, Wait::Forever, &cv, &mut g, |v| *v > 0).unwrap());
    }

    #[test]
    fn too_long_is_an_overflow_error_only_when_waiting() {
        let cx = CallContext::new(1);
        let (m, cv) = (Mutex::new(1), Condvar::new());
        let mut g = m.lock();
        assert!(wait_until(&cx, Wait::TooLong, &cv, &mut g, |v| *v > 0).unwrap());
        *g = 0;
        let r = wait_until(&cx, Wait::TooLong, &cv, &mut g, |v| *v > 0);
        assert!(matches!(r, Err(Interrupted::Error(e)) if e.ty == ExcType::OverflowError));
    }
}
