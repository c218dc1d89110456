//! A dead client's calls: cancelled waits take nothing, undelivered replies
//! are undone, and what a closed connection held is released. Each
//! "connection" is a `CallContext` kept for all its calls (as the server
//! keeps one per served connection); blocking calls run on their own
//! threads.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mpmanager_objects::{CallContext, CallError, Kwargs, Registry, Reply};
use mpmanager_pickle::{decode, Value};

const BLOCKED: Duration = Duration::from_millis(150);
const PROMPT: Duration = Duration::from_secs(10);

fn reg() -> Arc<Registry> {
    Arc::new(Registry::with_builtin_types())
}

fn create(reg: &Registry, typeid: &str, a: &[Value]) -> String {
    reg.create(typeid, a, &Kwargs::new()).unwrap().0
}

fn call(
    reg: &Registry,
    cx: &CallContext,
    ident: &str,
    m: &str,
    a: &[Value],
) -> Result<Value, CallError> {
    match reg.call(cx, ident, m, a, &Kwargs::new())? {
        Reply::Return(v) => Ok(v),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Starts `m` on `ident` from `cx` on a thread; the receiver gets the result.
fn spawn_call(
    reg: &Arc<Registry>,
    cx: &CallContext,
    ident: &str,
    m: &'static str,
    a: Vec<Value>,
) -> mpsc::Receiver<Result<Value, CallError>> {
    let (tx, rx) = mpsc::channel();
    let (reg, cx, ident) = (reg.clone(), cx.clone(), ident.to_string());
    thread::spawn(move || {
        let _ = tx.send(call(&reg, &cx, &ident, m, &a));
    });
    rx
}

/// Cancels `cx` and keeps waking it until the call has returned.
fn cancel(
    cx: &CallContext,
    rx: &mpsc::Receiver<Result<Value, CallError>>,
) -> Result<Value, CallError> {
    let h = cx.cancel_handle();
    h.cancel();
    for _ in 0..(PROMPT.as_millis() / 10) {
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(10)) {
            return r;
        }
        h.wake_again();
    }
    panic!("a cancelled call did not return");
}

fn decimal_zero() -> Value {
    // pickle.dumps(decimal.Decimal(0), 4)
    let hex =
        "8004951f000000000000008c07646563696d616c948c07446563696d616c9493948c013094859452942e";
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    decode(&bytes).unwrap()
}

#[test]
fn blocking_decimal_zero_is_false_as_in_python() {
    // CPython: Semaphore(0).acquire(blocking=Decimal(0)) and a held
    // Lock's acquire(Decimal(0)) return False at once (bool(Decimal(0)) is
    // False); an opaque object used to count as true and block forever.
    let reg = reg();
    let cx = CallContext::new(1);
    let s = create(&reg, "Semaphore", &[Value::Int(0)]);
    let rx = spawn_call(&reg, &cx, &s, "acquire", vec![decimal_zero()]);
    assert!(matches!(
        rx.recv_timeout(PROMPT).unwrap(),
        Ok(Value::Bool(false))
    ));
    let l = create(&reg, "Lock", &[]);
    call(&reg, &cx, &l, "acquire", &[]).unwrap();
    let other = CallContext::new(2);
    let rx = spawn_call(&reg, &other, &l, "acquire", vec![decimal_zero()]);
    assert!(matches!(
        rx.recv_timeout(PROMPT).unwrap(),
        Ok(Value::Bool(false))
    ));
}

#[test]
fn cancelled_get_takes_no_item_and_passes_the_wakeup_on() {
    let reg = reg();
    let q = create(&reg, "Queue", &[]);
    let (dead, live) = (CallContext::new(1), CallContext::new(2));
    let dead_rx = spawn_call(&reg, &dead, &q, "get", vec![]);
    thread::sleep(BLOCKED);
    let live_rx = spawn_call(&reg, &live, &q, "get", vec![]);
    thread::sleep(BLOCKED);
    assert!(matches!(cancel(&dead, &dead_rx), Err(CallError::Cancelled)));
    call(&reg, &CallContext::new(3), &q, "put", &[Value::Int(7)]).unwrap();
    assert_eq!(
        live_rx.recv_timeout(PROMPT).unwrap().unwrap().as_i64(),
        Some(7)
    );
}

#[test]
fn lost_get_reply_puts_the_item_back_at_the_head() {
    let reg = reg();
    let q = create(&reg, "Queue", &[]);
    let cx = CallContext::new(1);
    for i in 1..=2 {
        call(&reg, &cx, &q, "put", &[Value::Int(i)]).unwrap();
    }
    let got = call(&reg, &cx, &q, "get", &[]).unwrap();
    let what = reg.reply_lost(&cx, &q, "get", &got).expect("undone");
    assert!(what.contains("put back"), "{what}");
    assert_eq!(call(&reg, &cx, &q, "get", &[]).unwrap().as_i64(), Some(1));
    assert_eq!(call(&reg, &cx, &q, "get", &[]).unwrap().as_i64(), Some(2));
    // Nothing to undo for other calls.
    assert!(reg.reply_lost(&cx, &q, "qsize", &Value::Int(0)).is_none());
}

#[test]
fn cancelled_put_adds_nothing() {
    let reg = reg();
    let q = create(&reg, "Queue", &[Value::Int(1)]);
    let cx = CallContext::new(1);
    call(&reg, &cx, &q, "put", &[Value::str("A")]).unwrap();
    let dead = CallContext::new(2);
    let rx = spawn_call(&reg, &dead, &q, "put", vec![Value::str("B")]);
    thread::sleep(BLOCKED);
    assert!(matches!(cancel(&dead, &rx), Err(CallError::Cancelled)));
    assert_eq!(call(&reg, &cx, &q, "get", &[]).unwrap().as_str(), Some("A"));
    assert_eq!(call(&reg, &cx, &q, "qsize", &[]).unwrap().as_i64(), Some(0));
}

#[test]
fn rlock_held_by_a_closed_connection_is_released_at_every_level() {
    let reg = reg();
    let r = create(&reg, "RLock", &[]);
    let dead = CallContext::new(1);
    call(&reg, &dead, &r, "acquire", &[]).unwrap();
    call(&reg, &dead, &r, "acquire", &[]).unwrap();
    let live = CallContext::new(2);
    let rx = spawn_call(&reg, &live, &r, "acquire", vec![]);
    thread::sleep(BLOCKED);
    assert!(rx.try_recv().is_err(), "the RLock is held");
    let released = reg.connection_closed(&dead, false);
    assert_eq!(released.len(), 1, "{released:?}");
    assert!(released[0].contains("2 levels"), "{released:?}");
    assert!(matches!(
        rx.recv_timeout(PROMPT).unwrap(),
        Ok(Value::Bool(true))
    ));
    // Released once: the connection holds nothing any more.
    assert!(reg.connection_closed(&dead, false).is_empty());
}

#[test]
fn lock_and_permits_are_released_only_with_release_on_disconnect() {
    let reg = reg();
    let l = create(&reg, "Lock", &[]);
    let s = create(&reg, "Semaphore", &[Value::Int(2)]);
    let dead = CallContext::new(1);
    call(&reg, &dead, &l, "acquire", &[]).unwrap();
    call(&reg, &dead, &s, "acquire", &[]).unwrap();
    call(&reg, &dead, &s, "acquire", &[]).unwrap();
    let (a, b) = (dead.clone(), CallContext::new(9));
    // Without the policy nothing is released (CPython lets others release).
    assert!(reg.connection_closed(&a, false).is_empty());
    assert!(matches!(
        call(&reg, &b, &l, "acquire", &[Value::Bool(false)]),
        Ok(Value::Bool(false))
    ));

    let dead = CallContext::new(3);
    let l2 = create(&reg, "Lock", &[]);
    let s2 = create(&reg, "BoundedSemaphore", &[Value::Int(2)]);
    call(&reg, &dead, &l2, "acquire", &[]).unwrap();
    call(&reg, &dead, &s2, "acquire", &[]).unwrap();
    call(&reg, &dead, &s2, "acquire", &[]).unwrap();
    // A permit released by the holder itself is not returned twice.
    call(&reg, &dead, &s2, "release", &[]).unwrap();
    let released = reg.connection_closed(&dead, true);
    assert_eq!(released.len(), 2, "{released:?}");
    assert!(matches!(
        call(&reg, &b, &l2, "acquire", &[Value::Bool(false)]),
        Ok(Value::Bool(true))
    ));
    let repr = call(&reg, &b, &s2, "__repr__", &[]).unwrap();
    assert!(repr.as_str().unwrap().ends_with("value=2/2>"), "{repr:?}");
}

#[test]
fn dead_condition_waiter_takes_no_notification_and_no_lock() {
    let reg = reg();
    let c = create(&reg, "Condition", &[]);
    let (dead, live, notifier) = (
        CallContext::new(1),
        CallContext::new(2),
        CallContext::new(3),
    );
    call(&reg, &dead, &c, "acquire", &[]).unwrap();
    let dead_rx = spawn_call(&reg, &dead, &c, "wait", vec![]);
    thread::sleep(BLOCKED);
    call(&reg, &live, &c, "acquire", &[]).unwrap();
    let live_rx = spawn_call(&reg, &live, &c, "wait", vec![Value::Int(10)]);
    thread::sleep(BLOCKED);
    assert!(matches!(cancel(&dead, &dead_rx), Err(CallError::Cancelled)));
    assert!(
        reg.connection_closed(&dead, false).is_empty(),
        "the dead waiter holds nothing"
    );
    call(&reg, &notifier, &c, "acquire", &[]).unwrap();
    call(&reg, &notifier, &c, "notify", &[]).unwrap();
    call(&reg, &notifier, &c, "release", &[]).unwrap();
    assert!(matches!(
        live_rx.recv_timeout(PROMPT).unwrap(),
        Ok(Value::Bool(true))
    ));
}

#[test]
fn notification_given_to_a_waiter_that_dies_goes_to_the_next() {
    let reg = reg();
    let c = create(&reg, "Condition", &[]);
    let (dead, live, notifier) = (
        CallContext::new(1),
        CallContext::new(2),
        CallContext::new(3),
    );
    // The notifier holds the lock, so the notified dead waiter cannot
    // return before it is cancelled.
    call(&reg, &dead, &c, "acquire", &[]).unwrap();
    let dead_rx = spawn_call(&reg, &dead, &c, "wait", vec![]);
    thread::sleep(BLOCKED);
    call(&reg, &live, &c, "acquire", &[]).unwrap();
    let live_rx = spawn_call(&reg, &live, &c, "wait", vec![Value::Int(10)]);
    thread::sleep(BLOCKED);
    call(&reg, &notifier, &c, "acquire", &[]).unwrap();
    call(&reg, &notifier, &c, "notify", &[]).unwrap();
    thread::sleep(BLOCKED);
    assert!(matches!(cancel(&dead, &dead_rx), Err(CallError::Cancelled)));
    call(&reg, &notifier, &c, "release", &[]).unwrap();
    assert!(matches!(
        live_rx.recv_timeout(PROMPT).unwrap(),
        Ok(Value::Bool(true))
    ));
}

#[test]
fn barrier_breaks_when_a_waiting_party_is_cancelled() {
    let reg = reg();
    let b = create(&reg, "Barrier", &[Value::Int(2)]);
    let dead = CallContext::new(1);
    let rx = spawn_call(&reg, &dead, &b, "wait", vec![]);
    thread::sleep(BLOCKED);
    assert!(matches!(cancel(&dead, &rx), Err(CallError::Cancelled)));
    let live = CallContext::new(2);
    let e = call(&reg, &live, &b, "wait", &[Value::Int(5)]).unwrap_err();
    assert_eq!(e.to_string(), "BrokenBarrierError");
}

#[test]
fn barrier_last_arrival_sees_a_dead_party_before_its_watcher_does() {
    let reg = reg();
    let b = create(&reg, "Barrier", &[Value::Int(2)]);
    // A party whose client is gone, known only to its hang-up probe.
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let g2 = gone.clone();
    let dead =
        CallContext::with_hangup_probe(1, move || g2.load(std::sync::atomic::Ordering::SeqCst));
    let rx = spawn_call(&reg, &dead, &b, "wait", vec![]);
    thread::sleep(BLOCKED);
    gone.store(true, std::sync::atomic::Ordering::SeqCst);
    let e = call(&reg, &CallContext::new(2), &b, "wait", &[Value::Int(5)]).unwrap_err();
    assert_eq!(e.to_string(), "BrokenBarrierError");
    assert!(matches!(
        rx.recv_timeout(PROMPT).unwrap(),
        Err(CallError::Cancelled)
    ));
}

#[test]
fn cancelled_semaphore_waiter_takes_no_permit() {
    let reg = reg();
    let s = create(&reg, "Semaphore", &[Value::Int(0)]);
    let dead = CallContext::new(1);
    let rx = spawn_call(&reg, &dead, &s, "acquire", vec![]);
    thread::sleep(BLOCKED);
    assert!(matches!(cancel(&dead, &rx), Err(CallError::Cancelled)));
    let live = CallContext::new(2);
    call(&reg, &live, &s, "release", &[]).unwrap();
    assert!(matches!(
        call(&reg, &live, &s, "acquire", &[Value::Bool(false)]),
        Ok(Value::Bool(true))
    ));
}
