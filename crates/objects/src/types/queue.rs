//! `Queue` and `JoinableQueue` (both CPython's `queue.Queue`, client
//! `AutoProxy`), with the helpers the blocking types share (timeouts,
//! comparisons with CPython's error texts).

use std::collections::VecDeque;
use std::sync::Arc;

use mpmanager_pickle::hash::truthy;
use mpmanager_pickle::{ExcType, Global, PyErr, Value};
use parking_lot::{Condvar, Mutex};

use super::wait::{py_number, real, wait_until, Wait};
use crate::args::{self, compare_error};
use crate::referent::{object_repr, CallContext, CallError, Kwargs, Outcome, Referent};

fn exc(module: &str, name: &str) -> PyErr {
    PyErr::with_args(ExcType::Other(Arc::new(Global::new(module, name))), vec![])
}

/// `queue.Empty()`. CPython's `queue.Empty` *is* `_queue.Empty` (its
/// `__module__` is `_queue` on 3.8–3.14), so it is pickled by that name.
///
/// ```
/// let e = mpmanager_objects::types::queue_empty();
/// assert_eq!(e.ty.path(), ("_queue", "Empty"));
/// assert!(e.args.is_empty());
/// ```
pub fn queue_empty() -> PyErr {
    exc("_queue", "Empty")
}

/// `queue.Full()`.
///
/// ```
/// assert_eq!(mpmanager_objects::types::queue_full().ty.path(), ("queue", "Full"));
/// ```
pub fn queue_full() -> PyErr {
    exc("queue", "Full")
}

/// `queue.ShutDown()` (CPython 3.13+; an older client cannot unpickle it,
/// but only a client calling `shutdown()` can make the server raise it).
///
/// ```
/// assert_eq!(mpmanager_objects::types::queue_shutdown().ty.path(), ("queue", "ShutDown"));
/// ```
pub fn queue_shutdown() -> PyErr {
    exc("queue", "ShutDown")
}

/// What `pickle` says about an object holding a `threading` lock: the
/// `#GETVALUE` of a queue, event or lock fails with it.
pub(crate) fn unpicklable_lock() -> PyErr {
    PyErr::type_error("cannot pickle '_thread.lock' object")
}

/// `timeout` of `Queue.put`/`get` when blocking: `None`, or a number that
/// must not be negative. Same checks and texts as CPython (`timeout < 0`).
fn queue_deadline(timeout: &Value) -> Result<Wait, PyErr> {
    if matches!(timeout, Value::None) {
        return Ok(Wait::Forever);
    }
    let t = py_number(timeout, "<")?;
    if t < 0.0 {
        return Err(PyErr::value_error(
            "'timeout' must be a non-negative number",
        ));
    }
    Ok(Wait::queue_secs(t))
}

/// A queue's `maxsize`: CPython stores whatever it is given and compares
/// it on use, so a non-number fails only when `put`/`full` compare it.
#[derive(Clone, Debug)]
enum MaxSize {
    Real(f64),
    Other(String),
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Value>,
    unfinished: u64,
    shutdown: bool,
}

/// `queue.Queue(maxsize=0)`, serving typeids `Queue` and `JoinableQueue`
/// (CPython registers the same class for both).
///
/// Methods as CPython 3.13's `queue.py`: `put(item, block=True,
/// timeout=None)`, `put_nowait`, `get(block=True, timeout=None)`,
/// `get_nowait`, `qsize`, `empty`, `full` (`0 < maxsize <= qsize`),
/// `task_done`, `join` and `shutdown(immediate=False)`. `get` on an empty
/// queue raises `queue.Empty`, `put` on a full one `queue.Full`, both with
/// no arguments; a negative timeout of a *blocking* call is
/// `ValueError("'timeout' must be a non-negative number")`, and `block`
/// false ignores the timeout. Blocking calls wait on condition variables
/// with a monotonic deadline and never hold the lock while waiting.
///
/// ```
/// use mpmanager_objects::{types::QueueObject, CallContext, Kwargs, Outcome, Referent};
/// use mpmanager_pickle::Value;
/// let q = QueueObject::construct(&[Value::Int(1)], &Kwargs::new()).unwrap();
/// let cx = CallContext::new(0);
/// q.call(&cx, "put", &[Value::str("a")], &Kwargs::new()).unwrap();
/// let Err(e) = q.call(&cx, "put_nowait", &[Value::str("b")], &Kwargs::new()) else { panic!() };
/// assert_eq!(e.to_string(), "Full");
/// let Outcome::Return(v) = q.call(&cx, "get", &[], &Kwargs::new()).unwrap() else { panic!() };
/// assert_eq!(v.as_str(), Some("a"));
/// let Err(e) = q.call(&cx, "get", &[Value::Bool(false)], &Kwargs::new()) else { panic!() };
/// assert_eq!(e.to_string(), "Empty");
/// assert!(q.repr().unwrap().starts_with("<queue.Queue object at 0x"));
/// ```
pub struct QueueObject {
    maxsize: MaxSize,
    state: Mutex<QueueState>,
    not_empty: Condvar,
    not_full: Condvar,
    all_tasks_done: Condvar,
}

impl QueueObject {
    /// `queue.Queue(maxsize=0)` (positional or keyword).
    pub fn construct(args: &[Value], kwargs: &Kwargs) -> Result<QueueObject, PyErr> {
        let b = args::bind(
            "Queue.__init__",
            &[("maxsize", Some(Value::Int(0)))],
            args,
            kwargs,
        )?;
        let maxsize = match real(&b[0]) {
            Some(m) => MaxSize::Real(m),
            None => MaxSize::Other(b[0].type_name()),
        };
        Ok(QueueObject {
            maxsize,
            state: Mutex::new(QueueState::default()),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_tasks_done: Condvar::new(),
        })
    }

    /// A queue with this `maxsize` (0 or less: unbounded).
    ///
    /// ```
    /// use mpmanager_objects::types::QueueObject;
    /// assert_eq!(QueueObject::with_maxsize(3).qsize(), 0);
    /// ```
    pub fn with_maxsize(maxsize: i64) -> QueueObject {
        QueueObject::construct(&[Value::Int(maxsize)], &Kwargs::new()).expect("an int maxsize")
    }

    /// The number of queued items.
    pub fn qsize(&self) -> usize {
        self.state.lock().items.len()
    }

    /// `maxsize` if `maxsize > 0` (the queue is bounded), else `None`.
    fn bound(&self) -> Result<Option<f64>, PyErr> {
        match &self.maxsize {
            MaxSize::Real(m) if *m > 0.0 => Ok(Some(*m)),
            MaxSize::Real(_) => Ok(None),
            MaxSize::Other(t) => Err(compare_error(">", t, "int")),
        }
    }

    fn put(
        &self,
        cx: &CallContext,
        item: Value,
        block: bool,
        timeout: &Value,
    ) -> Result<(), CallError> {
        let mut st = self.state.lock();
        if st.shutdown {
            return Err(queue_shutdown().into());
        }
        if let Some(max) = self.bound()? {
            let full = |st: &mut QueueState| st.items.len() as f64 >= max;
            if !block {
                if full(&mut st) {
                    return Err(queue_full().into());
                }
            } else {
                let deadline = queue_deadline(timeout)?;
                let room = wait_until(cx, deadline, &self.not_full, &mut st, |st| {
                    st.shutdown || !full(st)
                })
                .inspect_err(|_| {
                    // A wake-up meant for a waiter that gives up goes on.
                    self.not_full.notify_one();
                })?;
                if !room {
                    return Err(queue_full().into());
                }
                if st.shutdown {
                    return Err(queue_shutdown().into());
                }
            }
        }
        st.items.push_back(item);
        st.unfinished += 1;
        self.not_empty.notify_one();
        Ok(())
    }

    fn get(&self, cx: &CallContext, block: bool, timeout: &Value) -> Result<Value, CallError> {
        let mut st = self.state.lock();
        if st.shutdown && st.items.is_empty() {
            return Err(queue_shutdown().into());
        }
        if !block {
            if st.items.is_empty() {
                return Err(queue_empty().into());
            }
        } else {
            let deadline = queue_deadline(timeout)?;
            let ready = wait_until(cx, deadline, &self.not_empty, &mut st, |st| {
                !st.items.is_empty() || st.shutdown
            })
            .inspect_err(|_| {
                // A dead client takes no item, and the wake-up an item's
                // put gave it goes to the next waiter.
                self.not_empty.notify_one();
            })?;
            if !ready {
                return Err(queue_empty().into());
            }
            if st.items.is_empty() {
                return Err(queue_shutdown().into());
            }
        }
        let item = st.items.pop_front().expect("not empty");
        self.not_full.notify_one();
        Ok(item)
    }

    fn task_done(&self) -> Result<(), PyErr> {
        let mut st = self.state.lock();
        match st.unfinished {
            0 => Err(PyErr::value_error("task_done() called too many times")),
            n => {
                st.unfinished = n - 1;
                if n == 1 {
                    self.all_tasks_done.notify_all();
                }
                Ok(())
            }
        }
    }

    fn join(&self, cx: &CallContext) -> Result<(), CallError> {
        let mut st = self.state.lock();
        wait_until(cx, Wait::Forever, &self.all_tasks_done, &mut st, |st| {
            st.unfinished == 0
        })?;
        Ok(())
    }

    /// Puts an item a dead client's `get` took back at the head of the
    /// queue (even past `maxsize`: an item is never dropped).
    fn unget(&self, item: Value) {
        self.state.lock().items.push_front(item);
        self.not_empty.notify_one();
    }

    fn shutdown(&self, immediate: bool) {
        let drained = {
            let mut st = self.state.lock();
            st.shutdown = true;
            let mut drained = Vec::new();
            if immediate {
                drained.extend(st.items.drain(..));
                st.unfinished = st.unfinished.saturating_sub(drained.len() as u64);
                self.all_tasks_done.notify_all();
            }
            self.not_empty.notify_all();
            self.not_full.notify_all();
            drained
        };
        drop(drained);
    }
}

impl Referent for QueueObject {
    fn class_name(&self) -> &str {
        "queue.Queue"
    }

    fn call(
        &self,
        cx: &CallContext,
        method: &str,
        a: &[Value],
        kw: &Kwargs,
    ) -> Result<Outcome, CallError> {
        let none = |name: &str| args::bind(&format!("Queue.{name}"), &[], a, kw).map(|_| ());
        let block_timeout = [
            ("block", Some(Value::Bool(true))),
            ("timeout", Some(Value::None)),
        ];
        Ok(match method {
            "put" => {
                let p = [
                    ("item", None),
                    block_timeout[0].clone(),
                    block_timeout[1].clone(),
                ];
                let mut b = args::bind("Queue.put", &p, a, kw)?.into_iter();
                let (item, block, timeout) = (b.next(), b.next(), b.next());
                let block = truthy(&block.expect("bound"));
                self.put(cx, item.expect("bound"), block, &timeout.expect("bound"))?;
                Outcome::none()
            }
            "put_nowait" => {
                let mut b = args::bind("Queue.put_nowait", &[("item", None)], a, kw)?;
                self.put(cx, b.remove(0), false, &Value::None)?;
                Outcome::none()
            }
            "get" => {
                let b = args::bind("Queue.get", &block_timeout, a, kw)?;
                self.get(cx, truthy(&b[0]), &b[1])?.into()
            }
            "get_nowait" => {
                none("get_nowait")?;
                self.get(cx, false, &Value::None)?.into()
            }
            "qsize" => {
                none("qsize")?;
                Value::Int(self.qsize() as i64).into()
            }
            "empty" => {
                none("empty")?;
                Value::Bool(self.qsize() == 0).into()
            }
            "full" => {
                none("full")?;
                let full = match &self.maxsize {
                    MaxSize::Real(m) => 0.0 < *m && *m <= self.qsize() as f64,
                    MaxSize::Other(t) => return Err(compare_error("<", "int", t).into()),
                };
                Value::Bool(full).into()
            }
            "task_done" => {
                none("task_done")?;
                self.task_done()?;
                Outcome::none()
            }
            "join" => {
                none("join")?;
                self.join(cx)?;
                Outcome::none()
            }
            "shutdown" => {
                let b = args::bind(
                    "Queue.shutdown",
                    &[("immediate", Some(Value::Bool(false)))],
                    a,
                    kw,
                )?;
                self.shutdown(truthy(&b[0]));
                Outcome::none()
            }
            _ => {
                return Err(CallError::Python(args::no_attribute(
                    self.class_name(),
                    method,
                )))
            }
        })
    }

    /// `<queue.Queue object at 0x…>` (the address is this object's).
    fn repr(&self) -> Result<String, PyErr> {
        Ok(object_repr(
            self.class_name(),
            self as *const Self as *const (),
        ))
    }

    /// Fails as CPython's does: a `queue.Queue` holds locks, so pickling it
    /// raises `TypeError: cannot pickle '_thread.lock' object` (sent as
    /// `#UNSERIALIZABLE`).
    fn get_value(&self) -> Result<Value, PyErr> {
        Err(unpicklable_lock())
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        let items: Vec<Value> = self.state.lock().items.iter().cloned().collect();
        items.iter().for_each(f);
    }

    fn may_block(&self, method: &str) -> bool {
        matches!(method, "put" | "get" | "join")
    }

    /// A `get` whose item could not be delivered puts it back at the head.
    fn reply_lost(&self, _cx: &CallContext, method: &str, value: &Value) -> Option<String> {
        if !matches!(method, "get" | "get_nowait") {
            return None;
        }
        self.unget(value.clone());
        Some("put back at the head of the queue the item a dead client's get had taken".into())
    }
}
