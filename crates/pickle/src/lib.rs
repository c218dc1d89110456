//! # mpmanager-pickle
//!
//! A pickle codec and Python value model that never executes anything.
//!
//! * [`Value`] models every built-in Python type the manager protocol
//!   carries, plus an [opaque object](Object) node that records how any
//!   other object (a `datetime`, a `Decimal`, a user class instance, a
//!   manager `Token`, a pickled proxy …) is rebuilt, so it passes through
//!   unchanged. Shared and recursive references survive.
//! * [`decode()`] reads protocols 0–5 with bounded memory, nesting and work;
//!   it never imports or calls anything, it only records.
//! * [`encode()`] writes protocols 2–5 (4 by default, as CPython 3.8–3.13 do).
//! * [`hash`], [`ord`] and [`repr`](mod@repr) give Python's equality, hashing,
//!   ordering and `repr` on the model, so a server can run `list`/`dict`
//!   methods itself.
//! * [`to_value`] / [`from_value`] bridge any serde type to and from the model.
//! * [`cycles`] reclaims values that only their own reference cycles keep
//!   alive (a list that contains itself), so decoding recursive pickles
//!   does not leak.
//!
//! ```
//! use mpmanager_pickle::{decode, encode, repr, Value};
//! // pickle.dumps([1, 'a', (None, 2.5)], protocol=4) from CPython:
//! let data = b"\x80\x04\x95\x17\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94NG@\x04\x00\x00\x00\x00\x00\x00\x86\x94e.";
//! let v = decode(data).unwrap();
//! assert_eq!(repr(&v), "[1, 'a', (None, 2.5)]");
//! let again = decode(&encode(&v).unwrap()).unwrap();
//! assert_eq!(repr(&again), "[1, 'a', (None, 2.5)]");
//! ```
#![warn(missing_docs)]

pub mod cycles;
pub mod decode;
pub mod encode;
pub mod exc;
pub mod hash;
pub mod limits;
pub mod ord;
pub mod repr;
pub mod serde_bridge;
pub mod value;

pub use decode::{
    decode, decode_with, decode_with_budget, BudgetRefusal, DecodeError, DecodeErrorKind,
    DecodeOptions, MemoryBudget,
};
pub use encode::{encode, encode_into, encode_with, EncodeError, EncodeOptions};
pub use exc::{ExcType, PyErr};
pub use repr::repr;
pub use serde_bridge::{from_value, to_value, SerdeError};

pub use value::{
    shared, Construct, Dict, Global, Key, List, Object, PyStr, Set, Shared, Slice, Tuple,
    TupleItems, Value,
};
