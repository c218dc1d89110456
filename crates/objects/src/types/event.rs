//! `Event` (CPython's `threading.Event`, client `EventProxy`).

use mpmanager_pickle::{PyErr, Value};
use parking_lot::{Condvar, Mutex};

use super::queue::unpicklable_lock;
use super::wait::{py_number, wait_until, Wait, TIMEOUT_MAX};
use crate::args;
use crate::referent::{CallContext, CallError, Kwargs, Outcome, Referent};

#[derive(Default)]
struct EventState {
    flag: bool,
    /// Bumped by every `set()`: a waiter returns `True` once it changes,
    /// even if the flag was cleared again before it woke up (as
    /// `threading.Event.wait` does, having been notified).
    sets: u64,
}

/// `threading.Event()`: `is_set()`, `set()`, `clear()` and
/// `wait(timeout=None)`, which returns `True` once the flag is set (at
/// once if it already is) and `False` when the timeout passes first. As in
/// CPython, a timeout that is not positive (`0`, negative, NaN) does not
/// wait at all, and a non-number is a `TypeError` (`'>' not supported
/// between instances of 'str' and 'int'`). Waiting blocks only the calling
/// thread, on a condition variable with a monotonic deadline.
///
/// ```
/// use mpmanager_objects::{types::EventObject, CallContext, Kwargs, Outcome, Referent};
/// use mpmanager_pickle::Value;
/// let e = EventObject::new();
/// let cx = CallContext::new(0);
/// let call = |m: &str, a: &[Value]| match e.call(&cx, m, a, &Kwargs::new()).unwrap() {
///     Outcome::Return(v) => v,
///     _ => unreachable!(),
/// };
/// assert!(matches!(call("wait", &[Value::Float(0.01)]), Value::Bool(false)));
/// call("set", &[]);
/// assert!(matches!(call("wait", &[]), Value::Bool(true)));
/// assert!(matches!(call("is_set", &[]), Value::Bool(true)));
/// assert!(e.repr().unwrap().ends_with(": set>"));
/// ```
#[derive(Default)]
pub struct EventObject {
    state: Mutex<EventState>,
    cond: Condvar,
}

impl EventObject {
    /// A new event, not set.
    pub fn new() -> EventObject {
        EventObject::default()
    }

    /// `threading.Event()`: takes no arguments.
    pub fn construct(args: &[Value], kwargs: &Kwargs) -> Result<EventObject, PyErr> {
        args::bind("Event.__init__", &[], args, kwargs)?;
        Ok(EventObject::new())
    }

    /// True if the flag is set.
    pub fn is_set(&self) -> bool {
        self.state.lock().flag
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut st = self.state.lock();
        st.flag = true;
        st.sets += 1;
        self.cond.notify_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.state.lock().flag = false;
    }

    /// `wait(timeout)`, `timeout` being `None` or a number.
    fn wait(&self, cx: &CallContext, timeout: &Value) -> Result<bool, CallError> {
        let mut st = self.state.lock();
        if st.flag {
            return Ok(true);
        }
        let deadline = match timeout {
            Value::None => Wait::Forever,
            // `timeout > 0` is false for NaN too: a non-blocking try.
            t => match py_number(t, ">")? {
                secs if secs > TIMEOUT_MAX => Wait::TooLong,
                secs => Wait::after_secs(secs),
            },
        };
        let seen = st.sets;
        Ok(wait_until(cx, deadline, &self.cond, &mut st, |st| {
            st.sets != seen
        })?)
    }
}

impl Referent for EventObject {
    fn class_name(&self) -> &str {
        "threading.Event"
    }

    fn call(
        &self,
        cx: &CallContext,
        method: &str,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        let none = |name: &str| args::bind(&format!("Event.{name}"), &[], a, kw).map(|_| ());
        Ok(match method {
            "is_set" => {
                none("is_set")?;
                Value::Bool(self.is_set()).into()
            }
            "set" => {
                none("set")?;
                self.set();
                Outcome::none()
            }
            "clear" => {
                none("clear")?;
                self.clear();
                Outcome::none()
            }
            "wait" => {
                let b = args::bind("Event.wait", &[("timeout", Some(Value::None))], a, kw)?;
                Value::Bool(self.wait(cx, &b[0])?).into()
            }
            _ => {
                return Err(CallError::Python(args::no_attribute(
                    self.class_name(),
                    method,
                )))
            }
        })
    }

    /// `<threading.Event at 0x…: set>` / `…: unset>`, the form of CPython
    /// 3.11+ (3.8–3.10 print `<threading.Event object at 0x…>`).
    fn repr(&self) -> Result<String, PyErr> {
        let state = if self.is_set() { "set" } else { "unset" };
        Ok(format!(
            "<{} at {:#x}: {state}>",
            self.class_name(),
            self as *const _ as usize
        ))
    }

    /// Fails as CPython's does: `TypeError: cannot pickle '_thread.lock'
    /// object` (sent as `#UNSERIALIZABLE`).
    fn get_value(&self) -> Result<Value, PyErr> {
        Err(unpicklable_lock())
    }

    fn may_block(&self, method: &str) -> bool {
        method == "wait"
    }
}
