//! One connection: authentication, the first request (a one-shot operation
//! or `accept_connection`), and the served-connection loop (§3.2–§3.5).

use std::sync::Arc;

use mpmanager_connection::{auth, BusyPoll, Connection, ConnectionError, Stream};
use mpmanager_objects::{args, CallContext, CallError, Kwargs, Reply as ObjReply};
use mpmanager_pickle::{
    decode_with_budget, encode_into, DecodeErrorKind, DecodeOptions, EncodeError, EncodeOptions,
    PyErr, Value,
};
use mpmanager_protocol::traceback::{self, format_chain, Frame, TbEntry};
use mpmanager_protocol::{PublicOp, Reply, Request, Serializer, Token};

use crate::budget::{self, Grant, Intake};
use crate::server::Shared;

/// Buffers above this capacity are given back after use.
const KEEP_BUFFER: usize = 1 << 20;

/// Per-connection state: reusable buffers and the reply protocol.
struct Conn<'a> {
    shared: &'a Arc<Shared>,
    id: u64,
    conn: Connection,
    recv: Vec<u8>,
    send: Vec<u8>,
    /// Pickle protocol of the last request (replies use the same).
    protocol: u8,
    decode: DecodeOptions,
    /// Limits of the `xmlrpclib` codec.
    xml_decode: mpmanager_xmlrpc::DecodeOptions,
    /// Encoded replies held back while a pipelining client's next requests
    /// are already buffered (see [`Conn::serve`]), and their spans.
    held: Vec<u8>,
    held_spans: Vec<std::ops::Range<usize>>,
}

/// Most replies held back for one write.
const MAX_HELD_REPLIES: usize = 64;
/// Replies larger than this are written at once (and flush the held ones).
const MAX_HELD_REPLY: usize = 16 * 1024;

/// Methods of the built-in types that can wait for another client. The
/// replies held back for a pipelining client are written before one of
/// these runs, so no reply waits behind a blocked call.
const MAY_BLOCK: &[&str] = &[
    "acquire",
    "wait",
    "wait_for",
    "get",
    "put",
    "join",
    "__enter__",
];

/// What reading one request gave.
enum Incoming {
    /// A decoded request, or the `#TRACEBACK` to answer instead.
    Request(Result<Request, String>),
    /// The peer is gone or the stream is unusable: close.
    Close,
}

fn peer(stream: &Stream) -> String {
    match stream.peer_tcp_addr() {
        Some(a) => a.to_string(),
        None => "unix".to_string(),
    }
}

/// Serves one accepted connection until it ends.
pub(crate) fn handle(shared: &Arc<Shared>, id: u64, stream: Stream) {
    let peer = peer(&stream);
    let span = tracing::debug_span!("conn", id, %peer);
    let _e = span.enter();
    let mut conn = Connection::new(stream);
    if let Err(e) =
        auth::server_handshake_timeout(&mut conn, &shared.authkey, Some(shared.handshake_timeout))
    {
        if e.is_auth_failure() {
            tracing::warn!(%peer, "authentication failed: {e}");
        } else {
            tracing::debug!(%peer, "handshake did not complete: {e}");
        }
        return;
    }
    // The client's last handshake message (`#WELCOME#`) and its first
    // request are two small writes in a row on a socket without
    // TCP_NODELAY: Nagle holds the request until our ACK of the welcome,
    // which delayed ACK postpones by ~40 ms (CPython's server has that
    // delay on every one-shot operation). TCP_QUICKACK sends the pending
    // ACK now; the connection repeats it whenever it waits for the rest of
    // a frame (CPython writes frames over 16 KiB as header, then payload).
    conn.set_quickack(true);
    let _track = shared.track(id, conn.stream());
    if let Some((max, budget)) = &shared.busy_poll {
        conn.set_busy_poll(Some(BusyPoll::new(*max, budget.clone())));
    }
    if shared.stopping() {
        return;
    }
    let mut decode = DecodeOptions::default();
    decode.max_input = shared.max_frame;
    decode.max_alloc_factor = shared.decode_factor;
    let mut xml_decode = mpmanager_xmlrpc::DecodeOptions::default();
    xml_decode.max_input = shared.max_frame;
    let mut c = Conn {
        shared,
        id,
        conn,
        recv: Vec::new(),
        send: Vec::new(),
        held: Vec::new(),
        held_spans: Vec::new(),
        protocol: 4,
        decode,
        xml_decode,
    };
    c.first_request();
}

/// The `#TRACEBACK` text for a request pickle that does not load.
fn unpickling_traceback(e: &mpmanager_pickle::DecodeError, function: &str) -> String {
    let exception = match e.kind {
        DecodeErrorKind::EmptyInput => "EOFError: Ran out of input".to_string(),
        DecodeErrorKind::AllocLimit { .. } | DecodeErrorKind::MemoryRefused { .. } => {
            budget::memory_exception_line(e)
        }
        _ => format!("_pickle.UnpicklingError: {e}"),
    };
    format_chain(&[TbEntry {
        frames: vec![Frame::mpmanager(function)],
        exception,
    }])
}

/// The `#TRACEBACK` text for an `xmlrpclib` payload that does not load.
fn xml_loading_traceback(e: &mpmanager_xmlrpc::DecodeError, function: &str) -> String {
    format_chain(&[TbEntry {
        frames: vec![Frame::mpmanager(function), Frame::mpmanager("_xml_loads")],
        exception: e.exception_line(),
    }])
}

/// The `#UNSERIALIZABLE` text for a reply that cannot be sent.
fn unserializable_traceback(exception: String) -> String {
    format_chain(&[TbEntry {
        frames: vec![Frame::mpmanager("serve_client")],
        exception,
    }])
}

/// A one-shot operation's failure: always a `#TRACEBACK`.
fn one_shot_err(e: CallError, op: &str) -> String {
    match e {
        CallError::Traceback(t) => t,
        CallError::Python(e) => traceback::for_error(&e, op),
        other => traceback::for_error(&PyErr::type_error(other.to_string()), op),
    }
}

impl Conn<'_> {
    /// Reads and decodes one request.
    fn read(&mut self, function: &str) -> Incoming {
        let shared = self.shared;
        let mut grant = match budget::receive(
            &shared.request_memory,
            &mut self.conn,
            &mut self.recv,
            shared.max_frame,
        ) {
            Ok(Intake::Frame(grant)) => grant,
            Ok(Intake::Refused(why)) => {
                let exception = why.exception_line();
                tracing::info!("request refused: {exception}");
                let tb = format_chain(&[TbEntry {
                    frames: vec![Frame::mpmanager(function)],
                    exception,
                }]);
                return Incoming::Request(Err(tb));
            }
            Err(ConnectionError::Closed) => {
                tracing::trace!("peer closed the connection");
                return Incoming::Close;
            }
            Err(e) => {
                if self.shared.stopping() {
                    tracing::trace!("connection ended at shutdown: {e}");
                } else {
                    tracing::info!("closing connection: {e}");
                }
                return Incoming::Close;
            }
        };
        let r = match self.shared.serializer {
            Serializer::Pickle => self.decode_pickle(function, &mut grant),
            Serializer::XmlRpc => match mpmanager_xmlrpc::decode_with(&self.recv, &self.xml_decode)
            {
                // An empty payload is an ExpatError ("no element found"),
                // not EOFError, for the xmlrpclib serializer: a #TRACEBACK.
                Err(e) => {
                    tracing::debug!("undecodable request: {e}");
                    Err((false, xml_loading_traceback(&e, function)))
                }
                Ok(v) => Request::from_value(&v).map_err(|e| {
                    tracing::debug!("malformed request: {e}");
                    (false, traceback::bad_request(&e))
                }),
            },
            _ => Err((
                false,
                traceback::for_error(&PyErr::value_error("unsupported serializer"), function),
            )),
        };
        if self.recv.capacity() > KEEP_BUFFER {
            self.recv = Vec::new();
        }
        drop(grant);
        match r {
            Ok(req) => Incoming::Request(Ok(req)),
            // An empty payload is EOFError for CPython's served loop, which
            // then ends the connection silently.
            Err((true, _)) if function == "serve_client" => Incoming::Close,
            Err((_, tb)) => Incoming::Request(Err(tb)),
        }
    }

    /// Decodes the pickled request in `self.recv`; `Err((is_eof, traceback))`.
    fn decode_pickle(
        &mut self,
        function: &str,
        grant: &mut Grant<'_>,
    ) -> Result<Request, (bool, String)> {
        self.protocol = match self.recv.as_slice() {
            [0x80, p, ..] if (2..=5).contains(p) => *p,
            _ => 4,
        };
        match decode_with_budget(&self.recv, &self.decode, grant) {
            Err(e) => {
                tracing::debug!("undecodable request: {e}");
                Err((
                    matches!(e.kind, DecodeErrorKind::EmptyInput),
                    unpickling_traceback(&e, function),
                ))
            }
            Ok(v) => Request::from_value(&v).map_err(|e| {
                tracing::debug!("malformed request: {e}");
                (false, traceback::bad_request(&e))
            }),
        }
    }

    /// Encodes and sends a reply; `#UNSERIALIZABLE` if it cannot be
    /// serialized.
    fn reply(&mut self, reply: &Reply) -> Result<(), ConnectionError> {
        if self.shared.serializer == Serializer::XmlRpc {
            return self.reply_xml(reply);
        }
        self.encode_reply(reply)?;
        self.reply_bytes()
    }

    /// A reply of a served connection. While the client has already sent
    /// its next request (it pipelines: the bytes are in our read buffer),
    /// the reply is held back and written together with the following
    /// ones: one `write` (and one wakeup of the client) per batch instead
    /// of one per reply. Replies stay in order; nothing is held across a
    /// read that would block, nor across a call that may wait (see
    /// [`MAY_BLOCK`]).
    fn reply_served(&mut self, reply: &Reply) -> Result<(), ConnectionError> {
        if self.shared.serializer == Serializer::XmlRpc {
            return self.reply_xml(reply);
        }
        self.encode_reply(reply)?;
        // The next read will not block: hold this reply back.
        let hold = self.conn.buffered_len() > 0
            && self.send.len() <= MAX_HELD_REPLY
            && self.held_spans.len() < MAX_HELD_REPLIES;
        if !hold && self.held_spans.is_empty() {
            return self.reply_bytes();
        }
        let start = self.held.len();
        self.held.extend_from_slice(&self.send);
        self.held_spans.push(start..self.held.len());
        if hold {
            Ok(())
        } else {
            self.flush_held()
        }
    }

    /// Writes the held replies (in one `write` where they fit).
    fn flush_held(&mut self) -> Result<(), ConnectionError> {
        if self.held_spans.is_empty() {
            return Ok(());
        }
        let frames: Vec<&[u8]> = self
            .held_spans
            .iter()
            .map(|r| &self.held[r.clone()])
            .collect();
        let r = self.conn.send_many(&frames);
        self.held.clear();
        self.held_spans.clear();
        if self.held.capacity() > KEEP_BUFFER {
            self.held = Vec::new();
        }
        if let Err(e) = &r {
            tracing::debug!("cannot send replies: {e}");
        }
        r
    }

    /// Sends the encoded reply in `self.send`.
    fn reply_bytes(&mut self) -> Result<(), ConnectionError> {
        let r = self.conn.send(&self.send);
        if self.send.capacity() > KEEP_BUFFER {
            self.send = Vec::new();
        }
        if let Err(e) = &r {
            tracing::debug!("cannot send reply: {e}");
        }
        r
    }

    /// Pickles `reply` into `self.send` (or `#UNSERIALIZABLE` if it cannot
    /// be pickled, as CPython's server sends).
    fn encode_reply(&mut self, reply: &Reply) -> Result<(), ConnectionError> {
        self.send.clear();
        let opts = EncodeOptions::protocol(self.protocol);
        if let Err(e) = encode_into(&reply.to_value(), &mut self.send, &opts) {
            tracing::debug!("reply cannot be pickled: {e}");
            let exception = match e {
                EncodeError::TooDeep { .. } => {
                    "RecursionError: maximum recursion depth exceeded while pickling an object"
                        .to_string()
                }
                e => format!("_pickle.PicklingError: {e}"),
            };
            let text = format_chain(&[TbEntry {
                frames: vec![Frame::mpmanager("serve_client")],
                exception,
            }]);
            self.send.clear();
            if let Err(e) = encode_into(
                &Reply::Unserializable(text).to_value(),
                &mut self.send,
                &opts,
            ) {
                tracing::warn!("cannot send even #UNSERIALIZABLE: {e}");
                return Err(ConnectionError::Poisoned);
            }
        }
        Ok(())
    }

    /// [`Conn::reply`] with the `xmlrpclib` serializer: what CPython's
    /// `xmlrpc.client.dumps` cannot write (an int over 32 bits, a `#PROXY`
    /// token, a `set` …) is answered with `#UNSERIALIZABLE` and the
    /// marshaller's exception, as CPython's server does.
    fn reply_xml(&mut self, reply: &Reply) -> Result<(), ConnectionError> {
        let v = reply.to_value();
        let bytes = match mpmanager_xmlrpc::encode(&v) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!("reply cannot be marshalled: {e}");
                let text = unserializable_traceback(e.exception_line());
                match mpmanager_xmlrpc::encode(&Reply::Unserializable(text).to_value()) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!("cannot send even #UNSERIALIZABLE: {e}");
                        return Err(ConnectionError::Poisoned);
                    }
                }
            }
        };
        let r = self.conn.send(&bytes);
        if let Err(e) = &r {
            tracing::debug!("cannot send reply: {e}");
        }
        r
    }

    /// The first request of a connection: a public operation.
    fn first_request(&mut self) {
        let req = match self.read("_handle_request") {
            Incoming::Close => return,
            Incoming::Request(Err(tb)) => {
                let _ = self.reply(&Reply::Traceback(tb));
                return;
            }
            Incoming::Request(Ok(req)) => req,
        };
        let Some(op) = req.public_op() else {
            tracing::debug!(op = %req.method, "unrecognized operation");
            let _ = self.reply(&Reply::Traceback(traceback::unrecognized_operation(
                &req.method,
            )));
            return;
        };
        tracing::trace!(%op, "one-shot request");
        let kw = Kwargs::from_pairs(req.kwargs);
        let args = &req.args;
        let reply = match op {
            PublicOp::AcceptConnection => match bind("accept_connection", &["name"], args, &kw) {
                Ok(a) => {
                    let name = a[0]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| mpmanager_pickle::repr(&a[0]));
                    if self.reply(&Reply::none()).is_ok() {
                        self.serve(&name);
                    }
                    return;
                }
                Err(tb) => Reply::Traceback(tb),
            },
            PublicOp::Shutdown => match bind("shutdown", &[], args, &kw) {
                Ok(_) => {
                    // CPython's handler replies itself, then the generic
                    // path replies again (§3.3).
                    if self.reply(&Reply::none()).is_ok() {
                        let _ = self.reply(&Reply::none());
                    }
                    tracing::info!("shutdown requested by a client");
                    self.shared.shutdown();
                    return;
                }
                Err(tb) => Reply::Traceback(tb),
            },
            _ => match self.one_shot(op, args, &kw) {
                Ok(v) => Reply::Return(v),
                Err(tb) => Reply::Traceback(tb),
            },
        };
        let _ = self.reply(&reply);
    }

    /// `dummy`, `create`, `incref`, `decref`, `get_methods`, `debug_info`,
    /// `number_of_objects`.
    fn one_shot(&self, op: PublicOp, args: &[Value], kw: &Kwargs) -> Result<Value, String> {
        let reg = &self.shared.registry;
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
                r.map(|()| Value::None).map_err(|e| one_shot_err(e, name))
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
                    .map_err(|e| one_shot_err(e, name))?;
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
                    .map_err(|e| one_shot_err(e, name))?;
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

    /// The served-connection loop (§3.5): method calls until EOF.
    fn serve(&mut self, name: &str) {
        tracing::debug!(client = name, "serving method calls");
        let cx = CallContext::new(self.id);
        // Nothing is held across a read that may block: `reply_served`
        // flushes whenever the read buffer is empty.
        while !self.shared.stopping() {
            let reply = match self.read("serve_client") {
                Incoming::Close => {
                    let _ = self.flush_held();
                    return;
                }
                Incoming::Request(Err(tb)) => Reply::Traceback(tb),
                Incoming::Request(Ok(req)) => {
                    if MAY_BLOCK.contains(&req.method.as_str()) && self.flush_held().is_err() {
                        return;
                    }
                    self.call(&cx, req)
                }
            };
            if self.reply_served(&reply).is_err() {
                return;
            }
        }
        let _ = self.flush_held();
    }

    /// With the `xmlrpclib` serializer, the class of the dict view that
    /// CPython's `dict.keys()`/`values()`/`items()` would return for this
    /// call (the value model returns them as plain lists).
    fn view_class(&self, ident: &str, method: &str) -> Option<&'static str> {
        if self.shared.serializer != Serializer::XmlRpc {
            return None;
        }
        let view = match method {
            "keys" => "dict_keys",
            "values" => "dict_values",
            "items" => "dict_items",
            _ => return None,
        };
        let referent = self.shared.registry.get(ident)?;
        (referent.class_name() == "dict").then_some(view)
    }

    /// One method call.
    fn call(&self, cx: &CallContext, req: Request) -> Reply {
        let Some(ident) = req.ident.as_deref() else {
            return Reply::Traceback(traceback::for_error(
                &PyErr::key_error(Value::None),
                "serve_client",
            ));
        };
        let kw = Kwargs::from_pairs(req.kwargs);
        match self
            .shared
            .registry
            .call(cx, ident, &req.method, &req.args, &kw)
        {
            Ok(ObjReply::Return(v)) => match self.view_class(ident, &req.method) {
                // CPython's dict.keys()/values()/items() return views, which
                // pickle as lists but which xmlrpclib cannot marshal.
                Some(view) => Reply::Unserializable(unserializable_traceback(format!(
                    "TypeError: cannot marshal <class '{view}'> objects"
                ))),
                None => Reply::Return(v),
            },
            Ok(ObjReply::Proxy {
                typeid,
                ident,
                exposed,
            }) => Reply::Proxy {
                exposed,
                token: Token::new(&typeid, self.shared.py_address.clone(), &ident),
            },
            Ok(ObjReply::Unserializable(e)) => {
                Reply::Unserializable(traceback::for_error(&e, "serve_client"))
            }
            Ok(other) => Reply::Traceback(traceback::for_error(
                &PyErr::type_error(format!("unsupported call result {other:?}")),
                "serve_client",
            )),
            Err(CallError::Python(e)) => Reply::error(&e),
            Err(CallError::Traceback(t)) => Reply::Traceback(t),
            Err(other) => Reply::Traceback(traceback::for_error(
                &PyErr::type_error(other.to_string()),
                "serve_client",
            )),
        }
    }
}

/// Binds a one-shot operation's arguments like `Server.<op>(self, c,
/// *params)`, so that errors read as CPython's (`Server.dummy() takes 2
/// positional arguments but 3 were given`). Returns the values of
/// `params`, or the `#TRACEBACK` text.
fn bind(op: &str, params: &[&str], a: &[Value], kw: &Kwargs) -> Result<Vec<Value>, String> {
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
