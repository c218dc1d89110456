//! The built-in data types of `SyncManager` and their exposed lists.
//!
//! The exposed lists are the union over CPython 3.8–3.14 (PROTOCOL.md
//! §4.1–§4.2), in the order the newest version reports them. Class proxies
//! (`ListProxy`, `DictProxy`, …) ignore this list, so extra names are
//! harmless to older clients.

use std::sync::Arc;

use crate::registry::{Registry, TypeSpec};
use crate::Referent;

mod array;
mod dict;
mod list;
mod namespace;
mod set;

pub use array::ArrayObject;
pub use dict::{DictKeyIterator, DictObject};
pub use list::ListObject;
pub use namespace::{NamespaceObject, ValueObject};
pub use set::SetObject;

/// `list` (3.14 order, which adds `clear` and `copy`).
pub const LIST_EXPOSED: &[&str] = &[
    "__add__",
    "__contains__",
    "__delitem__",
    "__getitem__",
    "__imul__",
    "__len__",
    "__mul__",
    "__reversed__",
    "__rmul__",
    "__setitem__",
    "append",
    "clear",
    "copy",
    "count",
    "extend",
    "index",
    "insert",
    "pop",
    "remove",
    "reverse",
    "sort",
];

/// `dict` before `method_to_typeid` appends `'__iter__'` again (3.14 order,
/// which adds `__ior__`, `__or__`, `__reversed__`, `__ror__`, `fromkeys`).
pub const DICT_EXPOSED: &[&str] = &[
    "__contains__",
    "__delitem__",
    "__getitem__",
    "__ior__",
    "__iter__",
    "__len__",
    "__or__",
    "__reversed__",
    "__ror__",
    "__setitem__",
    "clear",
    "copy",
    "fromkeys",
    "get",
    "items",
    "keys",
    "pop",
    "popitem",
    "setdefault",
    "update",
    "values",
];

/// `set` (3.14).
pub const SET_EXPOSED: &[&str] = &[
    "__and__",
    "__class_getitem__",
    "__contains__",
    "__iand__",
    "__ior__",
    "__isub__",
    "__iter__",
    "__ixor__",
    "__len__",
    "__or__",
    "__rand__",
    "__ror__",
    "__rsub__",
    "__rxor__",
    "__sub__",
    "__xor__",
    "__ge__",
    "__gt__",
    "__le__",
    "__lt__",
    "add",
    "clear",
    "copy",
    "difference",
    "difference_update",
    "discard",
    "intersection",
    "intersection_update",
    "isdisjoint",
    "issubset",
    "issuperset",
    "pop",
    "remove",
    "symmetric_difference",
    "symmetric_difference_update",
    "union",
    "update",
];

/// `Namespace`.
pub const NAMESPACE_EXPOSED: &[&str] = &["__getattribute__", "__setattr__", "__delattr__"];

/// `Value`.
pub const VALUE_EXPOSED: &[&str] = &["get", "set"];

/// `Array`.
pub const ARRAY_EXPOSED: &[&str] = &["__len__", "__getitem__", "__setitem__"];

/// `Iterator`.
pub const ITERATOR_EXPOSED: &[&str] = &["__next__", "send", "throw", "close"];

fn ctor<T: Referent>(
    f: fn(&[mpmanager_pickle::Value], &crate::Kwargs) -> Result<T, mpmanager_pickle::PyErr>,
) -> crate::registry::Constructor {
    Arc::new(move |a, k| Ok(Arc::new(f(a, k)?) as Arc<dyn Referent>))
}

/// Registers `list`, `dict`, `Namespace`, `Value`, `Array`, `set` and
/// `Iterator` with CPython's exposed lists.
///
/// ```
/// use mpmanager_objects::{Registry, Kwargs};
/// let reg = Registry::new();
/// mpmanager_objects::types::register_builtin_types(&reg);
/// let (_, exposed) = reg.create("dict", &[], &Kwargs::new()).unwrap();
/// assert_eq!(exposed.iter().filter(|m| *m == "__iter__").count(), 2);
/// ```
pub fn register_builtin_types(reg: &Registry) {
    reg.register(TypeSpec::new("list", ctor(ListObject::construct)).exposed(LIST_EXPOSED));
    reg.register(
        TypeSpec::new("dict", ctor(DictObject::construct))
            .exposed(DICT_EXPOSED)
            .method_to_typeid("__iter__", "Iterator"),
    );
    reg.register(TypeSpec::new("set", ctor(SetObject::construct)).exposed(SET_EXPOSED));
    reg.register(
        TypeSpec::new("Namespace", ctor(NamespaceObject::construct)).exposed(NAMESPACE_EXPOSED),
    );
    reg.register(TypeSpec::new("Value", ctor(ValueObject::construct)).exposed(VALUE_EXPOSED));
    reg.register(TypeSpec::new("Array", ctor(ArrayObject::construct)).exposed(ARRAY_EXPOSED));
    reg.register(TypeSpec::without_constructor("Iterator").exposed(ITERATOR_EXPOSED));
}
