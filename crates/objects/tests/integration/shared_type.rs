//! `#[shared_type]` expansion: exposed lists, argument binding and
//! conversion, return values, errors, options, constructors, `repr` and
//! `get_value`, through the registry as the server drives it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mpmanager_objects::{
    shared_type, CallContext, CallError, Kwargs, Outcome, Referent, Registry, Reply, SharedType,
};
use mpmanager_pickle::{repr, ExcType, PyErr, Value};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Debug, PartialEq)]
struct Point {
    x: i64,
    y: i64,
}

#[derive(Default)]
struct Shapes {
    points: Mutex<Vec<Point>>,
}

#[shared_type(name = "ShapeStore", module = "geometry")]
impl Shapes {
    fn add(&self, p: Point) -> usize {
        let mut v = self.points.lock().unwrap();
        v.push(p);
        v.len()
    }
    fn points(&self) -> Vec<(i64, i64)> {
        self.points
            .lock()
            .unwrap()
            .iter()
            .map(|p| (p.x, p.y))
            .collect()
    }
    fn first(&self) -> Option<Point> {
        self.points
            .lock()
            .unwrap()
            .first()
            .map(|p| Point { x: p.x, y: p.y })
    }
    fn raw(&self, v: Value, times: Option<usize>) -> Vec<Value> {
        vec![v; times.unwrap_or(1)]
    }
    #[mpmanager(name = "__len__")]
    fn len(&self) -> usize {
        self.points.lock().unwrap().len()
    }
    #[mpmanager(skip)]
    fn helper(&self) -> usize {
        1
    }
    fn _hidden(&self) {}
    fn r#type(&self) -> &'static str {
        "shapes"
    }
    /// A method returning a new shared object.
    fn spawn_counter(&self, start: i64) -> Outcome {
        Outcome::NewObject {
            typeid: "Tally".into(),
            object: Arc::new(Tally::new(start).unwrap()),
        }
    }
    fn fallible_spawn(&self, start: i64) -> Result<Outcome, PyErr> {
        Ok(Outcome::NewObject {
            typeid: "Tally".into(),
            object: Arc::new(Tally::new(start)?),
        })
    }
    /// Not a method: left alone.
    fn make() -> Shapes {
        Shapes::default()
    }
}

#[derive(Serialize)]
struct Tally {
    n: AtomicUsize,
}

#[shared_type]
impl Tally {
    #[mpmanager(constructor)]
    fn new(start: i64) -> Result<Tally, PyErr> {
        if start < 0 {
            return Err(PyErr::value_error("start must be >= 0"));
        }
        Ok(Tally {
            n: AtomicUsize::new(start as usize),
        })
    }
    fn bump(&self) -> usize {
        self.n.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn fail(&self, kind: String) -> Result<(), CallError> {
        Err(match kind.as_str() {
            "key" => PyErr::key_error(Value::str("k")).into(),
            _ => CallError::Traceback("custom traceback".into()),
        })
    }
}

/// Neither a constructor nor `Default`: only usable as a shared object.
struct Fixed(i64);

#[shared_type]
impl Fixed {
    fn get(&self) -> i64 {
        self.0
    }
}

fn registry() -> Registry {
    let r = Registry::new();
    r.register_type::<Shapes>("Shapes");
    r.register_type::<Tally>("Tally");
    r.register_type::<Fixed>("Fixed");
    r.register_shared("get_fixed", Arc::new(Fixed(42)));
    r
}

fn kw(pairs: &[(&str, Value)]) -> Kwargs {
    Kwargs::from_pairs(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn call(r: &Registry, id: &str, m: &str, a: &[Value], k: &Kwargs) -> Result<Reply, CallError> {
    r.call(&CallContext::new(1), id, m, a, k)
}

fn ret(r: &Registry, id: &str, m: &str, a: &[Value], k: &Kwargs) -> String {
    match call(r, id, m, a, k) {
        Ok(Reply::Return(v)) => repr(&v),
        other => panic!("{m}: {other:?}"),
    }
}

fn err(r: &Registry, id: &str, m: &str, a: &[Value], k: &Kwargs) -> String {
    match call(r, id, m, a, k) {
        Err(e) => e.to_string(),
        other => panic!("{m}: {other:?}"),
    }
}

fn point(x: i64, y: i64) -> Value {
    Value::dict(vec![
        (Value::str("x"), Value::Int(x)),
        (Value::str("y"), Value::Int(y)),
    ])
    .unwrap()
}

#[test]
fn exposed_list_is_sorted_and_follows_the_rules() {
    assert_eq!(
        Shapes::EXPOSED,
        [
            "__len__",
            "add",
            "fallible_spawn",
            "first",
            "points",
            "raw",
            "spawn_counter",
            "type"
        ]
    );
    assert_eq!(Tally::EXPOSED, ["bump", "fail"]);
    let r = registry();
    let (_, exposed) = r.create("Shapes", &[], &Kwargs::new()).unwrap();
    assert_eq!(exposed, Shapes::EXPOSED);
    // The helpers still exist for Rust callers.
    assert_eq!(Shapes::make().helper(), 1);
    Shapes::default()._hidden();
}

#[test]
fn names_module_and_repr() {
    assert_eq!(Shapes::NAME, "ShapeStore");
    assert_eq!(Shapes::python_class(), "geometry.ShapeStore");
    // The default module is the Rust module path, with dots.
    assert_eq!(Tally::python_class(), "integration.shared_type.Tally");
    let s = Shapes::default();
    assert_eq!(s.class_name(), "geometry.ShapeStore");
    let text = s.repr().unwrap();
    let addr = format!("{:#x}", &s as *const Shapes as usize);
    assert_eq!(text, format!("<geometry.ShapeStore object at {addr}>"));
    assert_eq!(s.str().unwrap(), text);
}

#[test]
fn arguments_bind_by_position_and_keyword() {
    let r = registry();
    let (id, _) = r.create("Shapes", &[], &Kwargs::new()).unwrap();
    let none = Kwargs::new();
    assert_eq!(ret(&r, &id, "add", &[point(1, 2)], &none), "1");
    assert_eq!(ret(&r, &id, "add", &[], &kw(&[("p", point(3, 4))])), "2");
    // A struct from a tuple too (serde's positional form).
    let t = Value::tuple(vec![Value::Int(5), Value::Int(6)]);
    assert_eq!(ret(&r, &id, "add", &[t], &none), "3");
    assert_eq!(
        ret(&r, &id, "points", &[], &none),
        "[(1, 2), (3, 4), (5, 6)]"
    );
    assert_eq!(ret(&r, &id, "first", &[], &none), "{'x': 1, 'y': 2}");
    assert_eq!(ret(&r, &id, "__len__", &[], &none), "3");
    assert_eq!(ret(&r, &id, "type", &[], &none), "'shapes'");
    let l = Value::list(vec![Value::Int(1)]);
    assert_eq!(
        ret(&r, &id, "raw", std::slice::from_ref(&l), &none),
        "[[1]]"
    );
    assert_eq!(
        ret(
            &r,
            &id,
            "raw",
            std::slice::from_ref(&l),
            &kw(&[("times", Value::Int(2))])
        ),
        "[[1], [1]]"
    );
    assert_eq!(ret(&r, &id, "raw", &[l, Value::None], &none), "[[1]]");
}

#[test]
fn argument_errors_have_cpython_texts() {
    let r = registry();
    let (id, _) = r.create("Shapes", &[], &Kwargs::new()).unwrap();
    let none = Kwargs::new();
    assert_eq!(
        err(&r, &id, "add", &[], &none),
        "TypeError: ShapeStore.add() missing 1 required positional argument: 'p'"
    );
    assert_eq!(
        err(
            &r,
            &id,
            "raw",
            &[Value::Int(1), Value::Int(2), Value::Int(3)],
            &none
        ),
        "TypeError: ShapeStore.raw() takes from 2 to 3 positional arguments but 4 were given"
    );
    assert_eq!(
        err(&r, &id, "points", &[Value::Int(1)], &none),
        "TypeError: ShapeStore.points() takes 1 positional argument but 2 were given"
    );
    assert_eq!(
        err(
            &r,
            &id,
            "raw",
            &[Value::Int(1)],
            &kw(&[("v", Value::Int(1))])
        ),
        "TypeError: ShapeStore.raw() got multiple values for argument 'v'"
    );
    assert_eq!(
        err(
            &r,
            &id,
            "raw",
            &[Value::Int(1)],
            &kw(&[("n", Value::Int(1))])
        ),
        "TypeError: ShapeStore.raw() got an unexpected keyword argument 'n'"
    );
    let e = err(&r, &id, "add", &[Value::str("p")], &none);
    assert!(
        e.starts_with("TypeError: ShapeStore.add() argument 'p': "),
        "{e}"
    );
    let e = err(&r, &id, "raw", &[Value::None, Value::Int(-1)], &none);
    assert!(
        e.starts_with("TypeError: ShapeStore.raw() argument 'times': "),
        "{e}"
    );
    // A name that is not exposed is CPython's #TRACEBACK.
    let Err(CallError::Traceback(t)) = call(&r, &id, "helper", &[], &none) else {
        panic!()
    };
    assert!(t.contains("is not in exposed="), "{t}");
}

#[test]
fn errors_from_methods_and_constructors() {
    let r = registry();
    let (id, _) = r.create("Tally", &[Value::Int(1)], &Kwargs::new()).unwrap();
    let none = Kwargs::new();
    assert_eq!(ret(&r, &id, "bump", &[], &none), "2");
    let Err(CallError::Python(e)) = call(&r, &id, "fail", &[Value::str("key")], &none) else {
        panic!()
    };
    assert_eq!(e.ty, ExcType::KeyError);
    let Err(CallError::Traceback(t)) = call(&r, &id, "fail", &[Value::str("tb")], &none) else {
        panic!()
    };
    assert_eq!(t, "custom traceback");
    // Constructor errors are create's #TRACEBACK.
    let e = r
        .create("Tally", &[Value::Int(-1)], &Kwargs::new())
        .unwrap_err();
    assert!(
        e.to_string().ends_with("ValueError: start must be >= 0"),
        "{e}"
    );
    let e = r.create("Tally", &[], &Kwargs::new()).unwrap_err();
    assert!(
        e.to_string().ends_with(
            "TypeError: Tally.__init__() missing 1 required positional argument: 'start'"
        ),
        "{e}"
    );
    let e = r
        .create("Tally", &[], &kw(&[("start", Value::Int(3))]))
        .unwrap();
    assert_eq!(ret(&r, &e.0, "bump", &[], &none), "4");
    let e = r
        .create("Shapes", &[Value::Int(1)], &Kwargs::new())
        .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("TypeError: ShapeStore() takes no arguments"),
        "{e}"
    );
    let e = r.create("Fixed", &[], &Kwargs::new()).unwrap_err();
    assert!(
        e.to_string().contains("cannot create 'Fixed' instances"),
        "{e}"
    );
}

#[test]
fn outcome_returns_register_new_objects() {
    let r = registry();
    let (id, _) = r.create("Shapes", &[], &Kwargs::new()).unwrap();
    for m in ["spawn_counter", "fallible_spawn"] {
        let Reply::Proxy {
            typeid,
            ident,
            exposed,
        } = call(&r, &id, m, &[Value::Int(7)], &Kwargs::new()).unwrap()
        else {
            panic!()
        };
        assert_eq!(typeid, "Tally");
        assert_eq!(exposed, Tally::EXPOSED);
        assert_eq!(ret(&r, &ident, "bump", &[], &Kwargs::new()), "8");
        r.decref(&ident).unwrap();
    }
    let e = err(&r, &id, "fallible_spawn", &[Value::Int(-7)], &Kwargs::new());
    assert_eq!(e, "ValueError: start must be >= 0");
}

#[test]
fn get_value_uses_serialize_when_there_is_one() {
    let r = registry();
    let (t, _) = r.create("Tally", &[Value::Int(5)], &Kwargs::new()).unwrap();
    let Reply::Return(v) = call(&r, &t, "#GETVALUE", &[], &Kwargs::new()).unwrap() else {
        panic!()
    };
    assert_eq!(repr(&v), "{'n': 5}");
    let (s, _) = r.create("Shapes", &[], &Kwargs::new()).unwrap();
    let Reply::Unserializable(e) = call(&r, &s, "#GETVALUE", &[], &Kwargs::new()).unwrap() else {
        panic!()
    };
    assert_eq!(
        e.to_string(),
        "TypeError: cannot pickle 'ShapeStore' object"
    );
    // __repr__/__str__ fallbacks give the default repr.
    let Reply::Return(v) = call(&r, &s, "__str__", &[], &Kwargs::new()).unwrap() else {
        panic!()
    };
    assert!(v
        .as_str()
        .unwrap()
        .starts_with("<geometry.ShapeStore object at 0x"));
}

#[test]
fn shared_object_has_one_ident() {
    let r = registry();
    let (a, exposed) = r.create("get_fixed", &[], &Kwargs::new()).unwrap();
    let (b, _) = r.create("get_fixed", &[], &Kwargs::new()).unwrap();
    assert_eq!(a, b);
    assert_eq!(exposed, ["get"]);
    assert_eq!(ret(&r, &a, "get", &[], &Kwargs::new()), "42");
    assert_eq!(r.number_of_objects(), 1);
    r.decref(&a).unwrap();
    r.decref(&b).unwrap();
    assert_eq!(r.number_of_objects(), 0);
}

#[test]
fn concurrent_calls_on_one_object() {
    let r = Arc::new(registry());
    let (id, _) = r.create("Tally", &[Value::Int(0)], &Kwargs::new()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (r, id) = (r.clone(), id.clone());
            std::thread::spawn(move || {
                for _ in 0..500 {
                    r.call(&CallContext::new(i), &id, "bump", &[], &Kwargs::new())
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(ret(&r, &id, "bump", &[], &Kwargs::new()), "4001");
}
