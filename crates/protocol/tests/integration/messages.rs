//! Round trips and exact wire shapes of every manager message.

use std::sync::Arc;

use mpmanager_pickle::hash::py_eq;
use mpmanager_pickle::{Construct, ExcType, Global, Object, PyErr, PyStr, Value};
use mpmanager_protocol::{MessageError, PublicOp, PyAddress, Reply, Request, Token};

fn s(x: &str) -> Value {
    Value::str(x)
}
fn t(items: Vec<Value>) -> Value {
    Value::tuple(items)
}
fn d(pairs: Vec<(&str, Value)>) -> Value {
    Value::dict(pairs.into_iter().map(|(k, v)| (s(k), v)).collect()).unwrap()
}
fn empty_dict() -> Value {
    d(vec![])
}
#[track_caller]
fn assert_py_eq(a: &Value, b: &Value) {
    assert!(py_eq(a, b).unwrap(), "values differ");
}
#[track_caller]
fn assert_py_ne(a: &Value, b: &Value) {
    assert!(!py_eq(a, b).unwrap(), "values should differ");
}

/// The token of §3.7's captured `#PROXY`, built by hand as the decoder
/// produces it.
fn iterator_token_value() -> Value {
    Value::object(Object {
        callable: Value::global("multiprocessing.managers", "Token"),
        args: t(vec![]),
        kwargs: None,
        construct: Construct::NewObj,
        state: Some(t(vec![
            s("Iterator"),
            t(vec![s("127.0.0.1"), Value::Int(50011)]),
            s("7f1c82a1c1d0"),
        ])),
        list_items: vec![],
        dict_items: vec![],
    })
}

fn tcp() -> PyAddress {
    PyAddress::tcp("127.0.0.1", 50011)
}

// ---------------------------------------------------------------- requests

#[test]
fn appendix_b_requests_round_trip() {
    let cases = [
        (
            t(vec![
                Value::None,
                s("accept_connection"),
                t(vec![s("MainProcess")]),
                empty_dict(),
            ]),
            Request::public(PublicOp::AcceptConnection, vec![s("MainProcess")]),
        ),
        (
            t(vec![
                s("7f1c829a8a00"),
                s("__setitem__"),
                t(vec![s("a"), Value::Int(1)]),
                empty_dict(),
            ]),
            Request::call(
                "7f1c829a8a00",
                "__setitem__",
                vec![s("a"), Value::Int(1)],
                vec![],
            ),
        ),
        (
            t(vec![
                Value::None,
                s("incref"),
                t(vec![s("7f1c829a8a00")]),
                empty_dict(),
            ]),
            Request::public(PublicOp::Incref, vec![s("7f1c829a8a00")]),
        ),
        (
            t(vec![
                Value::None,
                s("create"),
                t(vec![s("dict")]),
                empty_dict(),
            ]),
            Request::public(PublicOp::Create, vec![s("dict")]),
        ),
        (
            t(vec![
                Value::None,
                s("create"),
                t(vec![s("Queue")]),
                d(vec![("maxsize", Value::Int(6))]),
            ]),
            Request {
                kwargs: vec![("maxsize".into(), Value::Int(6))],
                ..Request::public(PublicOp::Create, vec![s("Queue")])
            },
        ),
        (
            t(vec![Value::None, s("dummy"), t(vec![]), empty_dict()]),
            Request::public(PublicOp::Dummy, vec![]),
        ),
    ];
    for (wire, typed) in cases {
        let parsed = Request::from_value(&wire).unwrap();
        assert_eq!(parsed, typed);
        assert_py_eq(&typed.to_value(), &wire);
        assert_py_eq(&parsed.to_value(), &wire);
    }
}

#[test]
fn request_fields_are_read() {
    let wire = t(vec![
        s("abc"),
        s("update"),
        t(vec![Value::Int(1), Value::list(vec![]), Value::None]),
        d(vec![("b", Value::Int(2)), ("a", Value::Float(1.5))]),
    ]);
    let r = Request::from_value(&wire).unwrap();
    assert_eq!(r.ident.as_deref(), Some("abc"));
    assert_eq!(r.method, "update");
    assert_eq!(r.args.len(), 3);
    assert_eq!(
        r.kwargs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["b", "a"]
    );
    assert!(matches!(r.kwarg("a"), Some(Value::Float(f)) if *f == 1.5));
    assert!(py_eq(r.kwarg("b").unwrap(), &Value::Int(2)).unwrap());
    assert!(r.kwarg("zz").is_none());
    assert_eq!(r.public_op(), None);
    // The wire value carries args as a tuple and kwargs as a dict.
    let v = r.to_value();
    let Value::Tuple(items) = &v else {
        panic!("not a tuple")
    };
    assert!(matches!(items[0], Value::Str(_)));
    assert!(matches!(items[2], Value::Tuple(_)));
    assert!(matches!(items[3], Value::Dict(_)));
    // Changing any part changes the value.
    let mut other = r.clone();
    other.kwargs[0].1 = Value::Int(3);
    assert_py_ne(&other.to_value(), &wire);
    assert_ne!(other, r);
}

#[test]
fn xmlrpclib_lists_are_accepted_and_reemitted_as_tuples() {
    // xmlrpclib turns every tuple into a list.
    let wire = Value::list(vec![
        s("7f1f5db69c90"),
        s("put"),
        Value::list(vec![s("hello")]),
        empty_dict(),
    ]);
    let r = Request::from_value(&wire).unwrap();
    assert_eq!(
        r,
        Request::call("7f1f5db69c90", "put", vec![s("hello")], vec![])
    );
    assert_py_eq(
        &r.to_value(),
        &t(vec![
            s("7f1f5db69c90"),
            s("put"),
            t(vec![s("hello")]),
            empty_dict(),
        ]),
    );
}

#[test]
fn malformed_requests() {
    let shape = |v: Value| Request::from_value(&v).unwrap_err();
    match shape(Value::Int(5)) {
        e @ MessageError::RequestShape { len: None, .. } => {
            assert_eq!(
                e.to_py_err().to_string(),
                "TypeError: cannot unpack non-iterable int object"
            )
        }
        e => panic!("{e:?}"),
    }
    match shape(t(vec![Value::None, s("dummy")])) {
        e @ MessageError::RequestShape { len: Some(2), .. } => assert_eq!(
            e.to_py_err().to_string(),
            "ValueError: not enough values to unpack (expected 4, got 2)"
        ),
        e => panic!("{e:?}"),
    }
    match shape(t(vec![Value::None; 5])) {
        e @ MessageError::RequestShape { len: Some(5), .. } => {
            assert_eq!(
                e.to_py_err().to_string(),
                "ValueError: too many values to unpack (expected 4)"
            )
        }
        e => panic!("{e:?}"),
    }
    let field = |v: Value| match Request::from_value(&v).unwrap_err() {
        MessageError::WrongType { field, found, .. } => (field, found),
        e => panic!("{e:?}"),
    };
    assert_eq!(
        field(t(vec![Value::Int(1), s("m"), t(vec![]), empty_dict()])),
        ("request ident", "int".to_string())
    );
    assert_eq!(
        field(t(vec![Value::None, Value::None, t(vec![]), empty_dict()])),
        ("request method name", "NoneType".to_string())
    );
    assert_eq!(
        field(t(vec![Value::None, s("m"), empty_dict(), empty_dict()])),
        ("request args", "dict".to_string())
    );
    assert_eq!(
        field(t(vec![Value::None, s("m"), t(vec![]), Value::list(vec![])])),
        ("request kwds", "list of 0 items".to_string())
    );
    let int_key = Value::dict(vec![(Value::Int(1), Value::None)]).unwrap();
    assert_eq!(
        field(t(vec![Value::None, s("m"), t(vec![]), int_key])),
        ("keyword argument names", "int".to_string())
    );
    let lone = Value::Str(PyStr::from_code_points([0x6d, 0xDC80]).unwrap());
    match Request::from_value(&t(vec![Value::None, lone, t(vec![]), empty_dict()])).unwrap_err() {
        MessageError::Surrogates { field, repr } => {
            assert_eq!(field, "request method name");
            assert_eq!(repr, "'m\\udc80'");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn public_ops() {
    for op in PublicOp::ALL {
        assert_eq!(PublicOp::from_name(op.name()), Some(op));
        let r = Request::public(op, vec![]);
        assert_eq!(
            Request::from_value(&r.to_value()).unwrap().public_op(),
            Some(op)
        );
    }
    let names: Vec<_> = PublicOp::ALL.iter().map(|o| o.name()).collect();
    assert_eq!(
        names,
        [
            "shutdown",
            "create",
            "accept_connection",
            "get_methods",
            "debug_info",
            "number_of_objects",
            "dummy",
            "incref",
            "decref"
        ]
    );
    assert_eq!(PublicOp::from_name("Create"), None);
    assert_eq!(PublicOp::from_name("track_segment"), None);
}

// ----------------------------------------------------------------- replies

#[test]
fn reply_shapes() {
    // ('#RETURN', None)
    assert_py_eq(
        &Reply::none().to_value(),
        &t(vec![s("#RETURN"), Value::None]),
    );
    // ('#ERROR', KeyError('zz')): REDUCE builtins.KeyError ('zz',)
    let err = Reply::error(&PyErr::key_error(s("zz"))).to_value();
    let expected = t(vec![
        s("#ERROR"),
        Value::object(Object::reduce(
            Value::global("builtins", "KeyError"),
            vec![s("zz")],
        )),
    ]);
    assert_py_eq(&err, &expected);
    // ('#ERROR', queue.Empty()): REDUCE _queue.Empty ()
    let empty = PyErr::with_args(
        ExcType::Other(Arc::new(Global::new("_queue", "Empty"))),
        vec![],
    );
    assert_py_eq(
        &Reply::error(&empty).to_value(),
        &t(vec![
            s("#ERROR"),
            Value::object(Object::reduce(Value::global("_queue", "Empty"), vec![])),
        ]),
    );
    // ('#TRACEBACK', text), ('#UNSERIALIZABLE', text)
    assert_py_eq(
        &Reply::Traceback("tb\n".into()).to_value(),
        &t(vec![s("#TRACEBACK"), s("tb\n")]),
    );
    assert_py_eq(
        &Reply::Unserializable("x".into()).to_value(),
        &t(vec![s("#UNSERIALIZABLE"), s("x")]),
    );
    // §3.7: ('#PROXY', (('__next__','send','throw','close'), Token(...)))
    let proxy = Reply::Proxy {
        exposed: ["__next__", "send", "throw", "close"]
            .map(String::from)
            .to_vec(),
        token: Token::new("Iterator", tcp(), "7f1c82a1c1d0"),
    };
    let expected = t(vec![
        s("#PROXY"),
        t(vec![
            t(vec![s("__next__"), s("send"), s("throw"), s("close")]),
            iterator_token_value(),
        ]),
    ]);
    assert_py_eq(&proxy.to_value(), &expected);
    assert_eq!(Reply::from_value(&expected).unwrap(), proxy);
}

#[test]
fn every_reply_kind_round_trips() {
    let replies = [
        Reply::Return(Value::list(vec![Value::Int(1), s("a")])),
        Reply::Return(Value::None),
        Reply::error(&PyErr::index_error("list index out of range")),
        Reply::Error(Value::object(Object::reduce(
            Value::global("threading", "BrokenBarrierError"),
            vec![],
        ))),
        Reply::Traceback("Traceback (most recent call last):\nKeyError: 'a'\n".into()),
        Reply::Unserializable("boom".into()),
        Reply::Proxy {
            exposed: vec![],
            token: Token::new("list", PyAddress::Path("/tmp/m".into()), "1"),
        },
        Reply::Proxy {
            exposed: vec!["get".into()],
            token: Token::new("Queue", PyAddress::Abstract(b"\0mgr".to_vec()), "2"),
        },
    ];
    for r in replies {
        let v = r.to_value();
        let back = Reply::from_value(&v).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.kind(), r.kind());
        assert_py_eq(&back.to_value(), &v);
    }
}

#[test]
fn reply_helpers() {
    let e = Reply::error(&PyErr::value_error("x is not in list"));
    let pe = e.as_py_err().unwrap();
    assert_eq!(pe.ty, ExcType::ValueError);
    assert_eq!(pe.message(), Some("x is not in list"));
    assert!(Reply::none().as_py_err().is_none());
    assert_eq!(
        Reply::Traceback("t\n".into())
            .remote_error_text()
            .as_deref(),
        Some("t\n")
    );
    assert_eq!(
        Reply::Unserializable("t".into())
            .remote_error_text()
            .as_deref(),
        Some("Unserializable message: t\n")
    );
    assert_eq!(Reply::none().remote_error_text(), None);
    // A list reply (xmlrpclib) is accepted.
    assert_eq!(
        Reply::from_value(&Value::list(vec![s("#RETURN"), Value::None])).unwrap(),
        Reply::none()
    );
}

#[test]
fn malformed_replies() {
    let err = |v: Value| Reply::from_value(&v).unwrap_err();
    assert!(matches!(err(Value::None), MessageError::ReplyShape { .. }));
    assert!(matches!(
        err(t(vec![s("#RETURN")])),
        MessageError::ReplyShape { .. }
    ));
    assert!(matches!(
        err(t(vec![s("#RETURN"), Value::None, Value::None])),
        MessageError::ReplyShape { .. }
    ));
    let unknown = err(t(vec![s("#FOO"), Value::None]));
    assert_eq!(
        unknown,
        MessageError::UnknownReplyKind {
            kind: "'#FOO'".into()
        }
    );
    assert_eq!(unknown.to_string(), "Unrecognized message type '#FOO'");
    assert_eq!(
        unknown.to_py_err().to_string(),
        "ValueError: Unrecognized message type '#FOO'"
    );
    assert_eq!(
        err(t(vec![Value::Int(5), Value::None])).to_string(),
        "Unrecognized message type 5"
    );
    assert!(matches!(
        err(t(vec![s("#TRACEBACK"), Value::Int(1)])),
        MessageError::WrongType {
            field: "a #TRACEBACK payload",
            ..
        }
    ));
    assert!(matches!(
        err(t(vec![s("#UNSERIALIZABLE"), Value::None])),
        MessageError::WrongType {
            field: "an #UNSERIALIZABLE payload",
            ..
        }
    ));
    assert!(matches!(
        err(t(vec![s("#PROXY"), Value::None])),
        MessageError::WrongType { .. }
    ));
    assert!(matches!(
        err(t(vec![s("#PROXY"), t(vec![t(vec![])])])),
        MessageError::WrongType { .. }
    ));
    assert!(matches!(
        err(t(vec![
            s("#PROXY"),
            t(vec![t(vec![Value::Int(1)]), iterator_token_value()])
        ])),
        MessageError::WrongType {
            field: "#PROXY exposed",
            ..
        }
    ));
    assert!(matches!(
        err(t(vec![s("#PROXY"), t(vec![t(vec![]), s("not a token")])])),
        MessageError::BadToken { .. }
    ));
}

// ------------------------------------------------------------------ tokens

#[test]
fn token_wire_shape() {
    let v = Token::new("Iterator", tcp(), "7f1c82a1c1d0").to_value();
    assert_py_eq(&v, &iterator_token_value());
    let Value::Object(o) = &v else { panic!() };
    let o = o.read();
    assert_eq!(o.construct, Construct::NewObj);
    assert!(o.global().unwrap().is("multiprocessing.managers", "Token"));
    assert!(matches!(&o.args, Value::Tuple(a) if a.is_empty()));
    assert!(o.kwargs.is_none());
    assert!(matches!(&o.state, Some(Value::Tuple(st)) if st.len() == 3));
}

#[test]
fn token_addresses_round_trip_and_display() {
    let cases = [
        (
            tcp(),
            t(vec![s("127.0.0.1"), Value::Int(50011)]),
            "('127.0.0.1', 50011)",
        ),
        (
            PyAddress::tcp("", 0),
            t(vec![s(""), Value::Int(0)]),
            "('', 0)",
        ),
        (
            PyAddress::Path("/tmp/pymp-x/listener-y".into()),
            s("/tmp/pymp-x/listener-y"),
            "'/tmp/pymp-x/listener-y'",
        ),
        (
            PyAddress::Path("\0str-abstract".into()),
            s("\0str-abstract"),
            "'\\x00str-abstract'",
        ),
        (
            PyAddress::Abstract(b"\0mgr-x".to_vec()),
            Value::bytes(b"\0mgr-x"),
            "b'\\x00mgr-x'",
        ),
    ];
    for (addr, value, shown) in cases {
        assert_py_eq(&addr.to_value(), &value);
        assert_eq!(PyAddress::from_value(&value).unwrap(), addr);
        let tok = Token::new("list", addr.clone(), "7f");
        assert_eq!(Token::from_value(&tok.to_value()).unwrap(), tok);
        assert_eq!(
            tok.to_string(),
            format!("Token(typeid='list', address={shown}, id='7f')")
        );
    }
}

#[test]
fn protocol_0_token_form_is_accepted() {
    // copyreg._reconstructor(Token, object, None) + BUILD state.
    let mut o = Object::reduce(
        Value::global("copyreg", "_reconstructor"),
        vec![
            Value::global("multiprocessing.managers", "Token"),
            Value::global("builtins", "object"),
            Value::None,
        ],
    );
    o.state = Some(t(vec![
        s("dict"),
        t(vec![s("localhost"), Value::Int(7)]),
        s("ab"),
    ]));
    let tok = Token::from_value(&Value::object(o)).unwrap();
    assert_eq!(
        tok,
        Token::new("dict", PyAddress::tcp("localhost", 7), "ab")
    );
}

#[test]
fn malformed_tokens() {
    let with_state = |state: Option<Value>| {
        Value::object(Object::new_obj(
            Global::new("multiprocessing.managers", "Token"),
            vec![],
            state,
        ))
    };
    let bad_token = |v: Value| matches!(Token::from_value(&v), Err(MessageError::BadToken { .. }));
    assert!(bad_token(s("Token")));
    assert!(bad_token(Value::object(Object::new_obj(
        Global::new("mymod", "Token"),
        vec![],
        None
    ))));
    assert!(bad_token(Value::object(Object::reduce(
        Value::global("multiprocessing.managers", "Token"),
        vec![]
    ))));
    assert!(bad_token(with_state(None)));
    assert!(bad_token(with_state(Some(t(vec![s("list"), s("/p")])))));
    assert!(bad_token(with_state(Some(d(vec![("typeid", s("list"))])))));
    assert!(matches!(
        Token::from_value(&with_state(Some(t(vec![Value::Int(1), s("/p"), s("x")])))),
        Err(MessageError::WrongType {
            field: "token typeid",
            ..
        })
    ));
    assert!(matches!(
        Token::from_value(&with_state(Some(t(vec![s("l"), s("/p"), Value::None])))),
        Err(MessageError::WrongType {
            field: "token id",
            ..
        })
    ));
    let bad_addr = |a: Value| {
        matches!(
            Token::from_value(&with_state(Some(t(vec![s("list"), a, s("x")])))),
            Err(MessageError::BadAddress { .. })
        )
    };
    assert!(bad_addr(t(vec![s("h"), Value::Int(70000)])));
    assert!(bad_addr(t(vec![s("h"), Value::Int(-1)])));
    assert!(bad_addr(t(vec![s("h"), s("80")])));
    assert!(bad_addr(t(vec![Value::None, Value::Int(80)])));
    assert!(bad_addr(t(vec![
        s("h"),
        Value::Int(80),
        Value::Int(0),
        Value::Int(0)
    ])));
    assert!(bad_addr(Value::bytes(b"plain-bytes")));
    assert!(bad_addr(Value::bytes(b"")));
    assert!(bad_addr(Value::list(vec![s("h"), Value::Int(80)])));
    assert!(bad_addr(Value::Int(80)));
}

#[test]
fn lenient_address_equality() {
    let a = |h: &str, p: u16| PyAddress::tcp(h, p);
    let yes = [
        (a("127.0.0.1", 5), a("127.0.0.1", 5)),
        (a("localhost", 5), a("127.0.0.1", 5)),
        (a("LOCALHOST", 5), a("127.0.1.1", 5)),
        (a("::1", 5), a("localhost", 5)),
        (a("0.0.0.0", 5), a("127.0.0.1", 5)),
        (a("0.0.0.0", 5), a("192.168.1.7", 5)),
        (a("", 5), a("myhost", 5)),
        (a("myhost", 5), a("MyHost", 5)),
    ];
    for (x, y) in &yes {
        assert!(x.same_endpoint(y), "{x} ~ {y}");
        assert!(y.same_endpoint(x), "{y} ~ {x}");
    }
    let no = [
        (a("127.0.0.1", 5), a("127.0.0.1", 6)),
        (a("0.0.0.0", 5), a("127.0.0.1", 6)),
        (a("127.0.0.1", 5), a("192.168.1.7", 5)),
        (a("hosta", 5), a("hostb", 5)),
        (a("127.0.0.1", 5), PyAddress::Path("127.0.0.1".into())),
        (PyAddress::Path("/a".into()), PyAddress::Path("/b".into())),
        (
            PyAddress::Path("/a".into()),
            PyAddress::Abstract(b"/a".to_vec()),
        ),
        (
            PyAddress::Abstract(b"\0a".to_vec()),
            PyAddress::Abstract(b"\0b".to_vec()),
        ),
    ];
    for (x, y) in &no {
        assert!(!x.same_endpoint(y), "{x} !~ {y}");
        assert!(!y.same_endpoint(x), "{y} !~ {x}");
    }
    assert!(PyAddress::Path("\0a".into()).same_endpoint(&PyAddress::Abstract(b"\0a".to_vec())));
}
