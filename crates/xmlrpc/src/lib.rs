//! # mpmanager-xmlrpc
//!
//! The `xmlrpclib` serializer of CPython's `multiprocessing.managers`
//! (`BaseManager(serializer='xmlrpclib')`), over the Python value model of
//! [`mpmanager_pickle`]. Each message is the UTF-8 text of
//! `xmlrpc.client.dumps((obj,), None, None, None, 1)` — a bare
//! `<params><param><value>…` fragment with `allow_none` — and is read back
//! as `xmlrpc.client.loads` does (`use_builtin_types=False`).
//!
//! * [`encode()`] writes byte-for-byte what CPython's `Marshaller` writes,
//!   and fails where it fails (ints outside 32 bits, `set`s, recursive
//!   containers, non-`str` dict keys, lone surrogates …); see
//!   [`EncodeError::exception_line`] for CPython's exception text.
//! * [`decode()`] follows CPython's `Unmarshaller` (a tolerant stack
//!   machine) over a well-formedness-checked XML parse, with bounded input
//!   and nesting; every failure is a [`DecodeError`], never a panic.
//! * `<base64>` arrives as an `xmlrpc.client.Binary` object and
//!   `<dateTime.iso8601>` as an `xmlrpc.client.DateTime`, modelled as the
//!   opaque [`Object`](mpmanager_pickle::Object)s their pickles describe
//!   (see [`binary`], [`datetime`]); they are written back unchanged.
//!
//! ```
//! use mpmanager_pickle::{repr, Value};
//! use mpmanager_xmlrpc::{decode, encode};
//! let v = Value::list(vec![Value::str("#RETURN"), Value::None]);
//! let xml = encode(&v).unwrap();
//! assert_eq!(
//!     xml,
//!     b"<params>\n<param>\n<value><array><data>\n<value><string>#RETURN</string></value>\n\
//!       <value><nil/></value></data></array></value>\n</param>\n</params>\n"
//! );
//! assert_eq!(repr(&decode(&xml).unwrap()), "['#RETURN', None]");
//! ```
#![warn(missing_docs)]

mod base64;
pub mod decode;
pub mod encode;
mod wrappers;

pub use decode::{decode, decode_with, DecodeError, DecodeOptions};
pub use encode::{encode, encode_with, EncodeError, EncodeOptions};
pub use wrappers::{as_binary, as_datetime, binary, datetime};
