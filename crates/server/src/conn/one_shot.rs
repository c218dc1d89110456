//! The one-shot operations of a connection's first request (§3.3–§3.4):
//! `dummy`, `create`, `incref`, `decref`, `get_methods`, `debug_info` and
//! `number_of_objects`, answered with `#RETURN` or `#TRACEBACK`.

use mpmanager_objects::{args, CallError, Kwargs, Registry};
use mpmanager_pickle::{PyErr, Value};
use mpmanager_protocol::traceback;
use mpmanager_protocol::{PublicOp, Token};

/// Runs one-shot operation `op` on `reg`: the value to return, or the
/// `#TRACEBACK` text. `accept_connection` and `shutdown` are the caller's.
pub(crate) fn run(
    reg: &Registry,
    op: PublicOp,
    args: &[Value],
    kw: &Kwargs,
) -> Result<Value, String> {
    let name = op.name();
    match op {
        PublicOp::Dummy => bind(name, &[], args, kw).map(|_| Value::None),
        PublicOp::DebugInfo => bind(name, &[], args, kw).map(|_| Value::str(&reg.debug_info())),
        PublicOp::NumberOfObjects => {
            bind(name, &[], args, kw)?;
            Ok(Value::Int(reg.number_of_objects() as i64))
        }
        PublicOp::Incref | PublicOp::Decref => {
            let a = bind(name, &["ident"], args, kw)?;
            let ident = ident_of(&a[0], name)?;
            let r = if op == PublicOp::Incref {
                reg.incref(ident)
            } else {
                reg.decref(ident)
            };
            r.map(|()| Value::None).map_err(|e| error_text(e, name))
        }
        PublicOp::GetMethods => {
            let a = bind(name, &["token"], args, kw)?;
            let token = Token::from_value(&a[0]).map_err(|_| {
                traceback::for_error(
                    &PyErr::new(
                        mpmanager_pickle::ExcType::AttributeError,
                        format!("'{}' object has no attribute 'id'", a[0].type_name()),
                    ),
                    name,
                )
            })?;
            let methods = reg
                .get_methods(&token.id)
                .map_err(|e| error_text(e, name))?;
            Ok(Value::tuple(
                methods.iter().map(|m| Value::str(m)).collect(),
            ))
        }
        PublicOp::Create => {
            // create(self, c, typeid, /, *args, **kwds)
            let Some((typeid, rest)) = args.split_first() else {
                return Err(traceback::for_error(
                    &PyErr::type_error(
                        "Server.create() missing 1 required positional argument: 'typeid'",
                    ),
                    name,
                ));
            };
            let Some(typeid) = typeid.as_str() else {
                return Err(traceback::for_error(
                    &PyErr::key_error(typeid.clone()),
                    name,
                ));
            };
            let (ident, exposed) = reg
                .create(typeid, rest, kw)
                .map_err(|e| error_text(e, name))?;
            tracing::trace!(typeid, %ident, "created");
            Ok(Value::tuple(vec![
                Value::str(&ident),
                Value::tuple(exposed.iter().map(|m| Value::str(m)).collect()),
            ]))
        }
        // Handled by the caller.
        _ => Err(traceback::unrecognized_operation(name)),
    }
}

/// A one-shot operation's failure: always a `#TRACEBACK`.
fn error_text(e: CallError, op: &str) -> String {
    match e {
        CallError::Traceback(t) => t,
        CallError::Python(e) => traceback::for_error(&e, op),
        other => traceback::for_error(&PyErr::type_error(other.to_string()), op),
    }
}

/// Binds a one-shot operation's arguments like `Server.<op>(self, c,
/// *params)`, so that errors read as CPython's (`Server.dummy() takes 2
/// positional arguments but 3 were given`). Returns the values of
/// `params`, or the `#TRACEBACK` text.
pub(crate) fn bind(
    op: &str,
    params: &[&str],
    a: &[Value],
    kw: &Kwargs,
) -> Result<Vec<Value>, String> {
    let mut p: Vec<(&str, Option<Value>)> = vec![("c", None)];
    p.extend(params.iter().map(|n| (*n, None)));
    let mut full = Vec::with_capacity(a.len() + 1);
    full.push(Value::None);
    full.extend_from_slice(a);
    let qual = format!("Server.{op}");
    args::bind(&qual, &p, &full, kw)
        .map(|mut v| v.split_off(1))
        .map_err(|e| traceback::for_error(&e, op))
}

/// The ident argument of `incref`/`decref`: a `str`, else a KeyError as
/// CPython's dict lookup would raise.
fn ident_of<'v>(v: &'v Value, op: &str) -> Result<&'v str, String> {
    v.as_str()
        .ok_or_else(|| traceback::for_error(&PyErr::key_error(v.clone()), op))
}
