//! [`Pipeline`]: several requests on one connection before reading the
//! replies.

use std::sync::Arc;
use std::time::Instant;

use mpmanager_pickle::Value;
use mpmanager_protocol::Request;

use crate::client::{encode_request, reply_result, Client};
use crate::error::{ClientError, Result};
use crate::proxy::{Proxy, Response};

/// Requests in flight at most before the pipeline waits for a reply:
/// keeps both sides' socket buffers from filling up (which would
/// deadlock a server that answers before it reads on).
pub const PIPELINE_WINDOW: usize = 64;

/// A batch of method calls sent back to back on one served connection,
/// whose replies are then read in order.
///
/// A manager server (mpmanager's, and CPython's per-connection loop)
/// answers the requests of one connection in the order they arrive, so
/// the replies line up with the calls. The calls run one after the other
/// on the server, exactly as if made sequentially; only the round trips
/// overlap. At most [`PIPELINE_WINDOW`] requests are outstanding at once.
///
/// Every call's own result is returned, in order; a call that raises does
/// not stop the others. If the transport fails, the remaining calls fail
/// with that error (and the connection is dropped).
///
/// A call that blocks on the server (a queue `get`) holds up the ones
/// after it.
///
/// ```
/// use mpmanager_client::Manager;
/// use mpmanager_pickle::Value;
/// let m = Manager::start_in_background(b"key").unwrap();
/// let l = m.list::<i64>(&[]).unwrap();
/// let mut batch = m.batch();
/// for i in 0..10 {
///     batch.call(l.proxy(), "append", vec![Value::Int(i)], vec![]);
/// }
/// batch.call(l.proxy(), "__len__", vec![], vec![]);
/// batch.call(l.proxy(), "__getitem__", vec![Value::Int(99)], vec![]);
/// let results = batch.run().unwrap();
/// assert_eq!(results.len(), 12);
/// let len: usize = results.into_iter().nth(10).unwrap().unwrap().get().unwrap();
/// assert_eq!(len, 10);
/// ```
#[must_use = "a pipeline does nothing until run"]
pub struct Pipeline {
    client: Arc<Client>,
    calls: Vec<(Proxy, Request)>,
    deadline: Option<Instant>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("calls", &self.calls.len())
            .finish()
    }
}

impl Pipeline {
    pub(crate) fn new(client: Arc<Client>) -> Pipeline {
        Pipeline {
            client,
            calls: Vec::new(),
            deadline: None,
        }
    }

    /// Queues `proxy.method(*args, **kwargs)`. The proxy must belong to
    /// the same server as the pipeline (checked by [`run`](Self::run)).
    pub fn call(
        &mut self,
        proxy: &Proxy,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> &mut Self {
        self.calls
            .push((proxy.clone(), proxy.request(method, args, kwargs)));
        self
    }

    /// Gives up at `deadline` (the remaining calls fail with
    /// [`ClientError::DeadlineExceeded`]).
    pub fn deadline(&mut self, deadline: Instant) -> &mut Self {
        self.deadline = Some(deadline);
        self
    }

    /// Number of queued calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True if no call is queued.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Sends the calls and reads every reply. The outer `Result` fails
    /// only if no call could be sent at all (no connection, a proxy of
    /// another server); per-call results are in the vector.
    pub fn run(self) -> Result<Vec<Result<Response>>> {
        for (p, _) in &self.calls {
            if !p.client().py_address.same_endpoint(&self.client.py_address) {
                return Err(ClientError::Protocol(format!(
                    "a pipeline runs on one server; {} belongs to another",
                    p.token()
                )));
            }
        }
        let frames = self
            .calls
            .iter()
            .map(|(_, r)| encode_request(r))
            .collect::<Result<Vec<_>>>()?;
        let mut conn = self.client.served()?;
        let n = frames.len();
        let mut results: Vec<Result<Response>> = Vec::with_capacity(n);
        let mut sent = 0;
        let mut failed: Option<String> = None;
        while results.len() < n {
            // Fill the window, with one write for all the frames it takes.
            let upto = n.min(results.len() + PIPELINE_WINDOW);
            if failed.is_none() && sent < upto {
                let batch: Vec<&[u8]> = frames[sent..upto].iter().map(Vec::as_slice).collect();
                match conn.send_many(&batch) {
                    Ok(()) => sent = upto,
                    Err(e) => failed = Some(e.to_string()),
                }
            }
            if results.len() == sent {
                break;
            }
            let i = results.len();
            let method = &self.calls[i].1.method;
            match Client::recv_by(&mut conn, method, self.deadline)
                .and_then(|f| crate::client::decode_reply(&f))
            {
                Ok(reply) => results.push(reply_result(reply).map(|r| self.calls[i].0.response(r))),
                Err(e) => {
                    failed = Some(e.to_string());
                    results.push(Err(e));
                    break;
                }
            }
        }
        if failed.is_none() && results.len() == n {
            if self.deadline.is_some() {
                // Only recv_by with a deadline sets a read timeout (no
                // setsockopt per batch otherwise).
                let _ = conn.stream().set_read_timeout(None);
            }
            self.client.put_back(conn);
        }
        let why = failed.unwrap_or_default();
        while results.len() < n {
            // Not run (or its reply not read): the connection failed earlier.
            let _ = &why;
            results.push(Err(ClientError::Connection(
                mpmanager_connection::ConnectionError::Poisoned,
            )));
        }
        Ok(results)
    }
}
