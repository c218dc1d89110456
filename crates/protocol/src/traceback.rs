//! Error texts: the client's `RemoteError` string and CPython-looking
//! traceback texts for `#TRACEBACK` replies (§3.5, §3.6).
//!
//! CPython sends `traceback.format_exc()` of the failure. Clients only show
//! the text, so the frames need not be real; what matters is the shape
//! (`Traceback (most recent call last):`, indented `File` lines, chained
//! exceptions separated by `During handling of the above exception, another
//! exception occurred:`) and, above all, the last line `Type: message`,
//! which people and tests read. The helpers here produce the same last
//! lines as CPython 3.11 for the server's standard failures; their frames
//! name the file `<mpmanager>` and the CPython function the failure comes
//! from (`serve_client`, `_handle_request`, …), with line number 0.

use mpmanager_pickle::{ExcType, PyErr, Value};

use crate::pyrepr::{repr, str_repr};
use crate::MessageError;

/// The text of a client-side `RemoteError`: `str(RemoteError(text))` is
/// `'\n' + '-'*75 + '\n' + text + '-'*75`.
///
/// ```
/// use mpmanager_protocol::traceback::remote_error_str;
/// let s = remote_error_str("boom\n");
/// assert_eq!(s, format!("\n{}\nboom\n{}", "-".repeat(75), "-".repeat(75)));
/// ```
pub fn remote_error_str(text: &str) -> String {
    let rule = "-".repeat(75);
    format!("\n{rule}\n{text}{rule}")
}

/// One stack frame line of a traceback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The file name shown.
    pub file: String,
    /// The line number shown.
    pub line: u32,
    /// The function name shown.
    pub function: String,
    /// The source line shown under it, if any.
    pub source: Option<String>,
}

impl Frame {
    /// A frame in `<mpmanager>` for `function`, line 0, without source.
    pub fn mpmanager(function: &str) -> Frame {
        Frame {
            file: "<mpmanager>".into(),
            line: 0,
            function: function.into(),
            source: None,
        }
    }
}

/// One exception of a traceback: its frames (outermost first) and its last
/// line (`Type: message`, see [`exception_line`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TbEntry {
    /// The frames, outermost first.
    pub frames: Vec<Frame>,
    /// The `Type: message` line, without the newline.
    pub exception: String,
}

impl TbEntry {
    /// An entry for `err` raised in `function`.
    pub fn new(function: &str, err: &PyErr) -> TbEntry {
        TbEntry::line(function, exception_line(err))
    }

    /// An entry for an exception whose last line is `exception` (`Type:
    /// message`), raised in `function`.
    pub fn line(function: &str, exception: String) -> TbEntry {
        TbEntry {
            frames: vec![Frame::mpmanager(function)],
            exception,
        }
    }
}

/// Formats a chain of exceptions as `traceback.format_exc()` does: the
/// first entry is the earliest exception; each later one was raised while
/// handling the one before. The text ends with a newline.
///
/// ```
/// use mpmanager_pickle::PyErr;
/// use mpmanager_protocol::traceback::{format_chain, TbEntry};
/// let text = format_chain(&[TbEntry::new("serve_client", &PyErr::value_error("bad"))]);
/// assert_eq!(
///     text,
///     "Traceback (most recent call last):\n  File \"<mpmanager>\", line 0, in serve_client\nValueError: bad\n"
/// );
/// ```
pub fn format_chain(entries: &[TbEntry]) -> String {
    let mut out = String::new();
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(
                "\nDuring handling of the above exception, another exception occurred:\n\n",
            );
        }
        if !e.frames.is_empty() {
            out.push_str("Traceback (most recent call last):\n");
        }
        for f in &e.frames {
            out.push_str(&format!(
                "  File \"{}\", line {}, in {}\n",
                f.file, f.line, f.function
            ));
            if let Some(src) = &f.source {
                out.push_str(&format!("    {src}\n"));
            }
        }
        out.push_str(&e.exception);
        out.push('\n');
    }
    out
}

/// The last line of a Python traceback for `err`, as
/// `traceback.format_exception_only` writes it: the class name (prefixed by
/// its module unless it is `builtins`), then `: ` and `str(exc)` unless that
/// is empty. `str(exc)` is the message for one `str` argument, the `repr`
/// of the key for `KeyError`, the `repr` of the args tuple for several.
///
/// ```
/// use mpmanager_pickle::{ExcType, Global, PyErr, Value};
/// use mpmanager_protocol::traceback::exception_line;
/// assert_eq!(exception_line(&PyErr::key_error(Value::str("abc"))), "KeyError: 'abc'");
/// let empty = PyErr::with_args(ExcType::Other(Global::new("_queue", "Empty").into()), vec![]);
/// assert_eq!(exception_line(&empty), "_queue.Empty");
/// assert_eq!(exception_line(&PyErr::value_error("")), "ValueError");
/// ```
pub fn exception_line(err: &PyErr) -> String {
    let (module, name) = err.ty.path();
    let ty = if module == "builtins" {
        name.to_string()
    } else {
        format!("{module}.{name}")
    };
    let msg = match err.args.as_slice() {
        [] => String::new(),
        [one] if matches!(err.ty, ExcType::KeyError) => repr(one),
        [Value::Str(s)] => s.to_string_lossy().into_owned(),
        [one] => repr(one),
        many => repr(&Value::tuple(many.to_vec())),
    };
    if msg.is_empty() {
        ty
    } else {
        format!("{ty}: {msg}")
    }
}

/// A traceback for `err` raised in `function` (a single exception).
///
/// ```
/// use mpmanager_pickle::PyErr;
/// use mpmanager_protocol::traceback::for_error;
/// let t = for_error(&PyErr::value_error("Number of processes must be at least 1"), "create");
/// assert!(t.ends_with("\nValueError: Number of processes must be at least 1\n"));
/// ```
pub fn for_error(err: &PyErr, function: &str) -> String {
    format_chain(&[TbEntry::new(function, err)])
}

/// A traceback whose last line is `exception` (`Type: message`, for
/// exceptions that are not a [`PyErr`]), raised in `function`.
///
/// ```
/// use mpmanager_protocol::traceback::for_line;
/// let t = for_line("serve_client", "EOFError: Ran out of input".into());
/// assert!(t.ends_with("in serve_client\nEOFError: Ran out of input\n"));
/// ```
pub fn for_line(function: &str, exception: String) -> String {
    format_chain(&[TbEntry::line(function, exception)])
}

fn attribute_error(msg: String) -> PyErr {
    PyErr::new(ExcType::AttributeError, msg)
}

/// The `#TRACEBACK` text for calling a method that is not exposed and has
/// no fallback (§3.5 step 8): an `AttributeError` chained with the
/// `KeyError` of the fallback lookup, exactly as CPython 3.11 shows it
/// (its last line is therefore `KeyError: 'nosuch'`).
///
/// `class` is the referent's class path as `repr(type(obj))` shows it
/// inside `<class '…'>` (`list`, `queue.Queue`); `exposed` is shown as
/// the set literal CPython prints (duplicates removed, in the given order;
/// CPython's order is its arbitrary set order).
///
/// ```
/// use mpmanager_protocol::traceback::not_exposed;
/// let t = not_exposed("nosuch", "list", &["append", "count"]);
/// assert!(t.contains(
///     "\nAttributeError: method 'nosuch' of <class 'list'> object is not in exposed={'append', 'count'}\n"
/// ));
/// assert!(t.ends_with("\nKeyError: 'nosuch'\n"));
/// ```
pub fn not_exposed<S: AsRef<str>>(method: &str, class: &str, exposed: &[S]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for n in exposed {
        if !names.contains(&n.as_ref()) {
            names.push(n.as_ref());
        }
    }
    let set = if names.is_empty() {
        "set()".to_string()
    } else {
        let inner: Vec<String> = names.iter().map(|n| str_repr(n)).collect();
        format!("{{{}}}", inner.join(", "))
    };
    let first = attribute_error(format!(
        "method {} of <class {}> object is not in exposed={set}",
        str_repr(method),
        str_repr(class)
    ));
    format_chain(&[
        TbEntry::new("serve_client", &first),
        TbEntry::new("serve_client", &PyErr::key_error(Value::str(method))),
    ])
}

/// The `#TRACEBACK` text for a method call on an unknown ident (§3.5 step
/// 3): `KeyError: '<ident>'`, chained as in CPython.
///
/// ```
/// use mpmanager_protocol::traceback::unknown_ident;
/// assert!(unknown_ident("nonexist").ends_with("\nKeyError: 'nonexist'\n"));
/// ```
pub fn unknown_ident(ident: &str) -> String {
    let e = PyErr::key_error(Value::str(ident));
    format_chain(&[
        TbEntry::new("serve_client", &e),
        TbEntry::new("serve_client", &e),
    ])
}

/// The `#TRACEBACK` text for a first request naming something that is not a
/// public operation (§3.3): `AssertionError: 'foo' unrecognized`.
///
/// ```
/// use mpmanager_protocol::traceback::unrecognized_operation;
/// assert!(unrecognized_operation("foo").ends_with("\nAssertionError: 'foo' unrecognized\n"));
/// ```
pub fn unrecognized_operation(name: &str) -> String {
    for_line(
        "_handle_request",
        format!("AssertionError: {} unrecognized", str_repr(name)),
    )
}

/// The `#TRACEBACK` text for an unknown typeid in `create`:
/// `KeyError: '<typeid>'`.
///
/// ```
/// use mpmanager_protocol::traceback::unknown_typeid;
/// assert!(unknown_typeid("nosuchtype").ends_with("\nKeyError: 'nosuchtype'\n"));
/// ```
pub fn unknown_typeid(typeid: &str) -> String {
    format_chain(&[TbEntry {
        frames: vec![
            Frame::mpmanager("_handle_request"),
            Frame::mpmanager("create"),
        ],
        exception: exception_line(&PyErr::key_error(Value::str(typeid))),
    }])
}

/// The `#TRACEBACK` text for a malformed request (a [`MessageError`] from
/// [`crate::Request::from_value`]), e.g. `ValueError: not enough values to
/// unpack (expected 4, got 2)`.
///
/// ```
/// use mpmanager_pickle::Value;
/// use mpmanager_protocol::{traceback::bad_request, Request};
/// let err = Request::from_value(&Value::tuple(vec![Value::Int(1), Value::Int(2)])).unwrap_err();
/// assert!(bad_request(&err).ends_with("\nValueError: not enough values to unpack (expected 4, got 2)\n"));
/// ```
pub fn bad_request(err: &MessageError) -> String {
    for_error(&err.to_py_err(), "serve_client")
}
