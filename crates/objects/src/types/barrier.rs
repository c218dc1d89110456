//! `Barrier` (client `BarrierProxy`).

use std::sync::Arc;

use mpmanager_pickle::{ExcType, Global, PyErr, Value};
use parking_lot::{Condvar, Mutex};

use super::wait::{py_number, wait_until, Interrupted, Wait};
use crate::args;
use crate::context::CancelHandle;
use crate::referent::{CallContext, CallError, Kwargs, Outcome, Referent};

/// `_state` of CPython's `threading.Barrier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Filling,
    Draining,
    Resetting,
    Broken,
}

impl State {
    fn code(self) -> i64 {
        match self {
            State::Filling => 0,
            State::Draining => 1,
            State::Resetting => -1,
            State::Broken => -2,
        }
    }
}

struct Inner {
    state: State,
    /// Parties inside `wait()` (waiting, or leaving a generation).
    count: i64,
    /// The parties waiting for the current generation, by connection: the
    /// last arrival checks that their clients are still there.
    waiting: Vec<(u64, CancelHandle)>,
}

/// `threading.Barrier(parties, action=None, timeout=None)`, a port of
/// CPython's pure-Python implementation (same states, same wake-up rules).
///
/// * `wait(timeout=None)` returns the arrival index `0..parties`; the
///   last arrival releases the generation. A timeout (the call's, else the
///   barrier's default) breaks the barrier and raises
///   `threading.BrokenBarrierError` in every waiter;
/// * `abort()` breaks it; `reset()` returns it to the initial state (the
///   current waiters get `BrokenBarrierError`);
/// * `parties`, `n_waiting` and `broken` are read by `BarrierProxy` through
///   `__getattribute__`.
///
/// `action` (a Python callable run by the last arrival) cannot be run by a
/// Rust server: creating a barrier with an action fails with a `TypeError`
/// that says so.
///
/// ```
/// use mpmanager_objects::{types::BarrierObject, CallContext, Kwargs, Referent, Outcome};
/// use mpmanager_pickle::Value;
/// let b = BarrierObject::construct(&[Value::Int(1)], &Kwargs::new()).unwrap();
/// let cx = CallContext::new(1);
/// let Outcome::Return(i) = b.call(&cx, "wait", &[], &Kwargs::new()).unwrap() else { panic!() };
/// assert_eq!(i.as_i64(), Some(0));
/// let two = BarrierObject::construct(&[Value::Int(2)], &Kwargs::new()).unwrap();
/// let e = two.call(&cx, "wait", &[Value::Float(0.01)], &Kwargs::new()).err().unwrap();
/// assert_eq!(e.to_string(), "BrokenBarrierError");
/// assert!(two.repr().unwrap().ends_with(": broken>"));
/// ```
pub struct BarrierObject {
    parties: i64,
    timeout: Option<f64>,
    inner: Mutex<Inner>,
    cv: Condvar,
}

/// `threading.BrokenBarrierError()` (no arguments), as CPython pickles it.
///
/// ```
/// let e = mpmanager_objects::types::broken_barrier_error();
/// assert_eq!(e.ty.path(), ("threading", "BrokenBarrierError"));
/// assert_eq!(e.to_string(), "BrokenBarrierError");
/// ```
pub fn broken_barrier_error() -> PyErr {
    PyErr::with_args(
        ExcType::Other(Arc::new(Global::new("threading", "BrokenBarrierError"))),
        vec![],
    )
}

fn timeout_arg(v: &Value) -> Result<Option<f64>, PyErr> {
    match v {
        Value::None => Ok(None),
        t => py_number(t, "+").map(Some).map_err(|_| {
            PyErr::type_error(format!(
                "unsupported operand type(s) for +: 'float' and '{}'",
                t.type_name()
            ))
        }),
    }
}

impl BarrierObject {
    /// `Barrier(parties, action=None, timeout=None)`.
    pub fn construct(a: &[Value], kw: &Kwargs) -> Result<BarrierObject, PyErr> {
        let b = args::bind(
            "Barrier.__init__",
            &[
                ("parties", None),
                ("action", Some(Value::None)),
                ("timeout", Some(Value::None)),
            ],
            a,
            kw,
        )?;
        let parties = args::bounded_int(&b[0], "Barrier parties")?
            .ok_or_else(|| args::compare_error("<", &b[0].type_name(), "int"))?;
        if parties < 1 {
            return Err(PyErr::value_error("parties must be > 0"));
        }
        if !matches!(b[1], Value::None) {
            return Err(PyErr::type_error(
                "mpmanager cannot run a Barrier action: the action is a Python callable and \
                 this server (written in Rust) does not execute Python code; create the \
                 Barrier without action= and run the action in the client whose wait() \
                 returns 0",
            ));
        }
        let timeout = timeout_arg(&b[2])?;
        Ok(BarrierObject::new(parties, timeout))
    }

    /// A barrier for `parties` (>= 1) with a default `timeout` in seconds.
    pub fn new(parties: i64, timeout: Option<f64>) -> BarrierObject {
        BarrierObject {
            parties: parties.max(1),
            timeout,
            inner: Mutex::new(Inner {
                state: State::Filling,
                count: 0,
                waiting: Vec::new(),
            }),
            cv: Condvar::new(),
        }
    }

    fn wait(&self, cx: &CallContext, a: &[Value], kw: &Kwargs) -> Result<i64, CallError> {
        let b = args::bind("Barrier.wait", &[("timeout", Some(Value::None))], a, kw)?;
        let timeout = match timeout_arg(&b[0])? {
            None => self.timeout,
            t => t,
        };
        let mut g = self.inner.lock();
        // _enter: block while the barrier drains or resets (a client gone
        // meanwhile has not arrived: it just leaves).
        wait_until(cx, Wait::Forever, &self.cv, &mut g, |g| {
            !matches!(g.state, State::Draining | State::Resetting)
        })?;
        if g.state == State::Broken {
            return Err(broken_barrier_error().into());
        }
        let index = g.count;
        g.count += 1;
        let result = if index + 1 == self.parties {
            if g.waiting.iter().any(|(_, h)| h.is_cancelled()) {
                // A waiting party's client is gone: it must not count as
                // arrived, so the barrier breaks (as if it had been
                // cancelled before this arrival).
                g.state = State::Broken;
                self.cv.notify_all();
                Err(broken_barrier_error().into())
            } else {
                // _release: the last arrival releases the generation.
                g.state = State::Draining;
                self.cv.notify_all();
                Ok(index)
            }
        } else {
            g.waiting.push((cx.connection, cx.cancel_handle()));
            // _wait: wait_for(state != filling, timeout).
            let wait = match timeout {
                None => Wait::Forever,
                Some(t) => Wait::after_secs(t),
            };
            let waited = wait_until(cx, wait, &self.cv, &mut g, |g| g.state != State::Filling);
            if let Some(i) = g.waiting.iter().position(|(c, _)| *c == cx.connection) {
                g.waiting.swap_remove(i);
            }
            if let Err(Interrupted::Cancelled) = waited {
                // A party whose client is gone must not count as arrived:
                // break the barrier, as abort() does, so that the live
                // parties get BrokenBarrierError instead of passing (unless
                // its generation was already released).
                if g.state == State::Filling {
                    g.state = State::Broken;
                    self.cv.notify_all();
                }
                Err(CallError::Cancelled)
            } else if g.state == State::Filling {
                // Timed out: break the barrier.
                g.state = State::Broken;
                self.cv.notify_all();
                Err(broken_barrier_error().into())
            } else if matches!(g.state, State::Broken | State::Resetting) {
                Err(broken_barrier_error().into())
            } else {
                Ok(index)
            }
        };
        // _exit: the last one out ends draining / resetting.
        g.count -= 1;
        if g.count == 0 && matches!(g.state, State::Draining | State::Resetting) {
            g.state = State::Filling;
            self.cv.notify_all();
        }
        result
    }

    fn reset(&self) {
        let mut g = self.inner.lock();
        if g.count > 0 {
            if matches!(g.state, State::Filling | State::Broken) {
                g.state = State::Resetting;
            }
        } else {
            g.state = State::Filling;
        }
        self.cv.notify_all();
    }

    fn abort(&self) {
        self.inner.lock().state = State::Broken;
        self.cv.notify_all();
    }

    fn n_waiting(g: &Inner) -> i64 {
        if g.state == State::Filling {
            g.count
        } else {
            0
        }
    }
}

impl Referent for BarrierObject {
    fn class_name(&self) -> &str {
        "threading.Barrier"
    }

    fn call(
        &self,
        cx: &CallContext,
        method: &str,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        match method {
            "wait" => Ok(Value::Int(self.wait(cx, a, kw)?).into()),
            "reset" => {
                args::bind("Barrier.reset", &[], a, kw)?;
                self.reset();
                Ok(Outcome::none())
            }
            "abort" => {
                args::bind("Barrier.abort", &[], a, kw)?;
                self.abort();
                Ok(Outcome::none())
            }
            "__getattribute__" => {
                args::no_kwargs("__getattribute__", kw)?;
                let [name] = args::slot::<1>(a)?;
                let Value::Str(name) = name else {
                    return Err(PyErr::type_error(format!(
                        "attribute name must be string, not '{}'",
                        name.type_name()
                    ))
                    .into());
                };
                let g = self.inner.lock();
                let v = match name.to_string_lossy().as_ref() {
                    "parties" | "_parties" => Value::Int(self.parties),
                    "n_waiting" => Value::Int(Self::n_waiting(&g)),
                    "broken" => Value::Bool(g.state == State::Broken),
                    "_count" => Value::Int(g.count),
                    "_state" => Value::Int(g.state.code()),
                    "_timeout" => self.timeout.map_or(Value::None, Value::Float),
                    "_action" => Value::None,
                    m @ ("wait" | "reset" | "abort" | "__repr__" | "__str__") => {
                        // A bound method: CPython's server fails to pickle it.
                        let _ = m;
                        return Err(CallError::traceback(
                            &PyErr::type_error("cannot pickle 'method' object"),
                            "serve_client",
                        ));
                    }
                    other => {
                        return Err(PyErr::new(
                            ExcType::AttributeError,
                            format!("'Barrier' object has no attribute '{other}'"),
                        )
                        .into())
                    }
                };
                Ok(v.into())
            }
            _ => Err(CallError::Python(args::no_attribute(
                self.class_name(),
                method,
            ))),
        }
    }

    /// `<threading.Barrier at 0x…: waiters=1/3>`, or `…: broken>`
    /// (CPython 3.11+).
    fn repr(&self) -> Result<String, PyErr> {
        let g = self.inner.lock();
        let at = self as *const BarrierObject as usize;
        Ok(if g.state == State::Broken {
            format!("<threading.Barrier at {at:#x}: broken>")
        } else {
            format!(
                "<threading.Barrier at {at:#x}: waiters={}/{}>",
                Self::n_waiting(&g),
                self.parties
            )
        })
    }

    fn get_value(&self) -> Result<Value, PyErr> {
        Err(PyErr::type_error("cannot pickle '_thread.lock' object"))
    }

    fn may_block(&self, method: &str) -> bool {
        method == "wait"
    }
}
