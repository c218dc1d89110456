//! Custom Rust types (`#[shared_type]`) served by an in-process server and
//! called by unmodified CPython clients through their `AutoProxy`, for every
//! installed CPython 3.8+.
//!
//! The Python side compares each error our server raises with the error
//! CPython raises for a Python class with the same method signatures, run
//! locally in the same interpreter.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mpmanager_objects::{shared_type, CallContext, SharedType};
use mpmanager_pickle::{ExcType, PyErr, Value};
use mpmanager_server::{BackgroundServer, Registry, Server, ServerConfig};
use mpmanager_testutil::{pythons, ScriptOptions, TempDir};
use serde::{Deserialize, Serialize};

const KEY: &str = "custom-types-key";
const TIMEOUT: Duration = Duration::from_secs(120);

/// A Python number: `int` stays `int`, `float` stays `float`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
#[serde(untagged)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// The docs' `MathsClass`.
#[derive(Default)]
struct Maths;

#[shared_type]
impl Maths {
    fn add(&self, x: Num, y: Num) -> Num {
        match (x, y) {
            (Num::Int(a), Num::Int(b)) if a.checked_add(b).is_some() => Num::Int(a + b),
            _ => Num::Float(x.f() + y.f()),
        }
    }
    fn mul(&self, x: Num, y: Num) -> Num {
        match (x, y) {
            (Num::Int(a), Num::Int(b)) if a.checked_mul(b).is_some() => Num::Int(a * b),
            _ => Num::Float(x.f() * y.f()),
        }
    }
}

/// State behind a lock, keyword arguments, errors, containers, `None`.
#[derive(Serialize)]
struct Counter {
    value: Mutex<i64>,
    history: Mutex<Vec<i64>>,
}

#[shared_type]
impl Counter {
    #[mpmanager(constructor)]
    fn new(start: Option<i64>) -> Counter {
        Counter {
            value: Mutex::new(start.unwrap_or(0)),
            history: Mutex::new(Vec::new()),
        }
    }

    /// Adds `by` (default 1); returns the new value.
    fn incr(&self, by: Option<i64>) -> i64 {
        let mut v = self.value.lock().unwrap();
        *v += by.unwrap_or(1);
        self.history.lock().unwrap().push(*v);
        *v
    }

    fn value(&self) -> i64 {
        *self.value.lock().unwrap()
    }

    fn history(&self) -> Vec<i64> {
        self.history.lock().unwrap().clone()
    }

    fn stats(&self) -> BTreeMap<String, i64> {
        let h = self.history.lock().unwrap();
        BTreeMap::from([
            ("calls".to_string(), h.len() as i64),
            ("value".to_string(), self.value()),
        ])
    }

    /// Returns None.
    fn reset(&self) {
        *self.value.lock().unwrap() = 0;
        self.history.lock().unwrap().clear();
    }

    fn div(&self, d: i64) -> Result<i64, PyErr> {
        if d == 0 {
            return Err(PyErr::new(
                ExcType::ZeroDivisionError,
                "integer division or modulo by zero",
            ));
        }
        // Python's floor division.
        let v = self.value();
        let q = v / d;
        Ok(if v % d != 0 && ((v < 0) != (d < 0)) {
            q - 1
        } else {
            q
        })
    }

    fn set(&self, value: i64, label: Option<String>) -> Option<String> {
        *self.value.lock().unwrap() = value;
        label.map(|l| format!("{l}={value}"))
    }

    fn echo(&self, v: Value, cx: &CallContext) -> (Value, bool) {
        (v, cx.connection > 0)
    }

    #[mpmanager(skip)]
    fn _private(&self) {}
}

fn server(shared: Arc<Counter>) -> BackgroundServer {
    let registry = Arc::new(Registry::new());
    registry.register_type::<Maths>("Maths");
    registry.register_type::<Counter>("Counter");
    registry.register_shared("get_counter", shared);
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), KEY.as_bytes().to_vec());
    config.registry = Some(registry);
    Server::bind(config).unwrap().spawn().unwrap()
}

const PRELUDE: &str = r#"
import ast, gc, re, sys, multiprocessing
from multiprocessing.managers import BaseManager, RemoteError

address = ast.literal_eval(sys.argv[1])
key = sys.argv[2].encode()
multiprocessing.current_process().authkey = key

class MyManager(BaseManager):
    pass

MyManager.register('Maths')
MyManager.register('Counter')
MyManager.register('get_counter')
m = MyManager(address=address, authkey=key)
m.connect()
"#;

const CLIENT: &str = r#"
maths = m.Maths()
print(maths.add(4, 3))
print(maths.mul(7, 8))
print(maths.mul(1.5, 2))
print(sorted(maths._exposed_))
print(str(maths))

# The same signatures in Python, to compare TypeError texts with.
class Maths:
    def add(self, x, y): return x + y
class Counter:
    def __init__(self, start=None): pass
    def incr(self, by=None): pass
    def set(self, value, label=None): pass

def type_error(f, *a, **k):
    try:
        f(*a, **k)
    except TypeError as e:
        return str(e)
    raise AssertionError('no TypeError')

def last_line(e):
    # RemoteError's str() ends with a line of dashes.
    return [l for l in str(e).splitlines() if l.strip().strip('-')][-1]

def qualify(text, cls):
    # 3.8 and 3.9 name the function without its class; 3.10+ (and our
    # server) use the qualified name.
    if sys.version_info < (3, 10) and not text.startswith(cls + '.') \
            and not text.startswith(cls + '()'):
        text = cls + '.' + text
    return text

def expected(f, *a, **k):
    return qualify(type_error(f, *a, **k), type(f.__self__).__name__)

local_m, local_c = Maths(), Counter()
c = m.Counter(10)
cases = [
    (maths.add, local_m.add, (1,), {}),
    (maths.add, local_m.add, (1, 2, 3), {}),
    (maths.add, local_m.add, (1,), {'z': 2}),
    (maths.add, local_m.add, (1,), {'x': 2}),
    (maths.add, local_m.add, (), {}),
    (c.incr, local_c.incr, (1, 2), {}),
    (c.set, local_c.set, (), {'label': 'x'}),
]
for remote, local, a, k in cases:
    got, want = type_error(remote, *a, **k), expected(local, *a, **k)
    assert got == want, (got, want)
    print('TypeError:', got)

# Constructors: create errors come back as RemoteError tracebacks.
for create, cls, a in [(m.Maths, Maths, (1,)), (m.Counter, Counter, (1, 2))]:
    try:
        create(*a)
        raise AssertionError('created')
    except RemoteError as e:
        last = last_line(e)
        want = 'TypeError: ' + qualify(type_error(cls, *a), cls.__name__)
        assert last == want, (last, want)
        print('create:', last)

# State, keyword arguments, defaults, containers, None, Value, context.
print(c.incr(), c.incr(5), c.incr(by=-2))
print(c.value(), c.history(), c.stats())
print(c.set(3), c.set(value=4, label='four'), c.value())
print(c.reset(), c.value(), c.history())
print(c.echo([1, ('a', None)]))
c.set(7)
print(c.div(2), c.div(-2))
try:
    c.div(0)
except ZeroDivisionError as e:
    print('ZeroDivisionError:', e)
try:
    c.incr('x')
except TypeError as e:
    print('TypeError:', e)
print(c._getvalue())
try:
    maths._getvalue()
except RemoteError as e:
    print('getvalue:', last_line(e))
try:
    c._callmethod('_private')
except Exception as e:
    print(type(e).__name__, last_line(e))
print(sorted(c._exposed_))

print('objects:', m._number_of_objects())
del maths, c, cases, remote, local  # (the bound methods hold proxies too)
gc.collect()
print('objects:', m._number_of_objects())
"#;

const SHARED: &str = r#"
shared = m.get_counter()
before = shared.value()
after = shared.incr(by=int(sys.argv[3]))
print(before, after, shared.history()[-1])
other = m.get_counter()
print(other.value() == after, other._token.id == shared._token.id)
del shared, other
gc.collect()
print('objects:', m._number_of_objects())
"#;

fn expected_client_lines(module: &str) -> Vec<String> {
    let te = |s: &str| format!("TypeError: {s}");
    vec![
        "7".into(),
        "56".into(),
        "3.0".into(),
        "['add', 'mul']".into(),
        format!("<{module}.Maths object at 0x"),
        te("Maths.add() missing 1 required positional argument: 'y'"),
        te("Maths.add() takes 3 positional arguments but 4 were given"),
        te("Maths.add() got an unexpected keyword argument 'z'"),
        te("Maths.add() got multiple values for argument 'x'"),
        te("Maths.add() missing 2 required positional arguments: 'x' and 'y'"),
        te("Counter.incr() takes from 1 to 2 positional arguments but 3 were given"),
        te("Counter.set() missing 1 required positional argument: 'value'"),
        "create: TypeError: Maths() takes no arguments".into(),
        "create: TypeError: Counter.__init__() takes from 1 to 2 positional arguments but 3 were given".into(),
        "11 16 14".into(),
        "14 [11, 16, 14] {'calls': 3, 'value': 14}".into(),
        "None four=4 4".into(),
        "None 0 []".into(),
        "([1, ('a', None)], True)".into(),
        "3 -4".into(),
        "ZeroDivisionError: integer division or modulo by zero".into(),
        // serde's own wording for the conversion failure:
        "TypeError: Counter.incr() argument 'by': ".into(),
        "{'value': 7, 'history': []}".into(),
        "getvalue: TypeError: cannot pickle 'Maths' object".into(),
        "RemoteError KeyError: '_private'".into(),
        "['div', 'echo', 'history', 'incr', 'reset', 'set', 'stats', 'value']".into(),
        "objects: 2".into(),
        "objects: 0".into(),
    ]
}

fn run(
    py: &mpmanager_testutil::Python,
    dir: &TempDir,
    name: &str,
    body: &str,
    args: &[&str],
) -> String {
    let script = dir.0.join(format!("{name}.py"));
    std::fs::write(&script, format!("{PRELUDE}\n{body}")).unwrap();
    py.run_script(&script, args, &ScriptOptions::default(), TIMEOUT)
        .into_result(&format!("python {} {name}", py.label()))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn cpython_autoproxy_calls_rust_types() {
    let pys = pythons();
    if pys.is_empty() {
        eprintln!("no CPython found: skipped");
        return;
    }
    let shared = Arc::new(Counter::new(None));
    let srv = server(shared.clone());
    let addr = srv.python_address().to_string();
    let dir = TempDir::new("custom");
    let module = module_path!().replace("::", ".");
    for py in &pys {
        let out = run(py, &dir, "client", CLIENT, &[&addr, KEY]);
        let lines: Vec<&str> = out.lines().collect();
        let want = expected_client_lines(&module);
        eprintln!("python {}: {} lines", py.label(), lines.len());
        assert_eq!(lines.len(), want.len(), "python {}:\n{out}", py.label());
        for (got, want) in lines.iter().zip(&want) {
            // Lines ending in an open-ended prefix (an address, serde's
            // wording) are compared by prefix.
            let ok = if want.ends_with("0x") || want.ends_with(": ") {
                got.starts_with(want.as_str()) && got.len() > want.len()
            } else {
                got == want
            };
            assert!(
                ok,
                "python {}: got {got:?}, want {want:?}\n{out}",
                py.label()
            );
        }
        // str(proxy) is CPython's default repr shape.
        let repr = lines[4];
        let hex = repr
            .strip_prefix(&format!("<{module}.Maths object at 0x"))
            .and_then(|r| r.strip_suffix('>'))
            .unwrap_or_else(|| panic!("{repr}"));
        assert!(
            !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "{repr}"
        );
        assert_eq!(srv.registry().number_of_objects(), 0);
    }

    // One shared object, seen by successive client processes and by Rust.
    let mut total = 0;
    for (i, py) in pys.iter().enumerate() {
        let by = i as i64 + 2;
        let out = run(py, &dir, "shared", SHARED, &[&addr, KEY, &by.to_string()]);
        let want = format!(
            "{total} {after} {after}\nTrue True\nobjects: 0\n",
            after = total + by
        );
        assert_eq!(out, want, "python {}", py.label());
        total += by;
        assert_eq!(shared.value(), total);
    }
    assert_eq!(srv.registry().number_of_objects(), 0);
    srv.shutdown();
    srv.join().unwrap();
}

#[test]
fn shared_object_is_used_by_two_concurrent_client_processes() {
    let Some(py) = mpmanager_testutil::newest_python() else {
        eprintln!("no CPython found: skipped");
        return;
    };
    let shared = Arc::new(Counter::new(Some(100)));
    let srv = server(shared.clone());
    let addr = srv.python_address().to_string();
    let dir = TempDir::new("custom");
    // Two processes at once, each incrementing 200 times by 1.
    let body = r#"
c = m.get_counter()
for _ in range(200):
    c.incr()
print('done')
"#;
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let py = py.clone();
            let script = dir.0.join(format!("conc{i}.py"));
            std::fs::write(&script, format!("{PRELUDE}\n{body}")).unwrap();
            let addr = addr.clone();
            std::thread::spawn(move || {
                py.run_script(&script, &[&addr, KEY], &ScriptOptions::default(), TIMEOUT)
                    .into_result("concurrent client")
            })
        })
        .collect();
    for h in handles {
        assert_eq!(
            h.join().unwrap().unwrap_or_else(|e| panic!("{e}")),
            "done\n"
        );
    }
    assert_eq!(shared.value(), 500);
    assert_eq!(shared.history().len(), 400);
    srv.shutdown();
    srv.join().unwrap();
}

#[test]
fn exposed_lists_are_sorted_public_methods() {
    assert_eq!(Maths::EXPOSED, ["add", "mul"]);
    assert_eq!(
        Counter::EXPOSED,
        ["div", "echo", "history", "incr", "reset", "set", "stats", "value"]
    );
    assert_eq!(
        Counter::python_class(),
        format!("{}.Counter", module_path!().replace("::", "."))
    );
}
