//! Admission control: a bound on connections still in the handshake,
//! separate from the bound on authenticated ones, and rate-limited
//! warnings about the connections turned away.
//!
//! * A connection is *pending* from `accept` until its handshake ends. At
//!   most [`ServerConfig::max_pending_handshakes`] are pending; when a new
//!   one arrives at the limit the **oldest** pending one is closed. A client
//!   with the key answers the challenge within a round trip, so it is done
//!   long before it becomes the oldest; a peer without the key that keeps
//!   sockets open (re-opening each one it loses) only evicts its own
//!   sockets. Refusing the newcomer instead would hand the pending slots to
//!   whoever holds them first, i.e. to the flooder. The evicted socket is
//!   not closed but held, without a thread, until its handshake deadline
//!   (up to [`held_max`] of them: a quarter of the open-files limit, at
//!   most 16384): a peer that re-opens every
//!   socket it loses would otherwise turn each eviction into a new
//!   connection and evictions into a loop fast enough to evict clients in
//!   the middle of their handshake. A connection stops being pending as
//!   soon as the peer has answered our challenge (it has the key).
//! * Only authenticated connections count toward
//!   [`ServerConfig::max_connections`]. A client that authenticates while
//!   that limit is reached has its first request answered with
//!   `ConnectionRefusedError` (a `#TRACEBACK` with the `xmlrpclib`
//!   serializer) that names the limit and the flag, then the connection is
//!   closed. Only a peer that proved it has the key learns why.
//!
//! [`ServerConfig::max_pending_handshakes`]: crate::ServerConfig::max_pending_handshakes
//! [`ServerConfig::max_connections`]: crate::ServerConfig::max_connections

use std::collections::{BTreeMap, VecDeque};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpmanager_connection::{auth, Connection, Stream};
use mpmanager_pickle::{encode_with, EncodeOptions, ExcType, Global, PyErr};
use mpmanager_protocol::{Reply, Serializer};

use crate::server::Shared;

/// Warnings of one kind are printed at most once per this period; the
/// next one says how many were left out.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// The longest first request read from a client that is refused (to answer
/// it and close without a reset); a longer one is not read.
const REFUSED_REQUEST_MAX: usize = 1 << 20;

/// The most evicted connections held open (see
/// [`Unauthenticated::tarpit`]): a quarter of the soft open-files limit,
/// at most 16384, at least `max_pending`. Each costs one descriptor,
/// as it costs the peer one; a peer holding more sockets than the pending
/// bound plus this makes the server close held ones early, which it
/// re-opens, and its re-opens then evict pending handshakes as fast as
/// the server accepts them.
pub(crate) fn held_max(max_pending: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    (nofile / 4).min(16384).max(max_pending)
}

/// The admission state of a server (a field of [`Shared`]).
pub(crate) struct Admission {
    max_connections: usize,
    max_pending: usize,
    /// See [`held_max`].
    max_held: usize,
    handshake_timeout: Duration,
    unauth: Mutex<Unauthenticated>,
    /// Authenticated connections holding a slot.
    authenticated: AtomicUsize,
    evicted: RateLimit,
    refused: RateLimit,
    auth_failed: RateLimit,
}

/// Connections that have not proven they have the key.
struct Unauthenticated {
    /// Pending connections by id (ids grow: the first is the oldest), with
    /// a clone of the stream to close it, and when it was accepted.
    pending: BTreeMap<u64, (Stream, Instant)>,
    /// Evicted pending connections, held open without a thread until their
    /// handshake deadline (at most `Admission::max_held` of them, oldest
    /// first).
    /// A peer that re-opens each socket it loses would otherwise turn every
    /// eviction into a new connection, and evictions into a loop fast
    /// enough to evict clients with the key in the middle of their
    /// handshake; held open, its sockets cost one descriptor each.
    tarpit: VecDeque<(Instant, Stream)>,
    /// A thread is closing the held sockets at their deadlines.
    janitor: bool,
}

impl Unauthenticated {
    /// Closes the held sockets whose deadline has passed, and the oldest
    /// ones beyond `max`.
    fn sweep(&mut self, now: Instant, max: usize) {
        while let Some((deadline, _)) = self.tarpit.front() {
            if *deadline > now && self.tarpit.len() <= max {
                break;
            }
            if let Some((_, s)) = self.tarpit.pop_front() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Admission {
    pub(crate) fn new(
        max_connections: usize,
        max_pending: usize,
        handshake_timeout: Duration,
    ) -> Admission {
        Admission {
            max_connections: max_connections.max(1),
            max_pending: max_pending.max(1),
            max_held: held_max(max_pending.max(1)),
            handshake_timeout,
            unauth: Mutex::new(Unauthenticated {
                pending: BTreeMap::new(),
                tarpit: VecDeque::new(),
                janitor: false,
            }),
            authenticated: AtomicUsize::new(0),
            evicted: RateLimit::new(WARN_EVERY),
            refused: RateLimit::new(WARN_EVERY),
            auth_failed: RateLimit::new(WARN_EVERY),
        }
    }

    /// Authenticated connections open now.
    pub(crate) fn authenticated(&self) -> usize {
        self.authenticated.load(Ordering::SeqCst)
    }

    /// Connections in the handshake now.
    pub(crate) fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Unauthenticated> {
        self.unauth.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a just-accepted connection as pending. At the limit, the
    /// oldest pending one is evicted: its thread is woken (its handshake
    /// fails) and the socket is held open, without a thread, until its
    /// deadline. The guard unregisters the connection.
    pub(crate) fn enter_pending(self: &Arc<Self>, id: u64, stream: &Stream) -> PendingGuard {
        let guard = PendingGuard {
            admission: self.clone(),
            id: Some(id),
        };
        let now = Instant::now();
        let Ok(clone) = stream.try_clone() else {
            // Out of descriptors: it cannot be evicted, but its handshake
            // still ends at the timeout.
            return guard;
        };
        let mut evicted = 0;
        {
            let mut u = self.lock();
            let max_held = self.max_held;
            u.sweep(now, max_held);
            while u.pending.len() >= self.max_pending {
                let Some((_, (oldest, accepted))) = u.pending.pop_first() else {
                    break;
                };
                // Wakes the handshake thread with end of file, without
                // telling the peer.
                let _ = oldest.shutdown(Shutdown::Read);
                u.tarpit
                    .push_back((accepted + self.handshake_timeout, oldest));
                evicted += 1;
            }
            u.sweep(now, max_held);
            u.pending.insert(id, (clone, now));
            if !u.tarpit.is_empty() && !u.janitor {
                let me = self.clone();
                u.janitor = std::thread::Builder::new()
                    .name("mpm-tarpit".into())
                    .stack_size(64 << 10)
                    .spawn(move || me.janitor())
                    .is_ok();
            }
        }
        if evicted > 0 {
            if let Some(before) = self.evicted.hit(evicted) {
                tracing::warn!(
                    max = self.max_pending,
                    "{} handshakes pending (the limit set by --max-pending-handshakes): \
                     evicted the oldest unauthenticated connection{}",
                    self.max_pending,
                    before.suffix("such evictions"),
                );
            }
        }
        guard
    }

    /// Closes the held sockets at their deadlines; ends when none is left.
    fn janitor(self: Arc<Self>) {
        loop {
            let next = {
                let mut u = self.lock();
                u.sweep(Instant::now(), self.max_held);
                match u.tarpit.front() {
                    Some((deadline, _)) => *deadline,
                    None => {
                        u.janitor = false;
                        return;
                    }
                }
            };
            std::thread::sleep(
                next.saturating_duration_since(Instant::now()) + Duration::from_millis(5),
            );
        }
    }

    /// Closes every unauthenticated connection (at shutdown).
    pub(crate) fn close_unauthenticated(&self) {
        let mut u = self.lock();
        for (_, (s, _)) in std::mem::take(&mut u.pending) {
            let _ = s.shutdown(Shutdown::Both);
        }
        u.sweep(Instant::now(), 0);
    }

    /// Takes a slot for an authenticated connection, or `None` at the limit.
    fn try_slot(self: &Arc<Self>) -> Option<SlotGuard> {
        self.authenticated
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .ok()
            .map(|_| SlotGuard(self.clone()))
    }
}

/// Unregisters a pending connection when dropped or
/// [`done`](PendingGuard::done) (once the peer has proven it has the key,
/// at the end of its handshake, or of its thread).
pub(crate) struct PendingGuard {
    admission: Arc<Admission>,
    id: Option<u64>,
}

impl PendingGuard {
    fn done(&mut self) {
        if let Some(id) = self.id.take() {
            self.admission.lock().pending.remove(&id);
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.done();
    }
}

/// An authenticated connection's slot (counted toward `max_connections`)
/// until dropped.
pub(crate) struct SlotGuard(Arc<Admission>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.authenticated.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs the server side of the handshake on a pending connection and, if
/// it succeeds and a slot is free, returns the authenticated connection and
/// its slot. Otherwise logs why (rate-limited at WARN for a wrong key or a
/// full server) and returns `None`; a client refused for the limit gets a
/// readable error first.
pub(crate) fn admit(
    shared: &Arc<Shared>,
    stream: Stream,
    mut pending: PendingGuard,
    peer: &str,
) -> Option<(Connection, SlotGuard)> {
    let admission = &shared.admission;
    let mut conn = Connection::new(stream);
    // The connection stops being pending (and can no longer be evicted)
    // as soon as the peer has proven it has the key.
    let r = auth::server_handshake_verified(
        &mut conn,
        &shared.authkey,
        Some(shared.handshake_timeout),
        || pending.done(),
    );
    drop(pending);
    if let Err(e) = r {
        if e.is_auth_failure() {
            if let Some(before) = admission.auth_failed.hit(1) {
                tracing::warn!(%peer, "{e}{}", before.suffix("failed handshakes"));
            }
        } else {
            tracing::debug!(%peer, "handshake did not complete: {e}");
        }
        return None;
    }
    match admission.try_slot() {
        Some(slot) => Some((conn, slot)),
        None => {
            if let Some(before) = admission.refused.hit(1) {
                tracing::warn!(
                    %peer,
                    max = admission.max_connections,
                    "connection refused: {} authenticated connections open, the limit set by \
                     --max-connections{}",
                    admission.max_connections,
                    before.suffix("connections refused"),
                );
            }
            refuse(shared, conn);
            None
        }
    }
}

/// The text a client refused for `--max-connections` sees.
pub(crate) fn refusal_text(max_connections: usize) -> String {
    let are = if max_connections == 1 {
        "connection is"
    } else {
        "connections are"
    };
    format!(
        "mpmanager refused the connection: {max_connections} {are} open, \
         the server's limit (--max-connections, ServerConfig::max_connections); \
         close some or raise the limit"
    )
}

/// Answers the client's first request with the refusal and closes. The
/// request is read first, so that closing does not reset the connection
/// under the reply.
fn refuse(shared: &Shared, mut conn: Connection) {
    let _ = conn
        .stream()
        .set_read_timeout(Some(shared.handshake_timeout));
    let _ = conn
        .stream()
        .set_write_timeout(Some(shared.handshake_timeout));
    let request = match conn.recv(REFUSED_REQUEST_MAX) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("refused client sent no request: {e}");
            return;
        }
    };
    let text = refusal_text(shared.admission.max_connections);
    let bytes = match shared.serializer {
        Serializer::XmlRpc => mpmanager_xmlrpc::encode(&Reply::Traceback(text).to_value()).ok(),
        _ => {
            // The protocol of the request (CPython 3.14 sends 5), so
            // that every client can load the reply.
            let protocol = match request.as_slice() {
                [0x80, p, ..] if (2..=5).contains(p) => *p,
                _ => 2,
            };
            let err = PyErr::new(
                ExcType::Other(Arc::new(Global::new("builtins", "ConnectionRefusedError"))),
                text,
            );
            encode_with(
                &Reply::error(&err).to_value(),
                &EncodeOptions::protocol(protocol),
            )
            .ok()
        }
    };
    if let Some(b) = bytes {
        if let Err(e) = conn.send(&b) {
            tracing::debug!("cannot send the refusal: {e}");
        }
    }
    let _ = conn.stream().shutdown(Shutdown::Write);
}

/// At most one line per period for a kind of warning; the line says how
/// many were left out since the last one.
pub(crate) struct RateLimit {
    every: Duration,
    state: Mutex<RateState>,
}

struct RateState {
    last: Option<Instant>,
    suppressed: u64,
}

/// What a rate-limited line reports about the events left out before it.
pub(crate) struct Suppressed {
    count: u64,
    since: Duration,
}

impl Suppressed {
    /// `""`, or `" (and N more <what> in the last S s)"`.
    pub(crate) fn suffix(&self, what: &str) -> String {
        if self.count == 0 {
            String::new()
        } else {
            format!(
                " ({} more {what} in the last {:.0} s, not logged one by one)",
                self.count,
                self.since.as_secs_f64()
            )
        }
    }
}

impl RateLimit {
    pub(crate) fn new(every: Duration) -> RateLimit {
        RateLimit {
            every,
            state: Mutex::new(RateState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Records `n` events. `Some` if a line is due now (with the number of
    /// earlier events not logged), `None` if this one is left out.
    pub(crate) fn hit(&self, n: u64) -> Option<Suppressed> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.last {
            Some(last) if now.duration_since(last) < self.every => {
                s.suppressed += n;
                None
            }
            last => {
                let r = Suppressed {
                    count: s.suppressed + n.saturating_sub(1),
                    since: last.map_or(Duration::ZERO, |l| now.duration_since(l)),
                };
                s.last = Some(now);
                s.suppressed = 0;
                Some(r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_prints_once_per_period_with_the_count() {
        let r = RateLimit::new(Duration::from_millis(200));
        assert_eq!(r.hit(1).unwrap().suffix("x"), "");
        for _ in 0..5 {
            assert!(r.hit(1).is_none());
        }
        std::thread::sleep(Duration::from_millis(250));
        let s = r.hit(1).unwrap();
        assert_eq!(s.count, 5);
        assert!(
            s.suffix("x").starts_with(" (5 more x in the last"),
            "{}",
            s.suffix("x")
        );
        assert!(r.hit(1).is_none());
    }
}
