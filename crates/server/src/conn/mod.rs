//! One connection, mini-redis style: authentication, then the first request
//! (a one-shot operation, or `accept_connection`), then the
//! served-connection loop (§3.2–§3.5) — read a frame, decode the request
//! ([`codec`]), apply it to the registry, write the reply frame.
//!
//! The loop knows nothing about object types: whether a call may wait for
//! another client, and what to undo when its reply cannot be delivered, is
//! the object's to say ([`Referent::may_block`],
//! [`Referent::reply_lost`](mpmanager_objects::Referent::reply_lost)).
//!
//! [`Referent::may_block`]: mpmanager_objects::Referent::may_block

mod codec;
mod one_shot;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use mpmanager_connection::{BusyPoll, Connection, ConnectionError, Stream};
use mpmanager_objects::{CallContext, CallError, Kwargs, Reply as ObjReply};
use mpmanager_pickle::{PyErr, Value};
use mpmanager_protocol::traceback;
use mpmanager_protocol::{PublicOp, Reply, Request, Token};

use self::codec::{unserializable_traceback, Codec, DecodeFailure, Unencodable};
use crate::admission::{self, PendingGuard};
use crate::budget::{self, Intake};
use crate::server::Shared;

/// Buffers above this capacity are given back after use.
const KEEP_BUFFER: usize = 1 << 20;

/// Most replies held back for one write.
const MAX_HELD_REPLIES: usize = 64;
/// Replies larger than this are written at once (and flush the held ones).
const MAX_HELD_REPLY: usize = 16 * 1024;

/// Per-connection state: the socket, reusable buffers, the codec and the
/// replies held back for a pipelining client.
struct Conn<'a> {
    shared: &'a Arc<Shared>,
    id: u64,
    /// The peer's address, for the log.
    peer: String,
    conn: Connection,
    recv: Vec<u8>,
    send: Vec<u8>,
    codec: Codec,
    /// Encoded replies held back while a pipelining client's next requests
    /// are already buffered (see [`Conn::reply_served`]), and their spans.
    held: Vec<u8>,
    held_spans: Vec<std::ops::Range<usize>>,
    /// The last reply sent that carried something the call took for the
    /// client, until the client shows it read it (see [`Conn::deliver`]).
    unacked: Option<Undo>,
}

/// What reading one request gave.
enum Incoming {
    /// A decoded request.
    Request(Request),
    /// A request that does not decode: answer with this `#TRACEBACK`.
    Undecodable(String),
    /// The peer is gone or the stream is unusable: close. `reset` when the
    /// peer closed with data of ours unread (`ECONNRESET`): it died before
    /// reading our last reply.
    Close { reset: bool },
}

/// What applying one request of a served connection gave.
enum Applied {
    /// A reply to send; `undo` is set when the reply carries something the
    /// call took for the client (see [`Conn::deliver`]).
    Reply { reply: Reply, undo: Option<Undo> },
    /// The client is gone: close without replying.
    Close,
}

/// What a reply that cannot be delivered must give back.
struct Undo {
    ident: String,
    method: String,
    value: Value,
}

/// True if the peer of socket `fd` has closed its side or the socket has
/// failed: a zero-timeout `poll` for `POLLRDHUP`.
fn hung_up(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

fn peer(stream: &Stream) -> String {
    match stream.peer_tcp_addr() {
        Some(a) => a.to_string(),
        None => "unix".to_string(),
    }
}

/// Serves one accepted connection until it ends.
pub(crate) fn handle(shared: &Arc<Shared>, id: u64, stream: Stream, pending: PendingGuard) {
    let peer = peer(&stream);
    let span = tracing::debug_span!("conn", id, %peer);
    let _e = span.enter();
    let Some((mut conn, _slot)) = admission::admit(shared, stream, pending, &peer) else {
        return;
    };
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
    let mut c = Conn {
        shared,
        id,
        peer,
        conn,
        recv: Vec::new(),
        send: Vec::new(),
        codec: Codec::new(shared.serializer, shared.max_frame, shared.decode_factor),
        held: Vec::new(),
        held_spans: Vec::new(),
        unacked: None,
    };
    c.first_request();
}

impl Conn<'_> {
    /// Reads and decodes one request; `function` names CPython's server
    /// function reading it, for tracebacks.
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
                return Incoming::Undecodable(traceback::for_line(function, exception));
            }
            Err(ConnectionError::Closed) => {
                tracing::trace!("peer closed the connection");
                return Incoming::Close { reset: false };
            }
            // ECONNRESET: the peer closed with data of ours unread. EPIPE on
            // a read: a TCP peer that had closed (FIN) answered our data
            // with a reset, so it never read it either.
            Err(ConnectionError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                tracing::debug!("peer reset the connection");
                return Incoming::Close { reset: true };
            }
            Err(e) => {
                if self.shared.stopping() {
                    tracing::trace!("connection ended at shutdown: {e}");
                } else {
                    tracing::info!("closing connection: {e}");
                }
                return Incoming::Close { reset: false };
            }
        };
        let r = self.codec.decode(&self.recv, function, &mut grant);
        if self.recv.capacity() > KEEP_BUFFER {
            self.recv = Vec::new();
        }
        drop(grant);
        match r {
            Ok(req) => Incoming::Request(req),
            // An empty payload is EOFError for CPython's served loop, which
            // then ends the connection silently.
            Err(DecodeFailure::Empty(_)) if function == "serve_client" => {
                Incoming::Close { reset: false }
            }
            Err(failure) => Incoming::Undecodable(failure.into_traceback()),
        }
    }

    /// Encodes `reply` into the send buffer.
    fn encode(&mut self, reply: &Reply) -> Result<(), ConnectionError> {
        self.codec
            .encode(reply, &mut self.send)
            .map_err(|Unencodable| ConnectionError::Poisoned)
    }

    /// Encodes and sends a reply at once.
    fn reply(&mut self, reply: &Reply) -> Result<(), ConnectionError> {
        self.encode(reply)?;
        self.send_encoded()
    }

    /// A reply of a served connection. While the client has already sent
    /// its next request (it pipelines: the bytes are in our read buffer),
    /// the reply is held back and written together with the following
    /// ones: one `write` (and one wakeup of the client) per batch instead
    /// of one per reply. Replies stay in order; nothing is held across a
    /// read that would block, nor across a call that may wait
    /// ([`Referent::may_block`](mpmanager_objects::Referent::may_block)).
    fn reply_served(&mut self, reply: &Reply) -> Result<(), ConnectionError> {
        self.encode(reply)?;
        // The next read will not block: hold this reply back.
        let hold = self.conn.buffered_len() > 0
            && self.send.len() <= MAX_HELD_REPLY
            && self.held_spans.len() < MAX_HELD_REPLIES;
        if !hold && self.held_spans.is_empty() {
            return self.send_encoded();
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

    /// Sends the encoded reply in the send buffer.
    fn send_encoded(&mut self) -> Result<(), ConnectionError> {
        let r = self.conn.send(&self.send);
        if self.send.capacity() > KEEP_BUFFER {
            self.send = Vec::new();
        }
        if let Err(e) = &r {
            tracing::debug!("cannot send reply: {e}");
        }
        r
    }

    /// True if the peer has closed its side (a killed client): a reply sent
    /// now would be lost.
    fn peer_gone(&self) -> bool {
        hung_up(self.conn.stream().as_raw_fd())
    }

    /// The first request of a connection: a public operation.
    fn first_request(&mut self) {
        let req = match self.read("_handle_request") {
            Incoming::Close { .. } => return,
            Incoming::Undecodable(tb) => {
                let _ = self.reply(&Reply::Traceback(tb));
                return;
            }
            Incoming::Request(req) => req,
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
            PublicOp::AcceptConnection => {
                match one_shot::bind("accept_connection", &["name"], args, &kw) {
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
                }
            }
            PublicOp::Shutdown => match one_shot::bind("shutdown", &[], args, &kw) {
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
            _ => match one_shot::run(&self.shared.registry, op, args, &kw) {
                Ok(v) => Reply::Return(v),
                Err(tb) => Reply::Traceback(tb),
            },
        };
        let _ = self.reply(&reply);
    }

    /// The served-connection loop (§3.5): method calls until EOF, the
    /// client's death, or shutdown. When it ends, what the connection held
    /// (an `RLock`, a `Condition`'s lock; with `--release-on-disconnect` a
    /// `Lock` or permits) is released.
    fn serve(&mut self, name: &str) {
        tracing::debug!(client = name, "serving method calls");
        let fd = self.conn.stream().as_raw_fd();
        // The context lives (and is dropped) within this function, while
        // the socket is open, so the probe never sees a reused descriptor.
        let cx = CallContext::with_hangup_probe(self.id, move || hung_up(fd));
        let watched = self
            .shared
            .watcher
            .as_ref()
            .map(|w| w.watch(self.id, fd, cx.cancel_handle()));
        self.serve_calls(&cx);
        let _ = self.flush_held();
        drop(watched);
        // From now on nobody probes this socket (a barrier may still hold a
        // handle to this context): the connection counts as gone.
        cx.cancel_handle().cancel();
        for what in self
            .shared
            .registry
            .connection_closed(&cx, self.shared.release_on_disconnect)
        {
            tracing::warn!(peer = %self.peer, client = name, "connection closed: {what}");
        }
    }

    fn serve_calls(&mut self, cx: &CallContext) {
        // Nothing is held across a read that may block: `reply_served`
        // flushes whenever the read buffer is empty.
        while !self.shared.stopping() {
            let incoming = self.read("serve_client");
            if let Incoming::Close { reset } = incoming {
                // The client died with our last reply unread: give back
                // what that reply carried.
                match self.unacked.take() {
                    Some(undo) if reset => self.undo(cx, undo),
                    _ => {}
                }
                return;
            }
            // Another request: the client read the reply before it.
            self.unacked = None;
            let applied = match incoming {
                Incoming::Request(req) => self.apply(cx, req),
                Incoming::Undecodable(tb) => Applied::Reply {
                    reply: Reply::Traceback(tb),
                    undo: None,
                },
                Incoming::Close { .. } => unreachable!("handled above"),
            };
            match applied {
                Applied::Close => return,
                Applied::Reply { reply, undo } => {
                    if !self.deliver(cx, &reply, undo) {
                        return;
                    }
                }
            }
        }
    }

    /// Sends the reply of a call; false if the connection cannot go on.
    ///
    /// A reply carrying something the call took for the client (`undo`: a
    /// queue item, a lock) is not sent to a peer that has hung up, and
    /// counts as delivered only once the client shows it read it: by
    /// sending its next request, or by closing cleanly. If it dies with the
    /// reply unread (the kernel reports `ECONNRESET`), the object gets back
    /// what the reply carried.
    fn deliver(&mut self, cx: &CallContext, reply: &Reply, undo: Option<Undo>) -> bool {
        let Some(undo) = undo else {
            return self.reply_served(reply).is_ok();
        };
        // One zero-timeout poll: whether the peer hung up while the call ran
        // (over TCP a reply sent after the peer's FIN would vanish without
        // an error).
        if !self.peer_gone() && self.reply_served(reply).is_ok() {
            self.unacked = Some(undo);
            return true;
        }
        self.undo(cx, undo);
        false
    }

    /// Gives back what an undelivered reply carried, and says so.
    fn undo(&self, cx: &CallContext, undo: Undo) {
        let registry = &self.shared.registry;
        if let Some(what) = registry.reply_lost(cx, &undo.ident, &undo.method, &undo.value) {
            tracing::warn!(peer = %self.peer, "client gone before reading its reply: {what}");
        }
    }

    /// Applies one request of a served connection.
    fn apply(&mut self, cx: &CallContext, req: Request) -> Applied {
        let Some(ident) = req.ident.as_deref() else {
            return Applied::Reply {
                reply: Reply::Traceback(traceback::for_error(
                    &PyErr::key_error(Value::None),
                    "serve_client",
                )),
                undo: None,
            };
        };
        let registry = &self.shared.registry;
        let may_block = registry.may_block(ident, &req.method);
        if may_block && !self.held_spans.is_empty() && self.flush_held().is_err() {
            return Applied::Close;
        }
        let kw = Kwargs::from_pairs(req.kwargs);
        let result = registry.call(cx, ident, &req.method, &req.args, &kw);
        let reply = match result {
            Ok(ObjReply::Return(v)) => match self.view_class(ident, &req.method) {
                // CPython's dict.keys()/values()/items() return views, which
                // pickle as lists but which xmlrpclib cannot marshal.
                Some(view) => Reply::Unserializable(unserializable_traceback(format!(
                    "TypeError: cannot marshal <class '{view}'> objects"
                ))),
                None => {
                    let undo = may_block.then(|| Undo {
                        ident: ident.to_string(),
                        method: req.method.clone(),
                        value: v.clone(),
                    });
                    return Applied::Reply {
                        reply: Reply::Return(v),
                        undo,
                    };
                }
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
            Err(CallError::Cancelled) => {
                let class = registry.get(ident).map(|o| o.class_name().to_string());
                let typeid = registry.typeid_of(ident);
                tracing::warn!(
                    peer = %self.peer,
                    "cancelled {}.{} on {} {ident}: its client hung up while it waited; \
                     nothing was taken",
                    class.as_deref().unwrap_or("?"),
                    req.method,
                    typeid.as_deref().unwrap_or("?"),
                );
                return Applied::Close;
            }
            Err(other) => Reply::Traceback(traceback::for_error(
                &PyErr::type_error(other.to_string()),
                "serve_client",
            )),
        };
        Applied::Reply { reply, undo: None }
    }

    /// With the `xmlrpclib` serializer, the class of the dict view that
    /// CPython's `dict.keys()`/`values()`/`items()` would return for this
    /// call (the value model returns them as plain lists).
    fn view_class(&self, ident: &str, method: &str) -> Option<&'static str> {
        if !self.codec.is_xmlrpc() {
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
}
