//! Custom Rust types served to Python clients: the [`SharedType`] trait,
//! which `#[shared_type]` implements, and the registration helpers
//! [`Registry::register_type`], [`Registry::register_type_with`] and
//! [`Registry::register_shared`].

use std::sync::Arc;

use mpmanager_pickle::{PyErr, Value};

use crate::{Kwargs, Referent, Registry, TypeSpec};

/// A Rust type whose methods Python clients call, the equivalent of a
/// Python class given to `BaseManager.register(typeid, cls)`.
///
/// Implemented by [`#[shared_type]`](macro@crate::shared_type) (together
/// with [`Referent`]); implement it by hand only for a hand-written
/// `Referent`.
pub trait SharedType: Referent + Sized {
    /// The exposed method names, sorted as CPython's `public_methods()`
    /// (which reads `dir(obj)`) lists them. They are what `create` sends
    /// back, so they become the methods of the client's `AutoProxy`.
    const EXPOSED: &'static [&'static str];

    /// The class name without module (`"Maths"`), used in `TypeError`
    /// texts such as `Maths.add() missing 1 required positional argument:
    /// 'y'`.
    const NAME: &'static str;

    /// The class as `module.Class` (`"maths_server.Maths"`): what `repr`
    /// shows and what [`Referent::class_name`] returns.
    fn python_class() -> &'static str;

    /// Builds an object from the arguments of the client's `create` call
    /// (`m.Maths(1, x=2)`): the `#[mpmanager(constructor)]` function, or
    /// `Default::default()` (which accepts no arguments).
    fn construct(args: &[Value], kwargs: &Kwargs) -> Result<Self, PyErr>;
}

impl TypeSpec {
    /// The spec of a [`SharedType`]: its exposed list and a constructor
    /// calling [`SharedType::construct`]. Add
    /// [`method_to_typeid`](TypeSpec::method_to_typeid) entries before
    /// registering it if some methods return shared objects.
    ///
    /// ```
    /// use mpmanager_objects::{shared_type, Registry, TypeSpec};
    /// #[derive(Default)]
    /// struct Greeter;
    /// #[shared_type]
    /// impl Greeter {
    ///     fn hello(&self, name: String) -> String { format!("hello {name}") }
    /// }
    /// let spec = TypeSpec::of_type::<Greeter>("Greeter");
    /// assert_eq!(spec.exposed_list(), ["hello"]);
    /// Registry::new().register(spec);
    /// ```
    pub fn of_type<T: SharedType>(typeid: &str) -> TypeSpec {
        TypeSpec::new(
            typeid,
            Arc::new(|a, k| Ok(Arc::new(T::construct(a, k)?) as Arc<dyn Referent>)),
        )
        .exposed(T::EXPOSED)
    }
}

impl Registry {
    /// Registers typeid `typeid` for `T`: each client `create` (e.g.
    /// `manager.Maths()`) builds a new object with
    /// [`SharedType::construct`], like `MyManager.register('Maths',
    /// MathsClass)` in Python.
    ///
    /// ```
    /// use mpmanager_objects::{shared_type, CallContext, Kwargs, Registry, Reply};
    /// use mpmanager_pickle::Value;
    ///
    /// #[derive(Default)]
    /// struct Maths;
    /// #[shared_type]
    /// impl Maths {
    ///     fn add(&self, x: i64, y: i64) -> i64 { x + y }
    /// }
    ///
    /// let reg = Registry::new();
    /// reg.register_type::<Maths>("Maths");
    /// let (ident, exposed) = reg.create("Maths", &[], &Kwargs::new()).unwrap();
    /// assert_eq!(exposed, ["add"]);
    /// let cx = CallContext::new(1);
    /// let Reply::Return(v) = reg.call(&cx, &ident, "add", &[Value::Int(4), Value::Int(3)], &Kwargs::new())
    ///     .unwrap() else { panic!() };
    /// assert_eq!(v.as_i64(), Some(7));
    /// // Default takes no arguments, as a Python class without __init__:
    /// let err = reg.create("Maths", &[Value::Int(1)], &Kwargs::new()).unwrap_err();
    /// assert!(err.to_string().ends_with("TypeError: Maths() takes no arguments"));
    /// ```
    pub fn register_type<T: SharedType>(&self, typeid: &str) {
        self.register(TypeSpec::of_type::<T>(typeid));
    }

    /// Like [`Registry::register_type`], with `constructor(args, kwargs)`
    /// building each object (see [`crate::args::bind`] to bind the
    /// arguments with Python's rules).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicI64, Ordering};
    /// use mpmanager_objects::{args, shared_type, Kwargs, Registry};
    /// use mpmanager_pickle::{from_value, PyErr, Value};
    ///
    /// struct Counter(AtomicI64);
    /// #[shared_type]
    /// impl Counter {
    ///     fn get(&self) -> i64 { self.0.load(Ordering::SeqCst) }
    /// }
    ///
    /// let reg = Registry::new();
    /// reg.register_type_with("Counter", |a: &[Value], k: &Kwargs| {
    ///     let b = args::bind("Counter.__init__", &[("start", Some(Value::Int(0)))], a, k)?;
    ///     let start: i64 = from_value(&b[0]).map_err(|e| PyErr::type_error(e.to_string()))?;
    ///     Ok(Counter(AtomicI64::new(start)))
    /// });
    /// let (ident, _) = reg.create("Counter", &[Value::Int(5)], &Kwargs::new()).unwrap();
    /// assert_eq!(reg.get(&ident).unwrap().repr().unwrap().split(' ').next(), Some("<rust_out.Counter"));
    /// ```
    pub fn register_type_with<T, F>(&self, typeid: &str, constructor: F)
    where
        T: SharedType,
        F: Fn(&[Value], &Kwargs) -> Result<T, PyErr> + Send + Sync + 'static,
    {
        self.register(
            TypeSpec::new(
                typeid,
                Arc::new(move |a, k| Ok(Arc::new(constructor(a, k)?) as Arc<dyn Referent>)),
            )
            .exposed(T::EXPOSED),
        );
    }

    /// Registers one shared object under `typeid`, like
    /// `register('get_counter', callable=lambda: counter)`: every client's
    /// `m.get_counter()` returns a proxy to this same object. Keep a clone
    /// of the `Arc` to use the object from Rust too.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use mpmanager_objects::{shared_type, CallContext, Kwargs, Registry};
    /// use mpmanager_pickle::Value;
    ///
    /// #[derive(Default)]
    /// struct Log(Mutex<Vec<String>>);
    /// #[shared_type]
    /// impl Log {
    ///     fn write(&self, line: String) { self.0.lock().unwrap().push(line) }
    /// }
    ///
    /// let log = Arc::new(Log::default());
    /// let reg = Registry::new();
    /// reg.register_shared("get_log", log.clone());
    /// let (a, _) = reg.create("get_log", &[], &Kwargs::new()).unwrap();
    /// let (b, _) = reg.create("get_log", &[], &Kwargs::new()).unwrap();
    /// assert_eq!(a, b);
    /// reg.call(&CallContext::new(1), &a, "write", &[Value::str("hi")], &Kwargs::new()).unwrap();
    /// assert_eq!(*log.0.lock().unwrap(), ["hi"]);
    /// ```
    pub fn register_shared<T: SharedType>(&self, typeid: &str, object: Arc<T>) {
        self.register(TypeSpec::shared(typeid, object as Arc<dyn Referent>).exposed(T::EXPOSED));
    }
}

/// Support code for the expansion of `#[shared_type]`. Not a public API.
#[doc(hidden)]
pub mod __private {
    use std::marker::PhantomData;

    pub use mpmanager_pickle::{PyErr, Value};
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use crate::{CallError, Kwargs, Outcome, SharedType};

    /// `module.Class`, with Rust's `::` module separators as dots.
    pub fn class_path(module: &str, name: &str) -> String {
        if module.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", module.replace("::", "."))
        }
    }

    /// CPython's default `repr`: `<module.Class object at 0x7f…>`.
    pub fn default_repr<T: SharedType>(obj: &T) -> String {
        crate::referent::object_repr(T::python_class(), obj as *const T as *const ())
    }

    /// Converts one bound argument.
    pub fn arg<T: DeserializeOwned>(v: &Value, qualname: &str, name: &str) -> Result<T, PyErr> {
        mpmanager_pickle::from_value(v)
            .map_err(|e| PyErr::type_error(format!("{qualname}() argument '{name}': {e}")))
    }

    /// Converts a return value.
    pub fn ret<T: Serialize + ?Sized>(v: &T, qualname: &str) -> Result<Outcome, CallError> {
        match mpmanager_pickle::to_value(v) {
            Ok(v) => Ok(Outcome::Return(v)),
            Err(e) => Err(CallError::Python(PyErr::type_error(format!(
                "the result of {qualname}() cannot be converted to a Python value: {e}"
            )))),
        }
    }

    /// A constructor's error as a `PyErr`.
    pub fn into_pyerr<E: Into<PyErr>>(e: E) -> PyErr {
        e.into()
    }

    /// Autoref-specialisation probe: picks `Serialize`/`Default` impls
    /// when the type has them.
    pub struct Probe<T>(pub PhantomData<T>);

    /// `get_value` through `Serialize`.
    pub trait GetValueSerialize<T> {
        /// The object as a Python value.
        fn __mpm_get_value(&self, obj: &T) -> Result<Value, PyErr>;
    }
    impl<T: Serialize + SharedType> GetValueSerialize<T> for &Probe<T> {
        fn __mpm_get_value(&self, obj: &T) -> Result<Value, PyErr> {
            mpmanager_pickle::to_value(obj)
                .map_err(|e| PyErr::type_error(format!("cannot pickle '{}' object: {e}", T::NAME)))
        }
    }

    /// `get_value` of a type without `Serialize`: a pickling error.
    pub trait GetValueUnpicklable<T> {
        /// `TypeError: cannot pickle 'Class' object`.
        fn __mpm_get_value(&self, obj: &T) -> Result<Value, PyErr>;
    }
    impl<T: SharedType> GetValueUnpicklable<T> for Probe<T> {
        fn __mpm_get_value(&self, _obj: &T) -> Result<Value, PyErr> {
            Err(PyErr::type_error(format!(
                "cannot pickle '{}' object",
                T::NAME
            )))
        }
    }

    /// `construct` through `Default`.
    pub trait ConstructDefault<T> {
        /// `T::default()`, refusing arguments.
        fn __mpm_construct(&self, name: &str, args: &[Value], kwargs: &Kwargs) -> Result<T, PyErr>;
    }
    impl<T: Default> ConstructDefault<T> for &Probe<T> {
        fn __mpm_construct(&self, name: &str, args: &[Value], kwargs: &Kwargs) -> Result<T, PyErr> {
            if !args.is_empty() || !kwargs.is_empty() {
                return Err(PyErr::type_error(format!("{name}() takes no arguments")));
            }
            Ok(T::default())
        }
    }

    /// `construct` of a type with neither a constructor nor `Default`.
    pub trait ConstructNone<T> {
        /// Always a `TypeError`.
        fn __mpm_construct(&self, name: &str, args: &[Value], kwargs: &Kwargs) -> Result<T, PyErr>;
    }
    impl<T> ConstructNone<T> for Probe<T> {
        fn __mpm_construct(&self, name: &str, _: &[Value], _: &Kwargs) -> Result<T, PyErr> {
            Err(PyErr::type_error(format!(
                "cannot create '{name}' instances: the type has no #[mpmanager(constructor)] and does not implement Default"
            )))
        }
    }
}
