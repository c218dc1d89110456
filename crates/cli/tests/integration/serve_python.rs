//! Unmodified CPython clients (every installed 3.8+) against the
//! `mpmanager serve` binary over unix and TCP sockets: SyncManager's data
//! types, nested proxies, named shared objects, refcounts, `_debug_info`.

use crate::serve_common;

use mpmanager_testutil::pythons;
use serve_common::*;

/// The main scenario; every assertion runs inside Python.
const SCENARIO: &str = r#"
m = SyncManager(address=address, authkey=key)
m.connect()
start = m._number_of_objects()

# --- Namespace
n = m.Namespace()
n.x = 10
n.y = 'hello'
assert n.x == 10 and n.y == 'hello'
assert hasattr(n, 'x') and not hasattr(n, 'z')
assert str(n) == "Namespace(x=10, y='hello')", str(n)
n._hidden = 'local only'
assert str(n) == "Namespace(x=10, y='hello')", str(n)
del n.y
assert not hasattr(n, 'y')
try:
    del n.nope
    raise SystemExit('del of a missing attribute did not fail')
except AttributeError:
    pass
try:
    n.nope
    raise SystemExit('missing attribute did not fail')
except AttributeError as e:
    assert "'Namespace' object has no attribute 'nope'" in str(e), str(e)

# --- list (the seed program)
l = m.list([i*i for i in range(10)])
print(l)
assert str(l) == '[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]', str(l)
assert l[4] == 16
assert l[2:5] == [4, 9, 16]
assert l[::3] == [0, 9, 36, 81]
assert l[8:1:-3] == [64, 25, 4]
assert l[-1] == 81 and len(l) == 10 and 49 in l and 50 not in l
assert list(l) == [i*i for i in range(10)]          # iteration via __getitem__
try:
    l[100]
    raise SystemExit('no IndexError')
except IndexError as e:
    assert str(e) == 'list index out of range', str(e)
try:
    l.index(1000)
    raise SystemExit('no ValueError')
except ValueError as e:
    assert '1000 is not in list' in str(e), str(e)
l.sort(reverse=True)
assert l[0] == 81 and l[-1] == 0
l.reverse()
l.append(100); l.extend([3, 2]); l.insert(0, -1)
assert l.pop() == 2 and l.pop(0) == -1
l.sort()
assert l[:4] == [0, 1, 3, 4], l[:]
l[1:3] = ['a', 'b']
try:
    l.sort()
    raise SystemExit('no TypeError')
except TypeError as e:
    assert "'<' not supported" in str(e), str(e)
del l[1:3]
l += [7]
assert l[-1] == 7
assert l + [8] == l[:] + [8]
assert l.count(7) == 1
l2 = m.list(range(3))
l2 *= 2
assert l2[:] == [0, 1, 2, 0, 1, 2]
assert l2 * 2 == [0, 1, 2, 0, 1, 2] * 2
try:
    l._callmethod('nosuch')
    raise SystemExit('no RemoteError')
except RemoteError as e:
    assert 'nosuch' in str(e)
assert l._getvalue() == l[:]

# --- dict
d = m.dict({'a': 1}, b=2)
d['c'] = 3
assert d['a'] == 1 and d.get('zz') is None and d.get('zz', 5) == 5
assert 'b' in d and len(d) == 3
assert list(iter(d)) == ['a', 'b', 'c']
assert sorted(d.keys()) == ['a', 'b', 'c']
assert sorted(d.values()) == [1, 2, 3]
assert sorted(d.items()) == [('a', 1), ('b', 2), ('c', 3)]
assert d.copy() == {'a': 1, 'b': 2, 'c': 3}
try:
    d['zz']
    raise SystemExit('no KeyError')
except KeyError as e:
    assert e.args == ('zz',), e.args
it = iter(d)
assert next(it) == 'a'
d['new'] = 1
try:
    next(it)
    raise SystemExit('no RuntimeError')
except RuntimeError as e:
    assert 'changed size during iteration' in str(e), str(e)
assert d.pop('new') == 1
assert d.popitem() == ('c', 3)
assert str(d) == "{'a': 1, 'b': 2}", str(d)
d.update({'e': [1, (2, 3)]})
assert d['e'] == [1, (2, 3)]
del d['e']
assert d.setdefault('f', 6) == 6
d.clear()
assert len(d) == 0

# --- Value
v = m.Value('i', 3)
assert v.value == 3 and v.get() == 3
v.value = 7
v.set(v.get() + 1)
assert v.value == 8
assert str(v) == "Value('i', 8)", str(v)
f = m.Value('d', 2.5)
assert f.value == 2.5

# --- Array
a = m.Array('i', [0, 1, 2])
a[0] = 5
assert list(a) == [5, 1, 2] and len(a) == 3 and a[-1] == 2
import array
assert a[0:2] == array.array('i', [5, 1])
try:
    a[5]
    raise SystemExit('no IndexError')
except IndexError:
    pass
try:
    a[0] = 'x'
    raise SystemExit('no TypeError')
except TypeError:
    pass
fa = m.Array('d', [1.0, 2.0])
assert str(fa) == "array('d', [1.0, 2.0])", str(fa)

# --- nested proxies
x = m.list([1])
y = m.list([x])
y[0].append(2)
assert x[:] == [1, 2], x[:]
assert str(y).startswith("[<ListProxy object, typeid 'list' at 0x"), str(y)
outer = m.dict(inner=m.dict(k=1))      # the inner proxy is a temporary
outer['inner']['k'] = 2
assert outer['inner']['k'] == 2
e = m.list([m.list([i]) for i in range(3)])
assert [el[:] for el in e] == [[0], [1], [2]]

# --- set (the 3.14 typeid; any client can create it)
if hasattr(m, 'set'):
    s = m.set([1, 2])
    s.add(3)
    assert 3 in s and len(s) == 3

# --- _debug_info and number_of_objects
info = m._debug_info()
assert 'refcount=1' in info and "Namespace(x=10)" in info, info
assert m._number_of_objects() > start
del n, l, l2, d, it, v, f, a, fa, x, y, outer, e
if 's' in globals():
    del s
gc.collect()
deadline = time.time() + 10
while m._number_of_objects() != start and time.time() < deadline:
    gc.collect(); time.sleep(0.05)
assert m._number_of_objects() == start, (m._number_of_objects(), start, m._debug_info())
print('OK', sys.version_info[:2])
"#;

/// Named shared objects, with class proxies and AutoProxies (including a
/// nested AutoProxy, which a CPython 3.8 *server* cannot handle).
const NAMED: &str = r#"
from multiprocessing.managers import ListProxy, NamespaceProxy
class M(BaseManager):
    pass
M.register('shared', proxytype=ListProxy)
M.register('auto')                         # AutoProxy[auto]
M.register('board', proxytype=NamespaceProxy)
M.register('counter', proxytype=ValueProxy)
M.register('list', proxytype=ListProxy)
m = M(address=address, authkey=key)
m.connect()
m.shared().append(sys.version_info[1])     # every client sees one list
assert sys.version_info[1] in m.shared()[:]
b = m.board()
b.hits = (m.board().hits + 1) if hasattr(b, 'hits') else 1
assert m.board().hits >= 1
c = m.counter()
c.value = c.value + 1
a = m.auto()                                # AutoProxy
a.append('x')
assert type(a).__name__ == 'AutoProxy[auto]', type(a).__name__
outer = m.list([a])                         # an AutoProxy inside a list
inner = outer[0]                            # comes back as an AutoProxy
assert type(inner).__name__ == 'AutoProxy[auto]', type(inner).__name__
inner.append('y')
assert a[-1] == 'y' and a._getvalue()[-2:] == ['x', 'y']
print('OK', sys.version_info[:2])
"#;

fn run_all(address: &str, script: &str, extra: &[&str]) {
    let pys = pythons();
    if pys.is_empty() {
        return;
    }
    let key = "py-test-key-\u{fc}"; // UTF-8 bytes of the env var
    let srv = ServeProc::start(address, Key::Env(key), extra);
    let code = format!("{PY_PRELUDE}{script}");
    let mut ran = Vec::new();
    for py in &pys {
        let out = py.run(&code, &[&srv.py_address(), &hex(key.as_bytes())], b"");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("OK"),
            "python {} against {address}: {}\nstdout:\n{stdout}\nstderr:\n{}\nserver log:\n{}",
            py.label(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            srv.stderr()
        );
        ran.push(py.label());
    }
    assert!(
        !srv.stderr().contains(key),
        "the authkey must never be logged"
    );
    eprintln!("python versions run against {address}: {}", ran.join(", "));
}

#[test]
fn python_clients_over_unix_socket() {
    let dir = TempDir::new("py-unix");
    let path = dir.path("mgr.sock");
    run_all(&format!("unix:{}", path.display()), SCENARIO, &[]);
}

#[test]
fn python_clients_over_tcp() {
    run_all("127.0.0.1:0", SCENARIO, &["--log-level", "debug"]);
}

#[test]
fn python_clients_with_named_objects() {
    let dir = TempDir::new("py-named");
    let path = dir.path("mgr.sock");
    run_all(
        &format!("unix:{}", path.display()),
        NAMED,
        &[
            "--object",
            "shared=list",
            "--object",
            "auto=list",
            "--object",
            "board=Namespace",
            "--object",
            "counter=Value:i",
        ],
    );
}

/// Over TCP, CPython's client writes its last handshake message and its
/// first request back to back, and frames over 16 KiB as two writes, on a
/// socket with Nagle's algorithm on: without care on the server side each
/// of these waits for a delayed ACK (~40 ms; CPython's own server has this
/// stall on every one-shot operation). The median must stay far below it.
#[test]
fn tcp_has_no_delayed_ack_stalls() {
    let Some(py) = mpmanager_testutil::newest_python() else {
        return;
    };
    let key = "latency";
    let srv = ServeProc::start("127.0.0.1:0", Key::Env(key), &["--log-level", "warn"]);
    let code = format!(
        "{PY_PRELUDE}{}",
        r#"
from multiprocessing.managers import dispatch
from multiprocessing.connection import Client
def median(f, n=15):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return sorted(ts)[n // 2]
def dummy():
    c = Client(address, authkey=key)
    try:
        dispatch(c, None, 'dummy')
    finally:
        c.close()
m = SyncManager(address=address, authkey=key)
m.connect()
l = m.list()
big = b'x' * 20000
print('ONESHOT %.6f' % median(dummy))
print('BIG %.6f' % median(lambda: l.append(big)))
"#
    );
    let out = py.run(&code, &[&srv.py_address(), &hex(key.as_bytes())], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["ONESHOT", "BIG"] {
        let secs: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
        eprintln!("{name}: median {:.2} ms", secs * 1000.0);
        assert!(secs < 0.02, "{name} took {secs} s: a delayed-ACK stall?");
    }
}

/// Documents docs/PROTOCOL.md §2.6 with our server: a nested proxy read back by
/// a client whose process key differs from the manager's key fails its
/// automatic incref with AuthenticationError (exactly as with CPython's
/// server); with the process key set, it works. The server is unaffected.
#[test]
fn nested_proxy_needs_the_process_authkey() {
    let pys = pythons();
    if pys.is_empty() {
        return;
    }
    let key = "nested-key";
    let srv = ServeProc::start("127.0.0.1:0", Key::Env(key), &[]);
    let code = r#"
import sys, ast, faulthandler, multiprocessing
faulthandler.dump_traceback_later(60, exit=True)
from multiprocessing.managers import SyncManager
address, key = ast.literal_eval(sys.argv[1]), bytes.fromhex(sys.argv[2])
m = SyncManager(address=address, authkey=key)
m.connect()
inner = m.list([1])
outer = m.list([inner])
try:
    outer[0]
    raise SystemExit('nested proxy built with the wrong process key')
except multiprocessing.AuthenticationError:
    pass
multiprocessing.current_process().authkey = key
assert outer[0][:] == [1]
print('OK')
"#;
    for py in &pys {
        let out = py.run(code, &[&srv.py_address(), &hex(key.as_bytes())], b"");
        assert!(
            out.status.success(),
            "python {}: {}",
            py.label(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
