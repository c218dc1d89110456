//! Adaptive busy-polling before a blocking read.
//!
//! A request/reply server whose thread sleeps in `recv` between requests is
//! woken by the kernel for every request: on a virtual machine whose idle
//! vCPUs halt, that wake-up (an IPI to a halted vCPU, handled by the host)
//! can cost more than everything else in a call. A thread that polls the
//! socket for a short while before sleeping is not woken: it sees the next
//! request as soon as it lands. Polling costs CPU, so it must only happen
//! where it pays: [`BusyPoll`] adapts the polling window of each connection
//! to the gaps it observes (the scheme of Linux's guest halt-polling,
//! `drivers/cpuidle/governors/haltpoll.c`) and [`SpinBudget`] caps how many
//! threads poll at once, so pollers never take every CPU from the clients.
//!
//! The window of a connection starts at zero (no polling). A wait that ends
//! within `max` of its start makes the window grow (doubling from
//! `max / 4`), a wait longer than `max` halves it (down to zero below
//! 1 µs). So a client in a tight request loop is met by a polling thread,
//! while an idle connection, or a client whose requests come further apart
//! than `max` (busy CPUs, think time), costs nothing. While polling, the
//! thread yields the CPU between polls (`sched_yield`), so a runnable thread
//! on the same CPU is not held up by it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The number of threads allowed to busy-poll at once, shared by every
/// connection of a server.
///
/// ```
/// use mpmanager_connection::SpinBudget;
///
/// let b = SpinBudget::new(1);
/// assert_eq!(b.max_spinners(), 1);
/// assert_eq!(SpinBudget::for_this_machine().max_spinners() + 1,
///            std::thread::available_parallelism().map_or(1, |n| n.get()));
/// ```
#[derive(Debug)]
pub struct SpinBudget {
    max: usize,
    spinning: AtomicUsize,
    load: Option<LoadProbe>,
}

/// Whether every CPU of the machine is taken: the number of runnable tasks
/// of `/proc/loadavg` (4th field, `running/total`) against the online CPUs,
/// read at most once a millisecond by whichever poller comes first.
#[derive(Debug)]
struct LoadProbe {
    file: std::fs::File,
    cpus: usize,
    base: Instant,
    /// Nanoseconds after `base` of the last read.
    checked: AtomicU64,
    busy: AtomicBool,
}

impl LoadProbe {
    const EVERY: Duration = Duration::from_millis(1);

    fn open() -> Option<LoadProbe> {
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        let probe = LoadProbe {
            file: std::fs::File::open("/proc/loadavg").ok()?,
            cpus: usize::try_from(cpus).ok().filter(|&c| c > 0)?,
            base: Instant::now(),
            checked: AtomicU64::new(0),
            busy: AtomicBool::new(false),
        };
        probe.runnable()?;
        Some(probe)
    }

    /// Runnable tasks now, this thread included.
    fn runnable(&self) -> Option<usize> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 128];
        let n = self.file.read_at(&mut buf, 0).ok()?;
        parse_runnable(&buf[..n])
    }

    fn all_cpus_busy(&self) -> bool {
        let now = self.base.elapsed().as_nanos() as u64;
        let last = self.checked.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= Self::EVERY.as_nanos() as u64
            && self
                .checked
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            // Unreadable: assume busy (polling is an optimisation).
            let busy = self.runnable().is_none_or(|r| r > self.cpus);
            self.busy.store(busy, Ordering::Relaxed);
        }
        self.busy.load(Ordering::Relaxed)
    }
}

/// The runnable count of a `/proc/loadavg` line (`0.20 0.18 0.12 1/80 11206`).
fn parse_runnable(line: &[u8]) -> Option<usize> {
    let field = line.split(|&b| b == b' ').nth(3)?;
    let running = field.split(|&b| b == b'/').next()?;
    std::str::from_utf8(running).ok()?.parse().ok()
}

impl SpinBudget {
    /// At most `max_spinners` threads poll at once (0: nobody polls),
    /// whatever the load of the machine.
    pub fn new(max_spinners: usize) -> SpinBudget {
        SpinBudget {
            max: max_spinners,
            spinning: AtomicUsize::new(0),
            load: None,
        }
    }

    /// One CPU fewer than this process may run on
    /// ([`std::thread::available_parallelism`]), so on a single CPU nobody
    /// polls and at least one CPU is always left to the clients; and nobody
    /// starts polling while the machine has more runnable tasks than CPUs
    /// (`/proc/loadavg`), when polling would take CPU time from someone.
    pub fn for_this_machine() -> SpinBudget {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        SpinBudget {
            load: LoadProbe::open(),
            ..SpinBudget::new(cpus - 1)
        }
    }

    /// The cap given at construction.
    pub fn max_spinners(&self) -> usize {
        self.max
    }

    fn try_acquire(&self) -> bool {
        if self.max == 0 || self.load.as_ref().is_some_and(LoadProbe::all_cpus_busy) {
            return false;
        }
        self.spinning
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.spinning.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One connection's busy-polling state: set it with
/// [`Connection::set_busy_poll`](crate::Connection::set_busy_poll).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mpmanager_connection::{BusyPoll, Connection, SpinBudget, Stream};
///
/// let budget = Arc::new(SpinBudget::new(1));
/// let (a, b) = Stream::pair().unwrap();
/// let (mut a, mut b) = (Connection::new(a), Connection::new(b));
/// b.set_busy_poll(Some(BusyPoll::new(Duration::from_micros(50), budget)));
/// for _ in 0..100 {
///     a.send(b"ping").unwrap();
///     assert_eq!(b.recv(16).unwrap(), b"ping");
/// }
/// // back-to-back requests: the window grew from zero
/// assert!(b.busy_poll().unwrap().window() > Duration::ZERO);
/// ```
#[derive(Debug)]
pub struct BusyPoll {
    max: Duration,
    window: Duration,
    budget: Arc<SpinBudget>,
}

/// A gap between two polls longer than this means the poller was
/// descheduled.
const PREEMPTED: Duration = Duration::from_micros(20);

/// The outcome of one poll.
pub(crate) enum Polled {
    /// Bytes read into the buffer.
    Read(usize),
    /// End of file.
    Eof,
    /// Nothing arrived within the window (or no polling now): block.
    Block,
}

impl BusyPoll {
    /// Polls for at most `max` per wait (a zero `max` never polls), while
    /// `budget` allows.
    pub fn new(max: Duration, budget: Arc<SpinBudget>) -> BusyPoll {
        BusyPoll {
            max,
            window: Duration::ZERO,
            budget,
        }
    }

    /// The current polling window (zero: the next wait blocks at once).
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The largest window.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Polls `fd` with non-blocking `recv` into `buf` for up to the current
    /// window. `start` is when the wait began.
    pub(crate) fn poll(
        &mut self,
        fd: std::os::fd::RawFd,
        buf: &mut [u8],
        start: Instant,
    ) -> std::io::Result<Polled> {
        if self.window.is_zero() || !self.budget.try_acquire() {
            return Ok(Polled::Block);
        }
        let mut last = start;
        let r = loop {
            // SAFETY: `buf` is valid for writes of its length; `fd` is an
            // open socket owned by the caller.
            let n =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n > 0 {
                break Ok(Polled::Read(n as usize));
            }
            if n == 0 {
                break Ok(Polled::Eof);
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => {}
                _ => break Err(e),
            }
            let now = Instant::now();
            // A poll takes a microsecond or two; a much longer gap means
            // this thread lost its CPU to someone else: stop taking it.
            if now - start >= self.window || now - last > PREEMPTED {
                break Ok(Polled::Block);
            }
            last = now;
            // SAFETY: no arguments; lets a runnable thread on this CPU go first.
            unsafe { libc::sched_yield() };
        };
        self.budget.release();
        r
    }

    /// Adapts the window to a wait that began at `start` and has just ended
    /// (`polled`: whether the poll caught it).
    pub(crate) fn finished(&mut self, start: Instant, polled: bool) {
        if polled {
            return;
        }
        let waited = start.elapsed();
        if waited > self.max {
            self.window /= 2;
            if self.window < Duration::from_micros(1) {
                self.window = Duration::ZERO;
            }
        } else if waited > self.window {
            self.window = (self.window * 2).max(self.max / 4).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_grows_on_short_waits_and_shrinks_on_long_ones() {
        let mut p = BusyPoll::new(Duration::from_micros(100), Arc::new(SpinBudget::new(1)));
        let ago = |us| Instant::now() - Duration::from_micros(us);
        p.finished(ago(10), false);
        assert_eq!(p.window(), Duration::from_micros(25));
        p.finished(ago(10), false);
        assert_eq!(
            p.window(),
            Duration::from_micros(25),
            "a wait within the window"
        );
        p.finished(ago(30), false);
        assert_eq!(p.window(), Duration::from_micros(50));
        p.finished(ago(60), false);
        p.finished(ago(99), false);
        assert_eq!(p.window(), Duration::from_micros(100), "capped at max");
        p.finished(ago(10), true);
        assert_eq!(p.window(), Duration::from_micros(100), "caught by the poll");
        let long_ago = Instant::now() - Duration::from_millis(5);
        for _ in 0..7 {
            p.finished(long_ago, false);
        }
        assert_eq!(p.window(), Duration::ZERO, "idle connections stop polling");
    }

    #[test]
    fn budget_caps_concurrent_pollers() {
        let b = SpinBudget::new(1);
        assert!(b.try_acquire());
        assert!(!b.try_acquire());
        b.release();
        assert!(b.try_acquire());
        assert!(!SpinBudget::new(0).try_acquire());
    }

    #[test]
    fn loadavg_runnable_field() {
        assert_eq!(parse_runnable(b"0.20 0.18 0.12 1/80 11206\n"), Some(1));
        assert_eq!(parse_runnable(b"3.19 2.87 1.93 12/381 21745"), Some(12));
        assert_eq!(parse_runnable(b"garbage"), None);
        let probe = LoadProbe::open().expect("/proc/loadavg");
        assert!(probe.runnable().unwrap() >= 1, "this thread runs");
    }

    #[test]
    fn zero_max_never_polls() {
        let mut p = BusyPoll::new(Duration::ZERO, Arc::new(SpinBudget::new(4)));
        p.finished(Instant::now(), false);
        assert_eq!(p.window(), Duration::ZERO);
    }
}
