//! Bounded memory for requests: the server-wide budget for what requests
//! being received and decoded at once may hold ([`RequestMemory`]), and the
//! intake of one request frame under it and under `--max-frame`
//! ([`receive`]).
//!
//! A request holds, from the moment its frame header is read until it is
//! decoded: its frame (reserved in full before the payload is read) and
//! what decoding allocates, taken from the budget as the decoder counts it
//! (see `mpmanager_pickle::DecodeOptions::max_alloc_factor`). When the
//! budget is used up, a request waits (up to
//! [`ServerConfig::request_memory_wait`](crate::ServerConfig::request_memory_wait))
//! and then fails with an error its client can read; the connection stays
//! usable. A request waiting while decoding holds what it has taken so
//! far; two large requests waiting for each other both fail at the end of
//! their wait, and give everything back. What a request leaves behind once decoded (a value stored in a
//! shared object, the reply) is the server's data, as in CPython, and not
//! part of this budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use mpmanager_connection::{Connection, ConnectionError};
use mpmanager_pickle::decode::{BudgetRefusal, MemoryBudget};

/// Why memory for a request was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryRefusal {
    /// The request alone needs more than the whole budget.
    #[error(
        "a request needs {wanted} bytes, more than the server's request memory of {limit} bytes \
         (mpmanager serve --max-request-memory)"
    )]
    OverBudget {
        /// Bytes the request asked for in all.
        wanted: usize,
        /// The budget.
        limit: usize,
    },
    /// Other requests held the budget for longer than a request may wait.
    #[error(
        "other requests held the server's request memory of {limit} bytes for {waited:?} \
         (mpmanager serve --max-request-memory, --request-memory-wait)"
    )]
    Busy {
        /// The budget.
        limit: usize,
        /// How long the request waited.
        waited: Duration,
    },
}

/// The server-wide budget (bytes) for requests being received and decoded.
pub(crate) struct RequestMemory {
    limit: usize,
    wait: Duration,
    used: AtomicUsize,
    /// Requests waiting in [`RequestMemory::take`]; a release wakes them
    /// only when there are some.
    waiters: AtomicUsize,
    lock: Mutex<()>,
    freed: Condvar,
}

impl RequestMemory {
    pub(crate) fn new(limit: usize, wait: Duration) -> RequestMemory {
        RequestMemory {
            limit,
            wait,
            used: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            lock: Mutex::new(()),
            freed: Condvar::new(),
        }
    }

    /// Bytes held by requests now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    /// Takes `n` bytes, waiting until `deadline` for others to give some
    /// back. `held` is what the caller holds already (for the error).
    fn take(&self, n: usize, held: usize, since: Instant) -> Result<(), MemoryRefusal> {
        if self.try_take(n) {
            return Ok(());
        }
        if held.saturating_add(n) > self.limit {
            return Err(MemoryRefusal::OverBudget {
                wanted: held.saturating_add(n),
                limit: self.limit,
            });
        }
        let deadline = since + self.wait;
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let r = loop {
            if self.try_take(n) {
                break Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(MemoryRefusal::Busy {
                    limit: self.limit,
                    waited: now - since,
                });
            }
            guard = match self.freed.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        r
    }

    fn give(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.freed.notify_all();
        }
    }
}

/// The memory one request holds: its frame, then what its decoding takes.
/// Given back when dropped.
pub(crate) struct Grant<'a> {
    memory: &'a RequestMemory,
    held: usize,
    since: Instant,
}

impl Grant<'_> {
    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held
    }
}

impl MemoryBudget for Grant<'_> {
    fn take(&mut self, bytes: usize) -> Result<(), BudgetRefusal> {
        self.memory
            .take(bytes, self.held, self.since)
            .map_err(|e| std::sync::Arc::new(e) as BudgetRefusal)?;
        self.held += bytes;
        Ok(())
    }
}

/// A request that held at least this much gives the allocator's free
/// memory back to the system when it is done (see [`Grant`]'s drop).
const TRIM_AFTER: usize = 4 << 20;

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        self.memory.give(self.held);
        if self.held >= TRIM_AFTER {
            release_free_memory();
        }
    }
}

/// Returns the allocator's free memory to the system. glibc keeps what a
/// large decode freed (millions of small blocks) in the arena of the
/// thread that decoded it; with one arena per connection thread, the
/// resident size would grow to several times the request budget.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Why a request frame was read and thrown away instead of decoded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FrameRefusal {
    /// Over `--max-frame`.
    #[error(
        "request of {len} bytes exceeds the server's frame limit of {max} bytes \
         (mpmanager serve --max-frame)"
    )]
    TooLarge {
        /// The frame's length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// No request memory for the frame.
    #[error("no memory to receive a request of {len} bytes")]
    NoMemory {
        /// The frame's length.
        len: u64,
        /// Why.
        #[source]
        source: MemoryRefusal,
    },
}

impl FrameRefusal {
    /// The exception line the client gets (`MemoryError: …`), with the
    /// reasons of the whole chain.
    pub(crate) fn exception_line(&self) -> String {
        let mut s = format!("MemoryError: {self}");
        let mut e: &dyn std::error::Error = self;
        while let Some(src) = e.source() {
            s.push_str(": ");
            s.push_str(&src.to_string());
            e = src;
        }
        s
    }
}

/// The `MemoryError: …` line for a decode error and its causes.
pub(crate) fn memory_exception_line(e: &mpmanager_pickle::DecodeError) -> String {
    let mut s = format!("MemoryError: {e}");
    let mut cur: &dyn std::error::Error = e;
    while let Some(src) = cur.source() {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src;
    }
    if matches!(e.kind, mpmanager_pickle::DecodeErrorKind::AllocLimit { .. }) {
        s.push_str(
            " (a request may allocate --decode-factor times its size plus 64 MiB \
             while decoded: mpmanager serve --decode-factor)",
        );
    }
    s
}

/// What receiving one request gave.
pub(crate) enum Intake<'a> {
    /// The frame is in the buffer; the grant holds its memory and gives
    /// the decoder more.
    Frame(Grant<'a>),
    /// The frame was read and thrown away; the connection is usable.
    Refused(FrameRefusal),
}

/// Receives one request frame into `buf`: a frame over `max_frame`, or
/// one there is no request memory for, is read and thrown away (nothing is
/// allocated for it) and reported as [`Intake::Refused`]. Errors are those
/// of the connection.
pub(crate) fn receive<'a>(
    memory: &'a RequestMemory,
    conn: &mut Connection,
    buf: &mut Vec<u8>,
    max_frame: usize,
) -> Result<Intake<'a>, ConnectionError> {
    let len = conn.recv_header()?;
    if len > max_frame as u64 {
        conn.skip_payload()?;
        return Ok(Intake::Refused(FrameRefusal::TooLarge {
            len,
            max: max_frame,
        }));
    }
    let mut grant = Grant {
        memory,
        held: 0,
        since: Instant::now(),
    };
    // `len <= max_frame`, a usize.
    if let Err(source) = memory.take(len as usize, 0, grant.since) {
        conn.skip_payload()?;
        return Ok(Intake::Refused(FrameRefusal::NoMemory { len, source }));
    }
    grant.held = len as usize;
    conn.recv_payload_into(buf)?;
    // Waits while decoding get their own window (a large frame may have
    // taken a while to arrive).
    grant.since = Instant::now();
    Ok(Intake::Frame(grant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpmanager_connection::Stream;
    use std::sync::Arc;

    #[test]
    fn grants_are_given_back_and_waiters_woken() {
        let m = Arc::new(RequestMemory::new(100, Duration::from_secs(5)));
        let mut g = Grant {
            memory: &m,
            held: 0,
            since: Instant::now(),
        };
        g.take(80).unwrap();
        assert_eq!(m.used(), 80);
        let m2 = m.clone();
        let t = std::thread::spawn(move || {
            let mut g = Grant {
                memory: &m2,
                held: 0,
                since: Instant::now(),
            };
            g.take(50).map(|()| g.held())
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(g);
        assert_eq!(t.join().unwrap().unwrap(), 50);
        assert_eq!(m.used(), 0);
    }

    #[test]
    fn over_budget_fails_at_once_and_busy_after_the_wait() {
        let m = RequestMemory::new(100, Duration::from_millis(50));
        let mut g = Grant {
            memory: &m,
            held: 0,
            since: Instant::now(),
        };
        let e = g.take(101).unwrap_err();
        assert!(e.to_string().contains("--max-request-memory"), "{e}");
        g.take(60).unwrap();
        let mut h = Grant {
            memory: &m,
            held: 0,
            since: Instant::now(),
        };
        let t0 = Instant::now();
        let e = h.take(60).unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(
            e.to_string().contains("held the server's request memory"),
            "{e}"
        );
        drop((g, h));
        assert_eq!(m.used(), 0);
    }

    #[test]
    fn oversized_and_unaffordable_frames_are_skipped() {
        let m = RequestMemory::new(1000, Duration::from_millis(10));
        let (a, b) = Stream::pair().unwrap();
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        let t = std::thread::spawn(move || {
            a.send(&vec![1u8; 100_000]).unwrap(); // over max_frame
            a.send(&[2u8; 1500]).unwrap(); // over the budget
            a.send(b"ok").unwrap();
        });
        let mut buf = Vec::new();
        match receive(&m, &mut b, &mut buf, 2000).unwrap() {
            Intake::Refused(
                r @ FrameRefusal::TooLarge {
                    len: 100_000,
                    max: 2000,
                },
            ) => {
                assert!(r.exception_line().contains("--max-frame"), "{r}")
            }
            _ => panic!("not refused"),
        }
        match receive(&m, &mut b, &mut buf, 2000).unwrap() {
            Intake::Refused(r @ FrameRefusal::NoMemory { len: 1500, .. }) => {
                let line = r.exception_line();
                assert!(line.contains("--max-request-memory"), "{line}")
            }
            _ => panic!("not refused"),
        }
        match receive(&m, &mut b, &mut buf, 2000).unwrap() {
            Intake::Frame(g) => assert_eq!((buf.as_slice(), g.held()), (&b"ok"[..], 2)),
            _ => panic!("refused"),
        }
        assert_eq!(m.used(), 0);
        t.join().unwrap();
    }
}
