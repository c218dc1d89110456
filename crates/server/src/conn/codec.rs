//! The codec of a connection: requests decoded from frames and replies
//! encoded into them, with the serializer the server was started with
//! (CPython's `serializer='pickle'` or `'xmlrpclib'`).

use mpmanager_pickle::{
    decode_with_budget, encode_into, DecodeError, DecodeErrorKind, DecodeOptions, EncodeError,
    EncodeOptions,
};
use mpmanager_protocol::traceback::{self, format_chain, Frame, TbEntry};
use mpmanager_protocol::{Reply, Request, Serializer};

use crate::budget::{self, Grant};

/// Why a request could not be read; each carries the `#TRACEBACK` text
/// CPython's server would send.
#[derive(Debug)]
pub(crate) enum DecodeFailure {
    /// An empty payload: `EOFError` for CPython's loaders, which its served
    /// loop takes as the end of the connection.
    Empty(String),
    /// A payload that does not load, or loads to something that is not a
    /// request.
    Invalid(String),
}

impl DecodeFailure {
    /// The `#TRACEBACK` text to send.
    pub(crate) fn into_traceback(self) -> String {
        match self {
            DecodeFailure::Empty(t) | DecodeFailure::Invalid(t) => t,
        }
    }
}

/// A reply that cannot be encoded even as `#UNSERIALIZABLE`: the
/// connection cannot go on.
#[derive(Debug)]
pub(crate) struct Unencodable;

/// A connection's serializer and its state.
pub(crate) enum Codec {
    /// Pickle, replying with the protocol of the last request.
    Pickle {
        /// Pickle protocol of the last request (replies use the same).
        protocol: u8,
        options: DecodeOptions,
    },
    /// CPython's `xmlrpclib` serializer.
    XmlRpc {
        options: mpmanager_xmlrpc::DecodeOptions,
    },
}

impl Codec {
    /// The codec for `serializer`, refusing inputs over `max_input` bytes;
    /// decoding a pickle may allocate `decode_factor` times its input (plus
    /// a constant).
    pub(crate) fn new(serializer: Serializer, max_input: usize, decode_factor: usize) -> Codec {
        match serializer {
            Serializer::XmlRpc => {
                let mut options = mpmanager_xmlrpc::DecodeOptions::default();
                options.max_input = max_input;
                Codec::XmlRpc { options }
            }
            _ => {
                let mut options = DecodeOptions::default();
                options.max_input = max_input;
                options.max_alloc_factor = decode_factor;
                Codec::Pickle {
                    protocol: 4,
                    options,
                }
            }
        }
    }

    /// True for the `xmlrpclib` serializer.
    pub(crate) fn is_xmlrpc(&self) -> bool {
        matches!(self, Codec::XmlRpc { .. })
    }

    /// Decodes one request, drawing what decoding allocates from `grant`
    /// (the server's request-memory budget); `function` names CPython's
    /// server function that would have failed, for the traceback.
    pub(crate) fn decode(
        &mut self,
        bytes: &[u8],
        function: &str,
        grant: &mut Grant<'_>,
    ) -> Result<Request, DecodeFailure> {
        let value = match self {
            Codec::Pickle { protocol, options } => {
                *protocol = match bytes {
                    [0x80, p, ..] if (2..=5).contains(p) => *p,
                    _ => 4,
                };
                decode_with_budget(bytes, options, grant).map_err(|e| {
                    tracing::debug!("undecodable request: {e}");
                    let tb = unpickling_traceback(&e, function);
                    match e.kind {
                        DecodeErrorKind::EmptyInput => DecodeFailure::Empty(tb),
                        _ => DecodeFailure::Invalid(tb),
                    }
                })?
            }
            // An empty payload is an ExpatError ("no element found"), not
            // EOFError, for the xmlrpclib serializer: a #TRACEBACK.
            Codec::XmlRpc { options } => {
                mpmanager_xmlrpc::decode_with(bytes, options).map_err(|e| {
                    tracing::debug!("undecodable request: {e}");
                    DecodeFailure::Invalid(xml_loading_traceback(&e, function))
                })?
            }
        };
        Request::from_value(&value).map_err(|e| {
            tracing::debug!("malformed request: {e}");
            DecodeFailure::Invalid(traceback::bad_request(&e))
        })
    }

    /// Encodes `reply` into `out` (cleared first). What cannot be encoded
    /// is answered with `#UNSERIALIZABLE` and the encoder's exception, as
    /// CPython's server does: a pickling error, or what CPython's
    /// `xmlrpc.client.dumps` cannot write (an int over 32 bits, a `#PROXY`
    /// token, a `set` …).
    pub(crate) fn encode(&self, reply: &Reply, out: &mut Vec<u8>) -> Result<(), Unencodable> {
        out.clear();
        match self {
            Codec::Pickle { protocol, .. } => {
                let opts = EncodeOptions::protocol(*protocol);
                let Err(e) = encode_into(&reply.to_value(), out, &opts) else {
                    return Ok(());
                };
                tracing::debug!("reply cannot be pickled: {e}");
                let exception = match e {
                    EncodeError::TooDeep { .. } => {
                        "RecursionError: maximum recursion depth exceeded while pickling an object"
                            .to_string()
                    }
                    e => format!("_pickle.PicklingError: {e}"),
                };
                out.clear();
                encode_into(
                    &Reply::Unserializable(unserializable_traceback(exception)).to_value(),
                    out,
                    &opts,
                )
                .map_err(|e| {
                    tracing::warn!("cannot send even #UNSERIALIZABLE: {e}");
                    Unencodable
                })
            }
            Codec::XmlRpc { .. } => {
                let bytes = match mpmanager_xmlrpc::encode(&reply.to_value()) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!("reply cannot be marshalled: {e}");
                        let text = unserializable_traceback(e.exception_line());
                        mpmanager_xmlrpc::encode(&Reply::Unserializable(text).to_value()).map_err(
                            |e| {
                                tracing::warn!("cannot send even #UNSERIALIZABLE: {e}");
                                Unencodable
                            },
                        )?
                    }
                };
                out.extend_from_slice(&bytes);
                Ok(())
            }
        }
    }
}

/// The `#TRACEBACK` text for a request pickle that does not load.
fn unpickling_traceback(e: &DecodeError, function: &str) -> String {
    let exception = match e.kind {
        DecodeErrorKind::EmptyInput => "EOFError: Ran out of input".to_string(),
        DecodeErrorKind::AllocLimit { .. } | DecodeErrorKind::MemoryRefused { .. } => {
            budget::memory_exception_line(e)
        }
        _ => format!("_pickle.UnpicklingError: {e}"),
    };
    traceback::for_line(function, exception)
}

/// The `#TRACEBACK` text for an `xmlrpclib` payload that does not load.
fn xml_loading_traceback(e: &mpmanager_xmlrpc::DecodeError, function: &str) -> String {
    format_chain(&[TbEntry {
        frames: vec![Frame::mpmanager(function), Frame::mpmanager("_xml_loads")],
        exception: e.exception_line(),
    }])
}

/// The `#UNSERIALIZABLE` text for a reply that cannot be sent.
pub(crate) fn unserializable_traceback(exception: String) -> String {
    traceback::for_line("serve_client", exception)
}
