//! `Condition` (clients' `ConditionProxy`): a condition variable over its
//! own `RLock`, or over a shared `Lock`/`Semaphore` passed as a proxy.
//! Ownership follows the client connection, as for the locks (`locks.rs`).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use mpmanager_pickle::{ExcType, PyErr, Value};
use parking_lot::{Condvar, Mutex};

use super::locks::{
    acquire_wait, cannot_pickle, no_args, undo_acquire, Acquirer, Kind, LockObject, SemaphoreObject,
};
use super::wait::{py_number, wait_until, Interrupted, Wait};
use crate::args;
use crate::referent::{CallContext, CallError, Closed, Kwargs, Outcome, Referent};
use crate::Registry;

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
    fn is_owned(&self, cx: &CallContext, me: u64) -> Result<bool, CallError> {
        let owner = self.owner(me);
        if let Some(own) = &self.own {
            return Ok(own.is_owned_by(owner));
        }
        // The fallback for locks without _is_owned.
        if self.lock.acquire_as(cx, owner, Wait::NonBlocking)? {
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

    fn acquire_restore(&self, cx: &CallContext, owner: u64, saved: u64) -> Result<(), CallError> {
        if let Some(own) = &self.own {
            own.acquire_restore(cx, owner, saved)
        } else {
            self.lock.acquire_as(cx, owner, Wait::Forever).map(|_| ())
        }
    }

    /// A notified waiter whose client is gone passes its notification to
    /// the next waiter, so that a `notify()` is never spent on the dead.
    fn pass_on(&self, w: &mut Waiters) {
        if let Some(next) = w.queue.pop_front() {
            w.notified.insert(next);
            self.cv.notify_all();
        }
    }

    fn wait(&self, cx: &CallContext, a: &[Value], kw: &Kwargs) -> Result<bool, CallError> {
        let me = cx.connection;
        let b = args::bind("Condition.wait", &[("timeout", Some(Value::None))], a, kw)?;
        if !self.is_owned(cx, me)? {
            return Err(
                PyErr::new(ExcType::RuntimeError, "cannot wait on un-acquired lock").into(),
            );
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
                    self.acquire_restore(cx, owner, saved)?;
                    remove(&mut self.waiters.lock());
                    return Err(e.into());
                }
            },
        };
        let mut w = self.waiters.lock();
        let waited = wait_until(cx, wait, &self.cv, &mut w, |w| w.notified.remove(&ticket));
        let notified = match waited {
            Ok(notified) => notified,
            Err(Interrupted::Cancelled) => {
                // The client is gone: it takes no notification (one given
                // to it meanwhile goes to the next waiter) and does not
                // take the lock back.
                if w.notified.remove(&ticket) {
                    self.pass_on(&mut w);
                }
                remove(&mut w);
                return Err(CallError::Cancelled);
            }
            Err(e) => {
                remove(&mut w);
                drop(w);
                self.acquire_restore(cx, owner, saved)?;
                return Err(e.into());
            }
        };
        if !notified {
            remove(&mut w);
        }
        drop(w);
        if let Err(e) = self.acquire_restore(cx, owner, saved) {
            if notified && matches!(e, CallError::Cancelled) {
                self.pass_on(&mut self.waiters.lock());
            }
            return Err(e);
        }
        cx.hold();
        Ok(notified)
    }

    fn notify(&self, cx: &CallContext, n: Option<f64>) -> Result<(), CallError> {
        if !self.is_owned(cx, cx.connection)? {
            return Err(
                PyErr::new(ExcType::RuntimeError, "cannot notify on un-acquired lock").into(),
            );
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
                let got = self.lock.acquire_as(cx, self.owner(me), wait)?;
                if got {
                    cx.hold();
                }
                Ok(Value::Bool(got).into())
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
            "wait" => Ok(Value::Bool(self.wait(cx, a, kw)?).into()),
            "notify" => {
                let b = args::bind("Condition.notify", &[("n", Some(Value::Int(1)))], a, kw)?;
                let n = py_number(&b[0], ">")?;
                self.notify(cx, Some(n))?;
                Ok(Outcome::none())
            }
            "notify_all" | "notifyAll" => {
                args::bind(&format!("Condition.{method}"), &[], a, kw)?;
                self.notify(cx, None)?;
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

    fn may_block(&self, method: &str) -> bool {
        matches!(method, "acquire" | "__enter__" | "wait" | "wait_for")
    }

    /// An acquisition the client never learnt of is released (a `wait`
    /// that re-took the lock for a dead client is released when its
    /// connection closes).
    fn reply_lost(&self, cx: &CallContext, method: &str, value: &Value) -> Option<String> {
        undo_acquire(
            &*self.lock,
            self.owner(cx.connection),
            method,
            value,
            || "released the Condition's lock".to_string(),
        )
    }

    /// The condition's lock held by the closed connection is released (a
    /// shared plain `Lock` too: the condition took it under an owner of
    /// that connection's own).
    fn connection_closed(&self, closed: &Closed) -> Vec<String> {
        let owner = self.owner(closed.connection);
        self.lock
            .release_owner(owner, self.lock.is_lock() || closed.release_unowned)
            .map(|what| format!("{what}, the lock of a Condition"))
            .into_iter()
            .collect()
    }
}
