//! [`CallContext`]: what a method call knows about the connection making it
//! — who it is, whether its client is still there, and what it holds.
//!
//! # Cancellation
//!
//! CPython's server cannot tell when a client dies in the middle of a call,
//! so a killed worker's `q.get()` later takes an item nobody receives, and
//! a dead waiter takes a `Condition`'s notification. mpmanager's server
//! watches every served connection: when the peer hangs up, it
//! [cancels](CancelHandle::cancel) the connection's context. A blocking
//! method waits through [`CallContext::wait`] (or polls
//! [`CallContext::is_cancelled`]), which returns [`Waited::Cancelled`] at
//! once; the method then undoes what it started and returns
//! [`CallError::Cancelled`](crate::CallError::Cancelled). Nothing is taken
//! for a client that cannot receive it.
//!
//! # What a connection holds
//!
//! A call that leaves state owned by its connection (an `RLock` acquired, a
//! permit taken) calls [`CallContext::hold`]; when the connection closes,
//! the server calls [`Referent::connection_closed`](crate::Referent::connection_closed)
//! on each such object, which releases what the dead client held.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::Referent;

/// The condition variable a call is waiting on, as the canceller sees it.
struct WaitingOn(*const Condvar);

// SAFETY: the pointer is only dereferenced (to call `notify_all`, which is
// thread-safe) while it is registered, and it is registered only for the
// duration of a `CallContext::wait` that borrows the `Condvar`; the
// registration is removed under the same mutex before that borrow ends.
unsafe impl Send for WaitingOn {}

/// The shared part of a connection's context: its cancellation flag, the
/// wait to interrupt, and the objects it holds something in.
struct Session {
    cancelled: AtomicBool,
    /// Asks the kernel whether the peer has hung up (see
    /// [`CallContext::with_hangup_probe`]).
    probe: Option<HangupProbe>,
    waiting: Mutex<Option<WaitingOn>>,
    held: Mutex<Vec<(Weak<dyn Referent>, String)>>,
}

/// A check whether the client of a connection is gone.
type HangupProbe = Box<dyn Fn() -> bool + Send + Sync>;

impl Session {
    fn new(probe: Option<HangupProbe>) -> Session {
        Session {
            cancelled: AtomicBool::new(false),
            probe,
            waiting: Mutex::new(None),
            held: Mutex::new(Vec::new()),
        }
    }

    /// The cancellation flag, set at once if the probe finds the peer gone.
    fn is_cancelled(&self) -> bool {
        if self.cancelled.load(Ordering::SeqCst) {
            return true;
        }
        if self.probe.as_ref().is_some_and(|gone| gone()) {
            self.cancelled.store(true, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// Wakes the current wait, if any; true if there was one.
    fn wake(&self) -> bool {
        let w = self.waiting.lock();
        match &*w {
            Some(WaitingOn(cv)) => {
                // SAFETY: see `WaitingOn`: registered means borrowed by a
                // wait that has not returned, and we hold the lock that
                // unregistering takes.
                unsafe { (**cv).notify_all() };
                true
            }
            None => false,
        }
    }
}

/// Per-call information the server passes to
/// [`Referent::call`](crate::Referent::call): the connection making the
/// call, whether its client is still there, and a way to say the call left
/// something owned by it.
///
/// The server makes one per served connection; [`CallContext::new`] makes a
/// standalone one (never cancelled), e.g. for tests.
///
/// ```
/// use mpmanager_objects::CallContext;
/// let cx = CallContext::new(7);
/// assert_eq!(cx.connection, 7);
/// assert!(!cx.is_cancelled());
/// cx.cancel_handle().cancel();
/// assert!(cx.is_cancelled());
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct CallContext {
    /// Identity of the served connection making the call: unique per
    /// connection for the server's lifetime. CPython serves each (process,
    /// thread) of a client on its own connection, so this is the "owner"
    /// that `RLock`/`Condition` ownership is tied to.
    pub connection: u64,
    session: Arc<Session>,
    /// Set by [`CallContext::hold`] during a call, taken by the registry.
    hold: Cell<bool>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("connection", &self.connection)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// What one [`CallContext::wait`] ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Waited {
    /// Woken (by a notification, or spuriously): check the condition again.
    Woken,
    /// The deadline has passed; nothing was waited for.
    TimedOut,
    /// The client is gone ([`CallContext::is_cancelled`]): give up the
    /// call without taking anything.
    Cancelled,
}

impl CallContext {
    /// A context for a call arriving on connection `connection`, not
    /// cancelled and holding nothing.
    pub fn new(connection: u64) -> CallContext {
        CallContext {
            connection,
            session: Arc::new(Session::new(None)),
            hold: Cell::new(false),
        }
    }

    /// A context for connection `connection` whose [`is_cancelled`] also
    /// asks `peer_gone` (e.g. a zero-timeout `poll` of the socket for a
    /// hang-up), so that a waiter woken to take something checks its
    /// client synchronously instead of relying on the watcher having run.
    ///
    /// [`is_cancelled`]: CallContext::is_cancelled
    ///
    /// ```
    /// use mpmanager_objects::CallContext;
    /// let cx = CallContext::with_hangup_probe(3, || true);
    /// assert!(cx.is_cancelled());
    /// ```
    pub fn with_hangup_probe(
        connection: u64,
        peer_gone: impl Fn() -> bool + Send + Sync + 'static,
    ) -> CallContext {
        CallContext {
            connection,
            session: Arc::new(Session::new(Some(Box::new(peer_gone)))),
            hold: Cell::new(false),
        }
    }

    /// True once the client of this connection is gone: a blocking call
    /// should stop waiting and take nothing.
    pub fn is_cancelled(&self) -> bool {
        self.session.is_cancelled()
    }

    /// A handle that cancels this context from another thread (the server's
    /// hang-up watcher uses it).
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            session: Arc::downgrade(&self.session),
        }
    }

    /// Waits once on `cv` (whose mutex `guard` holds) until notified, until
    /// `deadline` (`None`: no limit), or until the call is cancelled.
    /// Spurious wake-ups are possible, so call it in a loop that checks the
    /// condition:
    ///
    /// ```
    /// use mpmanager_objects::{CallContext, Waited};
    /// use parking_lot::{Condvar, Mutex};
    /// use std::time::{Duration, Instant};
    ///
    /// let (m, cv) = (Mutex::new(0), Condvar::new());
    /// let cx = CallContext::new(1);
    /// let mut g = m.lock();
    /// let deadline = Instant::now() + Duration::from_millis(10);
    /// let outcome = loop {
    ///     if *g > 0 { break "ready" }
    ///     match cx.wait(&cv, &mut g, Some(deadline)) {
    ///         Waited::Woken => continue,
    ///         Waited::TimedOut => break "timed out",
    ///         Waited::Cancelled => break "client gone",
    ///         _ => unreachable!(),
    ///     }
    /// };
    /// assert_eq!(outcome, "timed out");
    /// ```
    pub fn wait<T>(
        &self,
        cv: &Condvar,
        guard: &mut MutexGuard<'_, T>,
        deadline: Option<Instant>,
    ) -> Waited {
        if self.is_cancelled() {
            return Waited::Cancelled;
        }
        if let Some(at) = deadline {
            if Instant::now() >= at {
                return Waited::TimedOut;
            }
        }
        *self.session.waiting.lock() = Some(WaitingOn(cv as *const Condvar));
        // A cancel between the check above and the park below is not lost:
        // the canceller wakes a registered wait again until it leaves (see
        // `CancelHandle::wake_again`).
        if !self.is_cancelled() {
            match deadline {
                None => cv.wait(guard),
                Some(at) => {
                    cv.wait_until(guard, at);
                }
            }
        }
        *self.session.waiting.lock() = None;
        if self.is_cancelled() {
            Waited::Cancelled
        } else {
            Waited::Woken
        }
    }

    /// Says that this call left something owned by this connection in the
    /// object being called (a lock acquired, a permit taken): when the
    /// connection closes, the server calls
    /// [`Referent::connection_closed`](crate::Referent::connection_closed)
    /// on it.
    pub fn hold(&self) {
        self.hold.set(true);
    }

    /// Takes the flag [`CallContext::hold`] set (the registry records the
    /// object).
    pub(crate) fn take_hold(&self) -> bool {
        self.hold.replace(false)
    }

    /// Records `object` (named for the log by `name`) as holding something
    /// for this connection, once.
    pub(crate) fn record_held(&self, object: &Arc<dyn Referent>, name: impl FnOnce() -> String) {
        let mut held = self.session.held.lock();
        let ptr = Arc::as_ptr(object) as *const ();
        if held.iter().any(|(w, _)| w.as_ptr() as *const () == ptr) {
            return;
        }
        held.retain(|(w, _)| w.strong_count() > 0);
        held.push((Arc::downgrade(object), name()));
    }

    /// The objects this connection's calls said they hold something in
    /// (those still alive, with their names), emptying the list.
    pub(crate) fn take_held(&self) -> Vec<(Arc<dyn Referent>, String)> {
        std::mem::take(&mut *self.session.held.lock())
            .into_iter()
            .filter_map(|(w, name)| Some((w.upgrade()?, name)))
            .collect()
    }
}

/// Cancels a [`CallContext`] from another thread: its current and later
/// [`CallContext::wait`]s return [`Waited::Cancelled`].
#[derive(Clone, Debug)]
pub struct CancelHandle {
    session: Weak<Session>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("cancelled", &self.cancelled.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl CancelHandle {
    /// Cancels the context and wakes its current wait. Returns true if the
    /// context was waiting (the canceller should then call
    /// [`CancelHandle::wake_again`] a little later until it returns false,
    /// which closes the window between a wait's last check and its sleep).
    pub fn cancel(&self) -> bool {
        match self.session.upgrade() {
            Some(s) => {
                s.cancelled.store(true, Ordering::SeqCst);
                s.wake()
            }
            None => false,
        }
    }

    /// Wakes the context's current wait again; false once it waits no more
    /// (or the connection is gone).
    pub fn wake_again(&self) -> bool {
        self.session.upgrade().is_some_and(|s| s.wake())
    }

    /// True once the context is cancelled (or its connection gone); asks
    /// the context's hang-up probe, if it has one.
    pub fn is_cancelled(&self) -> bool {
        self.session.upgrade().is_none_or(|s| s.is_cancelled())
    }
}

/// What [`Referent::connection_closed`](crate::Referent::connection_closed)
/// is told about a connection that closed.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Closed {
    /// The connection ([`CallContext::connection`]).
    pub connection: u64,
    /// Also release what has no owner in CPython's model (a plain `Lock`,
    /// a semaphore's permits) that this connection acquired and did not
    /// release: the server's `--release-on-disconnect` policy.
    pub release_unowned: bool,
}

impl Closed {
    /// A closed connection `connection`, with the policy for unowned
    /// primitives.
    pub fn new(connection: u64, release_unowned: bool) -> Closed {
        Closed {
            connection,
            release_unowned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cancel_wakes_a_waiter_without_a_deadline() {
        let m = Arc::new(Mutex::new(false));
        let cv = Arc::new(Condvar::new());
        let cx = CallContext::new(1);
        let h = cx.cancel_handle();
        let (m2, cv2) = (m.clone(), cv.clone());
        let t = std::thread::spawn(move || {
            let mut g = m2.lock();
            loop {
                match cx.wait(&cv2, &mut g, None) {
                    Waited::Woken => continue,
                    other => return other,
                }
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        h.cancel();
        // Cover the window between the wait's check and its sleep.
        let start = Instant::now();
        while !t.is_finished() && start.elapsed() < Duration::from_secs(5) {
            h.wake_again();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(t.join().unwrap(), Waited::Cancelled);
    }

    #[test]
    fn a_cancelled_context_does_not_wait() {
        let (m, cv) = (Mutex::new(()), Condvar::new());
        let cx = CallContext::new(1);
        cx.cancel_handle().cancel();
        let mut g = m.lock();
        assert_eq!(cx.wait(&cv, &mut g, None), Waited::Cancelled);
    }

    #[test]
    fn held_objects_are_recorded_once() {
        struct Nothing;
        impl Referent for Nothing {
            fn class_name(&self) -> &str {
                "Nothing"
            }
            fn call(
                &self,
                _: &CallContext,
                _: &str,
                _: &[mpmanager_pickle::Value],
                _: &crate::Kwargs,
            ) -> Result<crate::Outcome, crate::CallError> {
                Ok(crate::Outcome::none())
            }
            fn repr(&self) -> Result<String, mpmanager_pickle::PyErr> {
                Ok("Nothing".into())
            }
            fn get_value(&self) -> Result<mpmanager_pickle::Value, mpmanager_pickle::PyErr> {
                Ok(mpmanager_pickle::Value::None)
            }
        }
        let cx = CallContext::new(1);
        let o: Arc<dyn Referent> = Arc::new(Nothing);
        cx.record_held(&o, || "one".into());
        cx.record_held(&o, || "two".into());
        assert_eq!(cx.take_held().len(), 1);
        assert!(cx.take_held().is_empty());
    }
}
