//! `repr()` of globals, of the `collections` containers and of objects of
//! unknown classes, compared with every installed CPython: the Python side
//! pickles each value at every protocol and prints its `repr`; we decode
//! each pickle and print ours. Addresses (`0x…`) are compared normalized.
//! The inspector style ([`inspect`]) is checked on the same pickles.

use mpmanager_pickle::repr::{inspect, repr, try_repr};
use mpmanager_pickle::{decode, Value};
use mpmanager_testutil::{pythons, Python};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Every `0x<hex digits>` becomes `0x…`.
fn normalize_addresses(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"0x") && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
            out.push_str("0x…");
            i += 2;
            while b.get(i).is_some_and(u8::is_ascii_hexdigit) {
                i += 1;
            }
        } else {
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Prints, for each case (Python statements setting `x`), one line:
/// `hex(repr(x)) proto:hex(pickle)…` (a protocol that cannot pickle `x`
/// is left out).
const DRIVER: &str = r#"
import sys, pickle, collections, decimal, fractions, datetime
from collections import OrderedDict, defaultdict, deque, Counter

class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

class Outer:
    class Inner:
        pass

class Slots:
    __slots__ = ('a',)
    def __init__(self):
        self.a = 1

class Reduced:
    def __reduce__(self):
        return (Reduced, ())

for case in sys.stdin.read().split('\n\x00\n'):
    if not case:
        continue
    ns = dict(globals())
    exec(case, ns)
    x = ns['x']
    parts = [repr(x).encode('utf-8', 'surrogatepass').hex()]
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        try:
            parts.append('%d:%s' % (proto, pickle.dumps(x, proto).hex()))
        except Exception:
            pass
    print(' '.join(parts))
"#;

struct Case {
    py: &'static str,
    /// Oldest CPython whose `repr` this is (older ones print otherwise).
    min_version: (u32, u32),
}

fn case(py: &'static str) -> Case {
    Case {
        py,
        min_version: (3, 8),
    }
}

/// `OrderedDict`'s repr is the 3.12+ one (`OrderedDict({...})`).
fn case312(py: &'static str) -> Case {
    Case {
        py,
        min_version: (3, 12),
    }
}

/// Runs `cases` in `py`: per case, CPython's repr and its pickles.
/// CPython's `repr` of a case and its pickles, by protocol.
type Pickled = (String, Vec<(u8, Vec<u8>)>);

fn run(py: &Python, cases: &[Case]) -> Vec<Pickled> {
    let mut input = String::new();
    for c in cases {
        input.push_str(c.py);
        input.push_str("\n\0\n");
    }
    let out = String::from_utf8(py.run_ok(DRIVER, &[], input.as_bytes())).unwrap();
    let lines: Vec<_> = out
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let r = String::from_utf8(unhex(parts.next().unwrap())).unwrap();
            let pickles = parts
                .map(|p| {
                    let (proto, hex) = p.split_once(':').unwrap();
                    (proto.parse().unwrap(), unhex(hex))
                })
                .collect();
            (r, pickles)
        })
        .collect();
    assert_eq!(
        lines.len(),
        cases.len(),
        "one line per case from {}",
        py.label()
    );
    lines
}

/// Compares our `repr` of every pickle of every case with CPython's.
fn check(cases: &[Case]) {
    let pys = pythons();
    if pys.is_empty() {
        eprintln!("no CPython 3.8+ found; skipped");
        return;
    }
    let mut failures = Vec::new();
    for py in &pys {
        for (c, (theirs, pickles)) in cases.iter().zip(run(py, cases)) {
            if py.version < c.min_version {
                continue;
            }
            assert!(!pickles.is_empty(), "{}: nothing pickled", c.py);
            for (proto, data) in pickles {
                let v = decode(&data).unwrap_or_else(|e| panic!("{}: {e}", c.py));
                let ours = try_repr(&v).unwrap();
                if normalize_addresses(&ours) != normalize_addresses(&theirs) {
                    failures.push(format!(
                        "[{}] {} (protocol {proto}):\n  CPython: {theirs}\n  ours:    {ours}",
                        py.label(),
                        c.py
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn builtin_functions_ellipsis_and_notimplemented_repr_as_cpython() {
    // Every callable of `builtins` that is not a class, by CPython itself,
    // and a few classes; each loaded from a bare `GLOBAL builtins name`.
    const NAMES: &str = r#"
import builtins
names = [n for n in dir(builtins) if callable(getattr(builtins, n))]
names += ['Ellipsis', 'NotImplemented']
for n in names:
    if n == 'copyright':
        continue  # its text names the current year
    print(n, repr(getattr(builtins, n)).encode('utf-8').hex())
"#;
    let pys = pythons();
    if pys.is_empty() {
        eprintln!("no CPython 3.8+ found; skipped");
        return;
    }
    for py in &pys {
        let out = String::from_utf8(py.run_ok(NAMES, &[], b"")).unwrap();
        let mut functions = 0;
        for line in out.lines() {
            let (name, hex) = line.split_once(' ').unwrap();
            let theirs = String::from_utf8(unhex(hex)).unwrap();
            let pickle = format!("cbuiltins\n{name}\n.");
            let v = decode(pickle.as_bytes()).unwrap();
            assert_eq!(repr(&v), theirs, "[{}] builtins.{name}", py.label());
            assert_eq!(inspect(&v), theirs, "[{}] builtins.{name}", py.label());
            functions += theirs.starts_with("<built-in function") as usize;
        }
        assert!(
            functions >= 40,
            "[{}] {functions} built-in functions",
            py.label()
        );
    }
    // Any other global prints as a class: a pickle cannot tell a class
    // from a module-level function.
    assert_eq!(
        repr(&Value::global("datetime", "datetime")),
        "<class 'datetime.datetime'>"
    );
    assert_eq!(repr(&Value::global("math", "sqrt")), "<class 'math.sqrt'>");
    assert_eq!(
        repr(&Value::global("builtins", "copyright")),
        "<class 'copyright'>"
    );
}

#[test]
fn collections_containers_repr_as_cpython() {
    check(&[
        case("x = OrderedDict()"),
        case312("x = OrderedDict([('b', 1), ('a', 2)])"),
        case312("x = OrderedDict([(1, [OrderedDict()]), ((2, 3), OrderedDict(z=None))])"),
        case312("x = OrderedDict(); x['me'] = x; x['n'] = 1"),
        case312("x = OrderedDict.fromkeys('abc'); x.move_to_end('a')"),
        case("x = defaultdict(list, {'k': [1]})"),
        case("x = defaultdict()"),
        case("x = defaultdict(None, {1: 2})"),
        case("x = defaultdict(int); x['a'] += 2; x[True] += 1; x[1.0] += 1"),
        case("x = defaultdict(OrderedDict)"),
        case("x = defaultdict(datetime.date, {'d': datetime.date(2020, 1, 2)})"),
        case("x = defaultdict(None); x['me'] = x"),
        case("x = defaultdict(list); x['l'] = [x, defaultdict(set)]"),
        case("x = deque()"),
        case("x = deque([1, 'a', (None,)])"),
        case("x = deque([1, 2, 3], maxlen=2)"),
        case("x = deque(maxlen=0)"),
        case("x = deque([], maxlen=5)"),
        case("x = deque(range(100), 3)"),
        case("x = deque([1]); x.append(x)"),
        case("x = deque([deque([1], 1), [deque()]])"),
        case("x = Counter()"),
        case("x = Counter('abracadabra')"),
        case("x = Counter({'a': 1, 'b': 3, 'c': 3, 'd': 2, 'e': 3})"),
        case("x = Counter({'a': 1.5, 'b': True, 'c': -1, 'd': 2**70})"),
        case("x = Counter({'a': 'x', 'b': 1})"),
        case("x = Counter({'a': 'x', 'b': 'y'})"),
        case("x = Counter({(1, 2): 0, None: 0})"),
        case("x = [deque([1]), OrderedDict(), Counter(a=1), defaultdict(None)]"),
    ]);
}

#[test]
fn unknown_objects_repr_as_object_repr_at_identity() {
    check(&[
        case("x = Point(1, 2)"),
        case("x = [Point(1, 2), Point(3, [4])]"),
        case("p = Point(0, 0); x = [p, p]"),
        case("x = Outer.Inner()"),
        case("x = object()"),
        case("x = Slots()"),
        case("x = Reduced()"),
        case("x = {'p': Point(1, 2), 'when': datetime.date(2020, 1, 2)}"),
        case("p = Point(1, 2); p.me = p; x = p"),
        case("x = (KeyError('k'), decimal.Decimal('1.10'), fractions.Fraction(1, 3))"),
    ]);
    // The address is the object's identity: a shared object shows the
    // same address twice, distinct ones differ.
    let py = pythons().into_iter().last();
    if let Some(py) = py {
        let cases = [case("p = Point(0, 0); x = [p, p, Point(0, 0)]")];
        let (_, pickles) = run(&py, &cases).remove(0);
        let v = decode(&pickles.last().unwrap().1).unwrap();
        let r = repr(&v);
        let addrs: Vec<&str> = r
            .split(" at ")
            .skip(1)
            .map(|s| &s[..s.find('>').unwrap()])
            .collect();
        assert_eq!(addrs.len(), 3, "{r}");
        assert!(addrs[0] == addrs[1] && addrs[0] != addrs[2], "{r}");
        if let Value::List(l) = &v {
            let id = l.read()[0].identity().unwrap();
            assert_eq!(addrs[0], format!("0x{id:x}"));
        }
        // The inspector shows what unpickling would do instead.
        let one = decode(
            &run(&py, &[case("x = Point(1, 2)")])
                .remove(0)
                .1
                .last()
                .unwrap()
                .1,
        )
        .unwrap();
        assert_eq!(
            inspect(&one),
            "__main__.Point.__new__(__main__.Point).__setstate__({'x': 1, 'y': 2})"
        );
    }
}

#[test]
fn collections_are_unhashable_and_c_types_are_named_as_cpython() {
    // `hash(x)` and `x < 1`: the messages name C types with their module.
    const DRIVER: &str = r#"
import pickle, collections, datetime, decimal, fractions
values = [collections.OrderedDict(a=1), collections.defaultdict(list), collections.deque([1]),
          collections.Counter('ab'), datetime.date(2020, 1, 2), datetime.timedelta(1),
          decimal.Decimal('1.5'), fractions.Fraction(1, 3)]
for x in values:
    out = [pickle.dumps(x, 4).hex()]
    for f in (lambda: hash(x), lambda: x < 'a'):
        try:
            f()
            out.append('-')
        except TypeError as e:
            out.append(str(e).encode().hex())
    print(' '.join(out))
"#;
    use mpmanager_pickle::hash::py_hash;
    use mpmanager_pickle::ord::{py_compare, CompareOp};
    for py in pythons() {
        let out = String::from_utf8(py.run_ok(DRIVER, &[], b"")).unwrap();
        for line in out.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            let v = decode(&unhex(parts[0])).unwrap();
            let msg = |p: &str| {
                if p == "-" {
                    "-".to_string()
                } else {
                    String::from_utf8(unhex(p)).unwrap()
                }
            };
            let ours_hash = match py_hash(&v) {
                Ok(_) => "-".to_string(),
                Err(e) => e.message().unwrap().to_string(),
            };
            let ours_lt = match py_compare(&v, &Value::str("a"), CompareOp::Lt) {
                Ok(_) => "-".to_string(),
                Err(e) => e.message().unwrap().to_string(),
            };
            let r = repr(&v);
            assert_eq!(ours_hash, msg(parts[1]), "[{}] hash({r})", py.label());
            assert_eq!(ours_lt, msg(parts[2]), "[{}] {r} < 'a'", py.label());
        }
    }
}
