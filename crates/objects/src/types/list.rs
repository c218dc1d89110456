//! `list` (typeid `list`, client `ListProxy`).

use mpmanager_pickle::hash::py_eq;
use mpmanager_pickle::repr::try_repr;
use mpmanager_pickle::{ExcType, Object, PyErr, Value};
use parking_lot::RwLock;

use crate::args::{self, iterate};
use crate::referent::{CallContext, CallError, Kwargs, Outcome, Referent};

/// A shared Python `list`.
///
/// ```
/// use mpmanager_objects::{types::ListObject, CallContext, Kwargs, Outcome, Referent};
/// use mpmanager_pickle::Value;
/// let l = ListObject::new((0..10).map(|i| Value::Int(i * i)).collect());
/// let cx = CallContext::new(0);
/// let s = mpmanager_pickle::Slice { start: Value::Int(2), stop: Value::Int(5), step: Value::None };
/// let Outcome::Return(v) = l.call(&cx, "__getitem__", &[Value::Slice(s.into())], &Kwargs::new()).unwrap()
///     else { panic!() };
/// assert_eq!(mpmanager_pickle::repr(&v), "[4, 9, 16]");
/// assert_eq!(l.repr().unwrap(), "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]");
/// ```
#[derive(Default)]
pub struct ListObject {
    items: RwLock<Vec<Value>>,
}

fn ret(v: Value) -> Result<Outcome, CallError> {
    Ok(Outcome::Return(v))
}

fn none() -> Result<Outcome, CallError> {
    Ok(Outcome::Return(Value::None))
}

impl ListObject {
    /// A list holding `items`.
    pub fn new(items: Vec<Value>) -> ListObject {
        ListObject {
            items: RwLock::new(items),
        }
    }

    /// `list(iterable=())`, as `create('list', …)` calls it.
    pub fn construct(args: &[Value], kwargs: &Kwargs) -> Result<ListObject, PyErr> {
        if !kwargs.is_empty() {
            return Err(PyErr::type_error("list() takes no keyword arguments"));
        }
        match args {
            [] => Ok(ListObject::default()),
            [it] => Ok(ListObject::new(iterate(it)?)),
            _ => Err(PyErr::type_error(format!(
                "list expected at most 1 argument, got {}",
                args.len()
            ))),
        }
    }

    /// A snapshot of the items.
    pub fn items(&self) -> Vec<Value> {
        self.items.read().clone()
    }

    fn call_inner(&self, method: &str, a: &[Value], kw: &Kwargs) -> Result<Outcome, CallError> {
        // Keyword arguments: only sort takes them.
        if method != "sort" && !kw.is_empty() {
            let msg = if method.starts_with("__")
                && method != "__getitem__"
                && method != "__reversed__"
            {
                format!("wrapper {method}() takes no keyword arguments")
            } else {
                format!("list.{method}() takes no keyword arguments")
            };
            return Err(PyErr::type_error(msg).into());
        }
        match method {
            "__add__" => {
                let [other] = args::slot::<1>(a)?;
                let Value::List(o) = other else {
                    return Err(PyErr::type_error(format!(
                        "can only concatenate list (not \"{}\") to list",
                        other.type_name()
                    ))
                    .into());
                };
                let mut out = self.items.read().clone();
                out.extend(o.read_recursive().items.iter().cloned());
                ret(Value::list(out))
            }
            "__contains__" => {
                let [x] = args::slot::<1>(a)?;
                let items = self.items.read();
                for v in items.iter() {
                    if v.is(x) || py_eq(v, x)? {
                        return ret(Value::Bool(true));
                    }
                }
                ret(Value::Bool(false))
            }
            "__getitem__" => {
                let i = args::one("list.__getitem__", a)?;
                let items = self.items.read();
                if let Value::Slice(s) = i {
                    let r = args::slice_indices(s, items.len())?;
                    return ret(Value::list(r.indices().map(|k| items[k].clone()).collect()));
                }
                match args::seq_index(i, items.len(), "list")? {
                    Some(k) => ret(items[k].clone()),
                    None => Err(PyErr::index_error("list index out of range").into()),
                }
            }
            "__setitem__" => {
                let [i, v] = args::slot::<2>(a)?;
                if let Value::Slice(s) = i {
                    return self.set_slice(s, v);
                }
                let mut items = self.items.write();
                match args::seq_index(i, items.len(), "list")? {
                    Some(k) => {
                        let old = std::mem::replace(&mut items[k], v.clone());
                        drop(items);
                        drop(old);
                        none()
                    }
                    None => Err(PyErr::index_error("list assignment index out of range").into()),
                }
            }
            "__delitem__" => {
                let [i] = args::slot::<1>(a)?;
                let mut items = self.items.write();
                if let Value::Slice(s) = i {
                    let r = args::slice_indices(s, items.len())?;
                    let removed: Vec<Value>;
                    if r.step == 1 {
                        removed = items
                            .drain(r.start as usize..r.start as usize + r.len)
                            .collect();
                    } else {
                        let mut del = vec![false; items.len()];
                        r.indices().for_each(|k| del[k] = true);
                        let old = std::mem::take(&mut *items);
                        let (keep, gone): (Vec<_>, Vec<_>) =
                            old.into_iter().enumerate().partition(|(k, _)| !del[*k]);
                        *items = keep.into_iter().map(|(_, v)| v).collect();
                        removed = gone.into_iter().map(|(_, v)| v).collect();
                    }
                    drop(items);
                    drop(removed);
                    return none();
                }
                match args::seq_index(i, items.len(), "list")? {
                    Some(k) => {
                        let old = items.remove(k);
                        drop(items);
                        drop(old);
                        none()
                    }
                    None => Err(PyErr::index_error("list assignment index out of range").into()),
                }
            }
            "__len__" => {
                args::slot::<0>(a)?;
                ret(Value::Int(self.items.read().len() as i64))
            }
            "__mul__" | "__rmul__" => {
                let [n] = args::slot::<1>(a)?;
                let n = args::index(n)?;
                let items = self.items.read();
                ret(Value::list(repeat(&items, n)?))
            }
            "__imul__" => {
                let [n] = args::slot::<1>(a)?;
                let n = args::index(n)?;
                let mut items = self.items.write();
                if n <= 0 {
                    let old = std::mem::take(&mut *items);
                    drop(items);
                    drop(old);
                    return ret(Value::list(vec![]));
                }
                let new = repeat(&items, n)?;
                *items = new;
                ret(Value::list(items.clone()))
            }
            "__reversed__" => {
                args::none("list.__reversed__", a)?;
                let items = self.items.read().clone();
                let n = items.len();
                // list_reverseiterator.__reduce__: (reversed, (list,), index)
                let mut o = Object::reduce(
                    Value::global("builtins", "reversed"),
                    vec![Value::list(items)],
                );
                if n > 0 {
                    o.state = Some(Value::Int(n as i64 - 1));
                }
                ret(Value::object(o))
            }
            "append" => {
                let x = args::one("list.append", a)?;
                self.items.write().push(x.clone());
                none()
            }
            "clear" => {
                args::none("list.clear", a)?;
                let old = std::mem::take(&mut *self.items.write());
                drop(old);
                none()
            }
            "copy" => {
                args::none("list.copy", a)?;
                ret(Value::list(self.items.read().clone()))
            }
            "count" => {
                let x = args::one("list.count", a)?;
                let items = self.items.read();
                let mut n = 0i64;
                for v in items.iter() {
                    if v.is(x) || py_eq(v, x)? {
                        n += 1;
                    }
                }
                ret(Value::Int(n))
            }
            "extend" => {
                let x = args::one("list.extend", a)?;
                let new = iterate(x)?;
                self.items.write().extend(new);
                none()
            }
            "index" => {
                args::range("index", a, 1, 3)?;
                let x = &a[0];
                let items = self.items.read();
                let len = items.len() as i64;
                let bound = |v: Option<&Value>, default: i64| -> Result<i64, PyErr> {
                    let Some(v) = v else { return Ok(default) };
                    let i = match args::int_like(v) {
                        Some(Ok(i)) => i,
                        Some(Err(neg)) => {
                            if neg {
                                i64::MIN
                            } else {
                                i64::MAX
                            }
                        }
                        None => {
                            return Err(PyErr::type_error(
                                "slice indices must be integers or have an __index__ method",
                            ))
                        }
                    };
                    Ok(if i < 0 {
                        (i.saturating_add(len)).max(0)
                    } else {
                        i
                    })
                };
                let start = bound(a.get(1), 0)?;
                let stop = bound(a.get(2), len)?.min(len);
                let mut k = start;
                while k < stop && (k as usize) < items.len() {
                    let v = &items[k as usize];
                    if v.is(x) || py_eq(v, x)? {
                        return ret(Value::Int(k));
                    }
                    k += 1;
                }
                Err(PyErr::value_error(format!("{} is not in list", try_repr(x)?)).into())
            }
            "insert" => {
                let [i, x] = args::exact::<2>("insert", a)?;
                let i = args::ssize(i)?;
                let mut items = self.items.write();
                let len = items.len() as i64;
                let k = if i < 0 { (i + len).max(0) } else { i.min(len) };
                items.insert(k as usize, x.clone());
                none()
            }
            "pop" => {
                args::range("pop", a, 0, 1)?;
                let i = match a.first() {
                    Some(v) => args::ssize(v)?,
                    None => -1,
                };
                let mut items = self.items.write();
                if items.is_empty() {
                    return Err(PyErr::index_error("pop from empty list").into());
                }
                let len = items.len() as i64;
                let k = if i < 0 { i + len } else { i };
                if !(0..len).contains(&k) {
                    return Err(PyErr::index_error("pop index out of range").into());
                }
                ret(items.remove(k as usize))
            }
            "remove" => {
                let x = args::one("list.remove", a)?;
                let mut items = self.items.write();
                let mut found = None;
                for (k, v) in items.iter().enumerate() {
                    if v.is(x) || py_eq(v, x)? {
                        found = Some(k);
                        break;
                    }
                }
                match found {
                    Some(k) => {
                        let old = items.remove(k);
                        drop(items);
                        drop(old);
                        none()
                    }
                    None => Err(PyErr::value_error("list.remove(x): x not in list").into()),
                }
            }
            "reverse" => {
                args::none("list.reverse", a)?;
                self.items.write().reverse();
                none()
            }
            "sort" => {
                if !a.is_empty() {
                    return Err(PyErr::type_error("sort() takes no positional arguments").into());
                }
                let mut reverse = false;
                for (k, v) in kw.iter() {
                    match k {
                        "reverse" => reverse = mpmanager_pickle::hash::truthy(v),
                        "key" => {
                            if !matches!(v, Value::None) {
                                return Err(PyErr::new(
                                    ExcType::NotImplementedError,
                                    format!(
                                        "list.sort(key={}): mpmanager's server cannot run a \
                                         Python callable; sort on the client instead, e.g. \
                                         sorted(proxy[:], key=...)",
                                        mpmanager_pickle::repr(v)
                                    ),
                                )
                                .into());
                            }
                        }
                        other => {
                            return Err(PyErr::type_error(format!(
                                "sort() got an unexpected keyword argument '{other}'"
                            ))
                            .into())
                        }
                    }
                }
                // Sort a copy and commit on success: concurrent readers see
                // the old or the new order, never a half-sorted list.
                let mut items = self.items.write();
                let mut copy = items.clone();
                mpmanager_pickle::ord::sort(&mut copy, reverse)?;
                *items = copy;
                none()
            }
            _ => Err(CallError::Python(args::no_attribute("list", method))),
        }
    }

    fn set_slice(&self, s: &mpmanager_pickle::Slice, v: &Value) -> Result<Outcome, CallError> {
        if !args::is_iterable(v) {
            return Err(PyErr::type_error("must assign iterable to extended slice").into());
        }
        let new = iterate(v)?;
        let mut items = self.items.write();
        let r = args::slice_indices(s, items.len())?;
        if r.step == 1 {
            let start = r.start as usize;
            let old: Vec<Value> = items.splice(start..start + r.len, new).collect();
            drop(items);
            drop(old);
            return none();
        }
        if new.len() != r.len {
            return Err(PyErr::value_error(format!(
                "attempt to assign sequence of size {} to extended slice of size {}",
                new.len(),
                r.len
            ))
            .into());
        }
        let mut old = Vec::with_capacity(new.len());
        for (k, v) in r.indices().zip(new) {
            old.push(std::mem::replace(&mut items[k], v));
        }
        drop(items);
        drop(old);
        none()
    }
}

fn repeat(items: &[Value], n: i64) -> Result<Vec<Value>, PyErr> {
    if n <= 0 || items.is_empty() {
        return Ok(Vec::new());
    }
    let total = (items.len() as u64)
        .checked_mul(n as u64)
        .filter(|&t| t <= (i64::MAX as u64) / 8)
        .ok_or_else(args::memory_error)?;
    let mut out = args::alloc_values(total as usize)?;
    for _ in 0..n {
        out.extend(items.iter().cloned());
    }
    Ok(out)
}

impl Referent for ListObject {
    /// No method of a `ListObject` waits for another client.
    fn may_block(&self, _method: &str) -> bool {
        false
    }

    fn class_name(&self) -> &str {
        "list"
    }

    fn call(
        &self,
        _cx: &CallContext,
        method: &str,
        args: &[Value],
        kwargs: &Kwargs,
    ) -> Result<Outcome, CallError> {
        self.call_inner(method, args, kwargs)
    }

    fn repr(&self) -> Result<String, PyErr> {
        let snapshot = Value::list(self.items.read().clone());
        try_repr(&snapshot)
    }

    fn get_value(&self) -> Result<Value, PyErr> {
        Ok(Value::list(self.items.read().clone()))
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        self.items.read().iter().for_each(f);
    }
}
