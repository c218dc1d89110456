//! placeholder (being written)
use crate::value::Value;
/// repr
pub fn repr(_v: &Value) -> String { String::from("?") }
