//! Synchronisation types through the registry (as the server dispatches
//! them): Lock, RLock, Semaphore, BoundedSemaphore, Condition, Barrier.
//!
//! Client connections are modelled by `CallContext`s with different ids;
//! blocking calls run on their own threads. Timing bounds are loose (the
//! machine is shared): "blocks" means "has not returned after 150 ms",
//! "returns promptly" means "within 10 s".

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mpmanager_objects::{CallContext, CallError, Kwargs, Registry, Reply};
use mpmanager_pickle::{ExcType, Value};

const BLOCKED: Duration = Duration::from_millis(150);
const PROMPT: Duration = Duration::from_secs(10);

fn reg() -> Arc<Registry> {
    Arc::new(Registry::with_builtin_types())
}

fn create(reg: &Registry, typeid: &str, a: &[Value]) -> String {
    reg.create(typeid, a, &Kwargs::new())
        .unwrap_or_else(|e| panic!("create {typeid}: {e}"))
        .0
}

fn create_kw(reg: &Registry, typeid: &str, a: &[Value], kw: Vec<(&str, Value)>) -> String {
    let kw = Kwargs::from_pairs(kw.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    reg.create(typeid, a, &kw)
        .unwrap_or_else(|e| panic!("create {typeid}: {e}"))
        .0
}

fn call(reg: &Registry, conn: u64, ident: &str, m: &str, a: &[Value]) -> Result<Value, CallError> {
    match reg.call(&CallContext::new(conn), ident, m, a, &Kwargs::new())? {
        Reply::Return(v) => Ok(v),
        other => panic!("unexpected reply {other:?}"),
    }
}

fn ok(reg: &Registry, conn: u64, ident: &str, m: &str, a: &[Value]) -> Value {
    call(reg, conn, ident, m, a).unwrap_or_else(|e| panic!("{m}{a:?} failed: {e}"))
}

fn yes(reg: &Registry, conn: u64, ident: &str, m: &str, a: &[Value]) -> bool {
    match ok(reg, conn, ident, m, a) {
        Value::Bool(b) => b,
        other => panic!("{m} returned {other:?}"),
    }
}

/// The `#ERROR` text (`Type: message`) of a failing call.
fn err(reg: &Registry, conn: u64, ident: &str, m: &str, a: &[Value]) -> String {
    match call(reg, conn, ident, m, a) {
        Err(CallError::Python(e)) => e.to_string(),
        other => panic!("{m}{a:?}: expected an #ERROR, got {other:?}"),
    }
}

fn repr(reg: &Registry, ident: &str) -> String {
    match ok(reg, 1, ident, "__repr__", &[]) {
        Value::Str(s) => s.to_string_lossy().into_owned(),
        other => panic!("{other:?}"),
    }
}

/// Runs `f` on a thread; returns a receiver for its result.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

fn still_blocked<T: std::fmt::Debug>(rx: &mpsc::Receiver<T>) {
    match rx.recv_timeout(BLOCKED) {
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        other => panic!("expected the call to block, got {other:?}"),
    }
}

fn done<T>(rx: &mpsc::Receiver<T>) -> T {
    rx.recv_timeout(PROMPT).expect("the blocked call returned")
}

// ---------------------------------------------------------------------------
// Lock

#[test]
fn lock_acquire_release_and_errors() {
    let r = reg();
    let l = create(&r, "Lock", &[]);
    assert!(repr(&r, &l).starts_with("<unlocked _thread.lock object at 0x"));
    assert!(!yes(&r, 1, &l, "locked", &[]));
    assert!(yes(&r, 1, &l, "acquire", &[]));
    assert!(repr(&r, &l).starts_with("<locked _thread.lock object at 0x"));
    assert!(yes(&r, 1, &l, "locked", &[]));
    // Not re-entrant, even for the same connection.
    assert!(!yes(&r, 1, &l, "acquire", &[Value::Bool(false)]));
    assert!(!yes(
        &r,
        1,
        &l,
        "acquire",
        &[Value::Bool(false), Value::Int(-1)]
    ));
    let t = Instant::now();
    assert!(!yes(
        &r,
        1,
        &l,
        "acquire",
        &[Value::Bool(true), Value::Float(0.1)]
    ));
    assert!(
        t.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t.elapsed()
    );
    assert!(!yes(
        &r,
        1,
        &l,
        "acquire",
        &[Value::Bool(true), Value::Int(0)]
    ));
    assert_eq!(
        err(&r, 1, &l, "acquire", &[Value::Bool(false), Value::Int(1)]),
        "ValueError: can't specify a timeout for a non-blocking call"
    );
    assert_eq!(
        err(&r, 1, &l, "acquire", &[Value::Bool(true), Value::Int(-2)]),
        "ValueError: timeout value must be a non-negative number"
    );
    assert_eq!(
        err(
            &r,
            1,
            &l,
            "acquire",
            &[Value::Bool(true), Value::Float(-0.5)]
        ),
        "ValueError: timeout value must be a non-negative number"
    );
    assert_eq!(
        err(&r, 1, &l, "acquire", &[Value::Bool(true), Value::str("x")]),
        "TypeError: 'str' object cannot be interpreted as an integer"
    );
    assert_eq!(
        err(
            &r,
            1,
            &l,
            "acquire",
            &[Value::Bool(true), Value::Float(f64::NAN)]
        ),
        "ValueError: Invalid value NaN (not a number)"
    );
    assert_eq!(
        err(
            &r,
            1,
            &l,
            "acquire",
            &[Value::Bool(true), Value::Float(1e300)]
        ),
        "OverflowError: timestamp out of range for platform time_t"
    );
    assert_eq!(
        err(
            &r,
            1,
            &l,
            "acquire",
            &[Value::Int(1), Value::Int(2), Value::Int(3)]
        ),
        "TypeError: acquire() takes at most 2 arguments (3 given)"
    );
    // Released by another connection: a Lock has no owner.
    assert!(matches!(ok(&r, 2, &l, "release", &[]), Value::None));
    assert_eq!(
        err(&r, 1, &l, "release", &[]),
        "RuntimeError: release unlocked lock"
    );
    // timeout=-1 is "no timeout".
    assert!(yes(
        &r,
        1,
        &l,
        "acquire",
        &[Value::Bool(true), Value::Int(-1)]
    ));
    ok(&r, 1, &l, "release", &[]);
    // A non-bool `blocking` is taken for its truth value (3.12+).
    assert!(yes(&r, 1, &l, "acquire", &[Value::None]));
    assert!(!yes(&r, 1, &l, "acquire", &[Value::str("")]));
    ok(&r, 1, &l, "release", &[]);
}

#[test]
fn lock_blocked_acquire_wakes_on_release_from_another_connection() {
    let r = reg();
    let l = create(&r, "Lock", &[]);
    assert!(yes(&r, 1, &l, "acquire", &[]));
    let (r2, l2) = (r.clone(), l.clone());
    let waiter = spawn(move || yes(&r2, 2, &l2, "acquire", &[]));
    still_blocked(&waiter);
    // Other connections are still served while one is blocked.
    assert!(!yes(&r, 3, &l, "acquire", &[Value::Bool(false)]));
    assert!(repr(&r, &l).starts_with("<locked"));
    ok(&r, 3, &l, "release", &[]);
    assert!(done(&waiter));
    assert!(yes(&r, 1, &l, "locked", &[]));
}

#[test]
fn lock_timed_acquire_succeeds_when_released_in_time() {
    let r = reg();
    let l = create(&r, "Lock", &[]);
    yes(&r, 1, &l, "acquire", &[]);
    let (r2, l2) = (r.clone(), l.clone());
    let waiter = spawn(move || yes(&r2, 2, &l2, "acquire", &[Value::Bool(true), Value::Int(30)]));
    still_blocked(&waiter);
    ok(&r, 1, &l, "release", &[]);
    assert!(done(&waiter));
}

#[test]
fn lock_mutual_exclusion_between_threads() {
    let r = reg();
    let l = create(&r, "Lock", &[]);
    let v = create(&r, "Value", &[Value::str("i"), Value::Int(0)]);
    let mut handles = Vec::new();
    for conn in 1..=4u64 {
        let (r, l, v) = (r.clone(), l.clone(), v.clone());
        handles.push(thread::spawn(move || {
            for _ in 0..200 {
                assert!(yes(&r, conn, &l, "acquire", &[]));
                let n = ok(&r, conn, &v, "get", &[]).as_i64().unwrap();
                thread::yield_now();
                ok(&r, conn, &v, "set", &[Value::Int(n + 1)]);
                ok(&r, conn, &l, "release", &[]);
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(ok(&r, 1, &v, "get", &[]).as_i64(), Some(800));
}

#[test]
fn lock_getvalue_is_unserializable_and_exposed_list() {
    let r = reg();
    let (l, exposed) = r.create("Lock", &[], &Kwargs::new()).unwrap();
    assert_eq!(exposed, ["acquire", "release", "locked"]);
    // CPython's server fails to pickle the lock it returns and sends
    // ('#UNSERIALIZABLE', traceback) instead.
    match r.call(&CallContext::new(1), &l, "#GETVALUE", &[], &Kwargs::new()) {
        Ok(Reply::Unserializable(e)) => {
            assert_eq!(
                e.to_string(),
                "TypeError: cannot pickle '_thread.lock' object"
            )
        }
        Ok(_) => panic!("#GETVALUE of a Lock returned a value"),
        Err(e) => panic!("{e}"),
    }
    assert!(r.create("Lock", &[Value::Int(1)], &Kwargs::new()).is_err());
}

// ---------------------------------------------------------------------------
// RLock

#[test]
fn rlock_is_owned_by_the_connection() {
    let r = reg();
    let l = create(&r, "RLock", &[]);
    assert!(repr(&r, &l).starts_with("<unlocked _thread.RLock object owner=0 count=0 at 0x"));
    for _ in 0..3 {
        assert!(yes(&r, 5, &l, "acquire", &[]));
    }
    assert!(repr(&r, &l).starts_with("<locked _thread.RLock object owner=5 count=3 at 0x"));
    assert!(yes(&r, 6, &l, "locked", &[]));
    assert!(!yes(&r, 6, &l, "acquire", &[Value::Bool(false)]));
    assert!(!yes(
        &r,
        6,
        &l,
        "acquire",
        &[Value::Bool(true), Value::Float(0.05)]
    ));
    assert_eq!(
        err(&r, 6, &l, "release", &[]),
        "RuntimeError: cannot release un-acquired lock"
    );
    assert_eq!(
        err(&r, 6, &l, "acquire", &[Value::Bool(false), Value::Int(3)]),
        "ValueError: can't specify a timeout for a non-blocking call"
    );
    for _ in 0..3 {
        assert!(matches!(ok(&r, 5, &l, "release", &[]), Value::None));
    }
    assert_eq!(
        err(&r, 5, &l, "release", &[]),
        "RuntimeError: cannot release un-acquired lock"
    );
    assert!(!yes(&r, 5, &l, "locked", &[]));
}

#[test]
fn rlock_waiter_gets_it_after_the_last_release() {
    let r = reg();
    let l = create(&r, "RLock", &[]);
    yes(&r, 1, &l, "acquire", &[]);
    yes(&r, 1, &l, "acquire", &[]);
    let (r2, l2) = (r.clone(), l.clone());
    let waiter = spawn(move || {
        let got = yes(&r2, 2, &l2, "acquire", &[]);
        (got, repr(&r2, &l2))
    });
    still_blocked(&waiter);
    ok(&r, 1, &l, "release", &[]);
    still_blocked(&waiter);
    ok(&r, 1, &l, "release", &[]);
    let (got, text) = done(&waiter);
    assert!(got);
    assert!(text.contains("owner=2 count=1"), "{text}");
}

// ---------------------------------------------------------------------------
// Semaphore / BoundedSemaphore

#[test]
fn semaphore_counts_and_errors() {
    let r = reg();
    let s = create(&r, "Semaphore", &[Value::Int(2)]);
    assert!(repr(&r, &s).starts_with("<threading.Semaphore at 0x"));
    assert!(repr(&r, &s).ends_with(": value=2>"));
    assert!(yes(&r, 1, &s, "acquire", &[]));
    assert!(yes(&r, 2, &s, "acquire", &[]));
    assert!(!yes(&r, 1, &s, "acquire", &[Value::Bool(false)]));
    let t = Instant::now();
    assert!(!yes(
        &r,
        1,
        &s,
        "acquire",
        &[Value::Bool(true), Value::Float(0.1)]
    ));
    assert!(t.elapsed() >= Duration::from_millis(90));
    // A negative timeout is a non-blocking attempt for a Python semaphore.
    assert!(!yes(
        &r,
        1,
        &s,
        "acquire",
        &[Value::Bool(true), Value::Int(-1)]
    ));
    assert_eq!(
        err(&r, 1, &s, "acquire", &[Value::Bool(false), Value::Int(1)]),
        "ValueError: can't specify timeout for non-blocking acquire"
    );
    // Unbounded: releases beyond the initial value are fine, by anyone.
    for _ in 0..3 {
        assert!(matches!(ok(&r, 3, &s, "release", &[]), Value::None));
    }
    assert!(repr(&r, &s).ends_with(": value=3>"));
    ok(&r, 3, &s, "release", &[Value::Int(2)]);
    assert!(repr(&r, &s).ends_with(": value=5>"));
    assert_eq!(
        err(&r, 3, &s, "release", &[Value::Int(0)]),
        "ValueError: n must be one or more"
    );
    // Semaphores have no `locked` (3.14 exposes it anyway): a #TRACEBACK.
    assert!(matches!(
        call(&r, 1, &s, "locked", &[]),
        Err(CallError::Traceback(_))
    ));
    let e = r
        .create("Semaphore", &[Value::Int(-1)], &Kwargs::new())
        .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("ValueError: semaphore initial value must be >= 0"),
        "{e}"
    );
    let one = create_kw(&r, "Semaphore", &[], vec![("value", Value::Int(0))]);
    assert!(!yes(&r, 1, &one, "acquire", &[Value::Bool(false)]));
    let default = create(&r, "Semaphore", &[]);
    assert!(yes(&r, 1, &default, "acquire", &[Value::Bool(false)]));
    assert!(!yes(&r, 1, &default, "acquire", &[Value::Bool(false)]));
}

#[test]
fn semaphore_release_wakes_blocked_acquirers() {
    let r = reg();
    let s = create(&r, "Semaphore", &[Value::Int(0)]);
    let waiters: Vec<_> = (0..3u64)
        .map(|i| {
            let (r, s) = (r.clone(), s.clone());
            spawn(move || yes(&r, 10 + i, &s, "acquire", &[]))
        })
        .collect();
    for w in &waiters {
        still_blocked(w);
    }
    ok(&r, 1, &s, "release", &[Value::Int(2)]);
    let mut woken = 0;
    let deadline = Instant::now() + PROMPT;
    let mut pending: Vec<_> = waiters.into_iter().collect();
    while woken < 2 && Instant::now() < deadline {
        pending.retain(|w| match w.try_recv() {
            Ok(true) => {
                woken += 1;
                false
            }
            _ => true,
        });
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(woken, 2);
    assert_eq!(pending.len(), 1);
    still_blocked(&pending[0]);
    ok(&r, 1, &s, "release", &[]);
    assert!(done(&pending[0]));
}

#[test]
fn bounded_semaphore_refuses_over_release() {
    let r = reg();
    let s = create(&r, "BoundedSemaphore", &[Value::Int(2)]);
    assert!(repr(&r, &s).starts_with("<threading.BoundedSemaphore at 0x"));
    assert!(yes(&r, 1, &s, "acquire", &[]));
    assert!(repr(&r, &s).ends_with(": value=1/2>"));
    ok(&r, 2, &s, "release", &[]);
    assert_eq!(
        err(&r, 2, &s, "release", &[]),
        "ValueError: Semaphore released too many times"
    );
    assert!(yes(&r, 1, &s, "acquire", &[]));
    assert_eq!(
        err(&r, 2, &s, "release", &[Value::Int(2)]),
        "ValueError: Semaphore released too many times"
    );
    ok(&r, 2, &s, "release", &[Value::Int(1)]);
}

// ---------------------------------------------------------------------------
// Condition

#[test]
fn condition_requires_the_lock() {
    let r = reg();
    let (c, exposed) = r.create("Condition", &[], &Kwargs::new()).unwrap();
    assert_eq!(
        exposed,
        [
            "acquire",
            "release",
            "locked",
            "wait",
            "notify",
            "notify_all"
        ]
    );
    assert!(
        repr(&r, &c).starts_with("<Condition(<unlocked _thread.RLock object owner=0 count=0 at 0x")
    );
    assert!(repr(&r, &c).ends_with(", 0)>"));
    assert_eq!(
        err(&r, 1, &c, "wait", &[Value::Int(0)]),
        "RuntimeError: cannot wait on un-acquired lock"
    );
    assert_eq!(
        err(&r, 1, &c, "notify", &[]),
        "RuntimeError: cannot notify on un-acquired lock"
    );
    assert_eq!(
        err(&r, 1, &c, "notify_all", &[]),
        "RuntimeError: cannot notify on un-acquired lock"
    );
    assert!(yes(&r, 1, &c, "acquire", &[]));
    // Held by connection 1, not by 2.
    assert_eq!(
        err(&r, 2, &c, "wait", &[Value::Int(0)]),
        "RuntimeError: cannot wait on un-acquired lock"
    );
    assert_eq!(
        err(&r, 2, &c, "release", &[]),
        "RuntimeError: cannot release un-acquired lock"
    );
    assert!(!yes(&r, 1, &c, "wait", &[Value::Int(0)]));
    assert!(!yes(&r, 1, &c, "wait", &[Value::Int(-1)]));
    let t = Instant::now();
    assert!(!yes(&r, 1, &c, "wait", &[Value::Float(0.1)]));
    assert!(t.elapsed() >= Duration::from_millis(90));
    ok(&r, 1, &c, "notify", &[]);
    ok(&r, 1, &c, "notify_all", &[]);
    assert!(yes(&r, 1, &c, "locked", &[]));
    assert!(repr(&r, &c).contains("owner=1 count=1"));
    ok(&r, 1, &c, "release", &[]);
    assert!(!yes(&r, 1, &c, "locked", &[]));
}

fn lock_proxy(typeid: &str, ident: &str) -> Value {
    use mpmanager_objects::proxy::{ProxyRef, PyAddress, Token};
    ProxyRef::class_proxy(
        "AcquirerProxy",
        Token::new(typeid, PyAddress::tcp("127.0.0.1", 1), ident),
    )
    .to_value()
}

#[test]
fn condition_on_a_shared_lock() {
    let r = reg();
    let l = create(&r, "Lock", &[]);
    let c = create(&r, "Condition", &[lock_proxy("Lock", &l)]);
    assert!(repr(&r, &c).starts_with("<Condition(<unlocked _thread.lock object at 0x"));
    // Acquiring the condition acquires the shared lock, and vice versa.
    assert!(yes(&r, 1, &c, "acquire", &[]));
    assert!(repr(&r, &l).starts_with("<locked"));
    assert!(!yes(&r, 2, &l, "acquire", &[Value::Bool(false)]));
    assert!(!yes(&r, 1, &c, "wait", &[Value::Int(0)]));
    ok(&r, 1, &c, "notify", &[]);
    // Plain-lock semantics: held by anyone counts as owned, anyone releases.
    ok(&r, 2, &l, "release", &[]);
    assert_eq!(
        err(&r, 1, &c, "release", &[]),
        "RuntimeError: release unlocked lock"
    );
    assert_eq!(
        err(&r, 1, &c, "wait", &[Value::Int(0)]),
        "RuntimeError: cannot wait on un-acquired lock"
    );
    yes(&r, 2, &l, "acquire", &[]);
    assert!(!yes(&r, 1, &c, "wait", &[Value::Int(0)]));
    // wait/notify between connections.
    let (r2, c2) = (r.clone(), c.clone());
    let waiter = spawn(move || {
        yes(&r2, 3, &c2, "acquire", &[]);
        let got = yes(&r2, 3, &c2, "wait", &[Value::Int(30)]);
        ok(&r2, 3, &c2, "release", &[]);
        got
    });
    ok(&r, 2, &l, "release", &[]);
    let deadline = Instant::now() + PROMPT;
    while !repr(&r, &c).ends_with(", 1)>") {
        assert!(Instant::now() < deadline, "the waiter did not wait");
        thread::sleep(Duration::from_millis(5));
    }
    yes(&r, 4, &c, "acquire", &[]);
    ok(&r, 4, &c, "notify", &[]);
    ok(&r, 4, &c, "release", &[]);
    assert!(done(&waiter));
    assert!(repr(&r, &c).starts_with("<Condition(<unlocked _thread.lock object at 0x"));
    // The condition keeps the shared lock alive.
    let mut seen = 0;
    r.get(&c).unwrap().visit_values(&mut |_| seen += 1);
    assert_eq!(seen, 1);
}

#[test]
fn condition_on_a_shared_rlock_fails_like_cpython() {
    // CPython's server calls the RLock through a proxy connection of its
    // own: the condition's acquire-probe sees the lock as not owned.
    let r = reg();
    let l = create(&r, "RLock", &[]);
    let c = create(&r, "Condition", &[lock_proxy("RLock", &l)]);
    assert!(yes(&r, 1, &c, "acquire", &[]));
    assert_eq!(
        err(&r, 1, &c, "wait", &[Value::Int(0)]),
        "RuntimeError: cannot wait on un-acquired lock"
    );
    assert_eq!(
        err(&r, 1, &c, "notify", &[]),
        "RuntimeError: cannot notify on un-acquired lock"
    );
    // Not the client connection's lock either.
    assert!(!yes(&r, 1, &l, "acquire", &[Value::Bool(false)]));
    assert_eq!(
        err(&r, 1, &l, "release", &[]),
        "RuntimeError: cannot release un-acquired lock"
    );
    ok(&r, 1, &c, "release", &[]);
    // Held by the client connection: the probe says "owned", the release
    // fails, and the waiter stays queued (as in CPython).
    assert!(yes(&r, 1, &l, "acquire", &[]));
    assert_eq!(
        err(&r, 1, &c, "wait", &[Value::Int(0)]),
        "RuntimeError: cannot release un-acquired lock"
    );
    assert!(repr(&r, &c).ends_with(", 1)>"), "{}", repr(&r, &c));
    ok(&r, 1, &c, "notify", &[]);
    assert!(repr(&r, &c).ends_with(", 0)>"));
    ok(&r, 1, &l, "release", &[]);
}

#[test]
fn condition_refuses_other_proxies_and_non_locks() {
    let r = reg();
    let s = create(&r, "list", &[]);
    let e = r
        .create("Condition", &[lock_proxy("list", &s)], &Kwargs::new())
        .unwrap_err();
    let CallError::Traceback(t) = e else { panic!() };
    assert!(
        t.contains("TypeError: mpmanager cannot build a Condition on this lock: a list proxy"),
        "{t}"
    );
    // A semaphore works like a plain lock (CPython's acquire/release fallback).
    let sem = create(&r, "Semaphore", &[]);
    let c = create(&r, "Condition", &[lock_proxy("Semaphore", &sem)]);
    assert!(yes(&r, 1, &c, "acquire", &[]));
    assert!(repr(&r, &c).contains("value=0>"), "{}", repr(&r, &c));
    assert!(!yes(&r, 1, &c, "wait", &[Value::Int(0)]));
    ok(&r, 2, &c, "release", &[]);
    assert!(repr(&r, &sem).ends_with("value=1>"));
    // An ident this registry does not have: another manager's lock.
    let e = r
        .create("Condition", &[lock_proxy("Lock", "7fffff")], &Kwargs::new())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("not a shared object of this manager"),
        "{e}"
    );
    // Our ident but another typeid: not ours either.
    let l = create(&r, "Lock", &[]);
    let e = r
        .create("Condition", &[lock_proxy("RLock", &l)], &Kwargs::new())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("not a shared object of this manager"),
        "{e}"
    );
    let e = r
        .create("Condition", &[Value::Int(5)], &Kwargs::new())
        .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("AttributeError: 'int' object has no attribute 'acquire'"),
        "{e}"
    );
}

#[test]
fn condition_wait_releases_all_levels_and_restores_them() {
    let r = reg();
    let c = create(&r, "Condition", &[]);
    let (r2, c2) = (r.clone(), c.clone());
    let (ready_tx, ready_rx) = mpsc::channel();
    let waiter = spawn(move || {
        yes(&r2, 7, &c2, "acquire", &[]);
        yes(&r2, 7, &c2, "acquire", &[]);
        yes(&r2, 7, &c2, "acquire", &[]);
        ready_tx.send(()).unwrap();
        let notified = yes(&r2, 7, &c2, "wait", &[Value::Int(30)]);
        let after = repr(&r2, &c2);
        // All three levels are back: three releases succeed, a fourth fails.
        for _ in 0..3 {
            ok(&r2, 7, &c2, "release", &[]);
        }
        let fourth = err(&r2, 7, &c2, "release", &[]);
        (notified, after, fourth)
    });
    ready_rx.recv_timeout(PROMPT).unwrap();
    // The waiter released the lock completely: another connection gets it.
    let t = Instant::now();
    assert!(yes(
        &r,
        8,
        &c,
        "acquire",
        &[Value::Bool(true), Value::Int(30)]
    ));
    assert!(t.elapsed() < PROMPT);
    assert!(repr(&r, &c).ends_with(", 1)>"), "{}", repr(&r, &c));
    ok(&r, 8, &c, "notify", &[]);
    // Notified, but it needs the lock back first.
    still_blocked(&waiter);
    ok(&r, 8, &c, "release", &[]);
    let (notified, after, fourth) = done(&waiter);
    assert!(notified);
    assert!(
        after.contains("<locked _thread.RLock object owner=7 count=3"),
        "{after}"
    );
    assert!(after.ends_with(", 0)>"), "{after}");
    assert_eq!(fourth, "RuntimeError: cannot release un-acquired lock");
}

/// Starts `n` waiters (connections 100..) each doing `acquire; wait(30);
/// release`, and waits until all of them are waiting.
fn start_waiters(r: &Arc<Registry>, c: &str, n: u64) -> Vec<mpsc::Receiver<bool>> {
    let rx: Vec<_> = (0..n)
        .map(|i| {
            let (r, c) = (r.clone(), c.to_string());
            spawn(move || {
                yes(&r, 100 + i, &c, "acquire", &[]);
                let got = yes(&r, 100 + i, &c, "wait", &[Value::Int(30)]);
                ok(&r, 100 + i, &c, "release", &[]);
                got
            })
        })
        .collect();
    let deadline = Instant::now() + PROMPT;
    while !repr(r, c).ends_with(&format!(", {n})>")) {
        assert!(Instant::now() < deadline, "waiters did not start");
        thread::sleep(Duration::from_millis(5));
    }
    rx
}

fn count_woken(rx: &mut Vec<mpsc::Receiver<bool>>, expect: usize) -> usize {
    let mut woken = 0;
    let deadline = Instant::now() + PROMPT;
    while woken < expect && Instant::now() < deadline {
        rx.retain(|w| match w.try_recv() {
            Ok(got) => {
                assert!(got, "a notified waiter returns True");
                woken += 1;
                false
            }
            Err(_) => true,
        });
        thread::sleep(Duration::from_millis(5));
    }
    // Nobody else wakes.
    thread::sleep(BLOCKED);
    rx.retain(|w| match w.try_recv() {
        Ok(_) => {
            woken += 1;
            false
        }
        Err(_) => true,
    });
    woken
}

#[test]
fn condition_notify_n_and_notify_all() {
    let r = reg();
    let c = create(&r, "Condition", &[]);
    let mut waiters = start_waiters(&r, &c, 6);
    yes(&r, 1, &c, "acquire", &[]);
    ok(&r, 1, &c, "notify", &[]);
    ok(&r, 1, &c, "release", &[]);
    assert_eq!(count_woken(&mut waiters, 1), 1);
    yes(&r, 1, &c, "acquire", &[]);
    ok(&r, 1, &c, "notify", &[Value::Int(2)]);
    ok(&r, 1, &c, "release", &[]);
    assert_eq!(count_woken(&mut waiters, 2), 2);
    yes(&r, 1, &c, "acquire", &[]);
    ok(&r, 1, &c, "notify", &[Value::Int(0)]);
    ok(&r, 1, &c, "notify", &[Value::Int(-3)]);
    ok(&r, 1, &c, "release", &[]);
    assert_eq!(count_woken(&mut waiters, 0), 0);
    yes(&r, 1, &c, "acquire", &[]);
    ok(&r, 1, &c, "notify_all", &[]);
    ok(&r, 1, &c, "release", &[]);
    assert_eq!(count_woken(&mut waiters, 3), 3);
    assert!(waiters.is_empty());
    assert!(repr(&r, &c).ends_with(", 0)>"));
}

#[test]
fn condition_timed_out_waiter_leaves_the_queue() {
    let r = reg();
    let c = create(&r, "Condition", &[]);
    yes(&r, 1, &c, "acquire", &[]);
    assert!(!yes(&r, 1, &c, "wait", &[Value::Float(0.05)]));
    assert!(repr(&r, &c).ends_with(", 0)>"));
    // A later notify is not "stored" for a future waiter.
    ok(&r, 1, &c, "notify", &[]);
    assert!(!yes(&r, 1, &c, "wait", &[Value::Float(0.05)]));
    assert_eq!(
        err(&r, 1, &c, "wait", &[Value::str("x")]),
        "TypeError: '>' not supported between instances of 'str' and 'int'"
    );
    // The lock is still held after the failed wait.
    assert!(repr(&r, &c).contains("owner=1 count=1"));
}

// ---------------------------------------------------------------------------
// Barrier

fn getattr(r: &Registry, b: &str, name: &str) -> Value {
    ok(r, 1, b, "__getattribute__", &[Value::str(name)])
}

fn broken(r: &Registry, b: &str) -> bool {
    matches!(getattr(r, b, "broken"), Value::Bool(true))
}

#[test]
fn barrier_generations_and_indices() {
    let r = reg();
    let (b, exposed) = r
        .create("Barrier", &[Value::Int(3)], &Kwargs::new())
        .unwrap();
    assert_eq!(exposed, ["__getattribute__", "wait", "abort", "reset"]);
    assert_eq!(getattr(&r, &b, "parties").as_i64(), Some(3));
    assert_eq!(getattr(&r, &b, "n_waiting").as_i64(), Some(0));
    assert!(!broken(&r, &b));
    assert!(repr(&r, &b).ends_with(": waiters=0/3>"));
    for _generation in 0..5 {
        let rx: Vec<_> = (0..3u64)
            .map(|i| {
                let (r, b) = (r.clone(), b.clone());
                spawn(move || ok(&r, 10 + i, &b, "wait", &[]).as_i64().unwrap())
            })
            .collect();
        let mut idx: Vec<i64> = rx.iter().map(done).collect();
        idx.sort();
        assert_eq!(idx, [0, 1, 2]);
    }
    assert_eq!(getattr(&r, &b, "n_waiting").as_i64(), Some(0));
    assert!(!broken(&r, &b));
}

#[test]
fn barrier_n_waiting_and_abort() {
    let r = reg();
    let b = create(&r, "Barrier", &[Value::Int(3)]);
    let rx: Vec<_> = (0..2u64)
        .map(|i| {
            let (r, b) = (r.clone(), b.clone());
            spawn(move || call(&r, 10 + i, &b, "wait", &[]).map_err(|e| e.to_string()))
        })
        .collect();
    let deadline = Instant::now() + PROMPT;
    while getattr(&r, &b, "n_waiting").as_i64() != Some(2) {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(5));
    }
    assert!(repr(&r, &b).ends_with(": waiters=2/3>"));
    ok(&r, 1, &b, "abort", &[]);
    for w in &rx {
        assert_eq!(done(w).unwrap_err(), "BrokenBarrierError");
    }
    assert!(broken(&r, &b));
    assert!(repr(&r, &b).ends_with(": broken>"));
    // Future waiters fail at once until reset().
    match call(&r, 1, &b, "wait", &[]) {
        Err(CallError::Python(e)) => {
            assert_eq!(e.ty.path(), ("threading", "BrokenBarrierError"));
            assert!(e.args.is_empty());
        }
        other => panic!("{other:?}"),
    }
    ok(&r, 1, &b, "reset", &[]);
    assert!(!broken(&r, &b));
}

#[test]
fn barrier_reset_breaks_current_waiters_then_works() {
    let r = reg();
    let b = create(&r, "Barrier", &[Value::Int(2)]);
    let (r2, b2) = (r.clone(), b.clone());
    let w = spawn(move || call(&r2, 2, &b2, "wait", &[]).map_err(|e| e.to_string()));
    let deadline = Instant::now() + PROMPT;
    while getattr(&r, &b, "n_waiting").as_i64() != Some(1) {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(5));
    }
    ok(&r, 1, &b, "reset", &[]);
    assert_eq!(done(&w).unwrap_err(), "BrokenBarrierError");
    assert!(!broken(&r, &b));
    // Usable again.
    let (r2, b2) = (r.clone(), b.clone());
    let w = spawn(move || ok(&r2, 2, &b2, "wait", &[]).as_i64().unwrap());
    let mine = ok(&r, 1, &b, "wait", &[Value::Int(30)]).as_i64().unwrap();
    let theirs = done(&w);
    let mut both = [mine, theirs];
    both.sort();
    assert_eq!(both, [0, 1]);
}

#[test]
fn barrier_timeouts_break_it() {
    let r = reg();
    let b = create(&r, "Barrier", &[Value::Int(2)]);
    let t = Instant::now();
    assert_eq!(
        err(&r, 1, &b, "wait", &[Value::Float(0.1)]),
        "BrokenBarrierError"
    );
    assert!(t.elapsed() >= Duration::from_millis(90));
    assert!(broken(&r, &b));
    assert_eq!(err(&r, 1, &b, "wait", &[]), "BrokenBarrierError");
    // The default timeout of the barrier applies to wait().
    let d = create_kw(
        &r,
        "Barrier",
        &[Value::Int(3)],
        vec![("timeout", Value::Float(0.1))],
    );
    assert!(matches!(getattr(&r, &d, "_timeout"), Value::Float(t) if t == 0.1));
    assert_eq!(err(&r, 1, &d, "wait", &[]), "BrokenBarrierError");
    assert!(broken(&r, &d));
    // A waiter already blocked is broken by another's timeout.
    let e = create(&r, "Barrier", &[Value::Int(3)]);
    let (r2, e2) = (r.clone(), e.clone());
    let w = spawn(move || call(&r2, 2, &e2, "wait", &[]).map_err(|e| e.to_string()));
    still_blocked(&w);
    assert_eq!(
        err(&r, 1, &e, "wait", &[Value::Float(0.05)]),
        "BrokenBarrierError"
    );
    assert_eq!(done(&w).unwrap_err(), "BrokenBarrierError");
    // Barrier(1) never waits.
    let one = create(&r, "Barrier", &[Value::Int(1)]);
    assert_eq!(ok(&r, 1, &one, "wait", &[]).as_i64(), Some(0));
    assert_eq!(ok(&r, 1, &one, "wait", &[]).as_i64(), Some(0));
}

#[test]
fn barrier_construction_errors_and_attributes() {
    let r = reg();
    let e = r
        .create("Barrier", &[Value::Int(0)], &Kwargs::new())
        .unwrap_err();
    assert!(
        e.to_string().ends_with("ValueError: parties must be > 0"),
        "{e}"
    );
    let action = Value::global("builtins", "print");
    let e = r
        .create("Barrier", &[Value::Int(2), action], &Kwargs::new())
        .unwrap_err();
    let CallError::Traceback(t) = e else { panic!() };
    assert!(
        t.contains("TypeError: mpmanager cannot run a Barrier action"),
        "{t}"
    );
    assert!(t.contains("does not execute Python code"), "{t}");
    let b = create(&r, "Barrier", &[Value::Int(4)]);
    assert_eq!(getattr(&r, &b, "_state").as_i64(), Some(0));
    match call(&r, 1, &b, "__getattribute__", &[Value::str("nosuch")]) {
        Err(CallError::Python(e)) => {
            assert_eq!(e.ty, ExcType::AttributeError);
            assert_eq!(
                e.to_string(),
                "AttributeError: 'Barrier' object has no attribute 'nosuch'"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        call(&r, 1, &b, "__getattribute__", &[Value::str("wait")]),
        Err(CallError::Traceback(_))
    ));
}
