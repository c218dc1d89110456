//! Adaptive busy-polling before a blocking read.
//!
//! A request/reply server whose thread sleeps in `recv` between requests is
//! woken by the kernel for every request: on a virtual machine whose idle
//! vCPUs halt, that wake-up (an IPI to a halted vCPU, handled by the host)
//! can cost more than everything else in a call. A thread that polls the
//! socket for a short while before sleeping is not woken: it sees the next
//! request as soon as it lands. Polling costs CPU, so it must only happen
//! where it pays, and where it does: on a VM whose idle vCPUs halt, a client
//! whose server thread sleeps is often run on the same CPU as that thread
//! (the kernel's wake-affine placement), which is the fastest round trip of
//! all, and a polling thread, never idle, prevents exactly that. So
//! [`BusyPoll`] measures, per connection, the client's round trip with
//! sleeping and with polling and keeps whichever is measurably faster
//! (re-measuring every [`EXPLOIT`] requests), and [`SpinBudget`] caps how
//! many threads poll at once and stands back while the machine has more
//! runnable tasks than CPUs. While polling, the thread yields the CPU
//! between polls (`sched_yield`), so a runnable thread on the same CPU is
//! not held up by it.

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
/// It chooses, per connection, between sleeping in `recv` and polling, by
/// measuring both: the interval from one wait for a request to the next
/// (the client's whole round trip) is sampled over 16 waits that block,
/// then over 16 waits that poll; polling is kept for the next 4,096 waits
/// only if its median interval is at least 10%
/// shorter, then both are measured again. Polling stops at once when a poll
/// runs its whole window without a request (the client paused), and the
/// measuring starts over; a pause is no sample, so an idle connection
/// never polls.
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
/// assert!(!b.busy_poll().unwrap().polling(), "it starts by measuring sleeps");
/// for _ in 0..100 {
///     a.send(b"ping").unwrap();
///     assert_eq!(b.recv(16).unwrap(), b"ping");
/// }
/// ```
#[derive(Debug)]
pub struct BusyPoll {
    max: Duration,
    budget: Arc<SpinBudget>,
    phase: Phase,
    /// Intervals (ns) collected in the current measuring phase.
    samples: Vec<u64>,
    /// Median interval of the last blocking phase (ns).
    blocking_median: u64,
    /// Start of the previous wait.
    last_start: Option<Instant>,
}

/// Waits measured per mode before choosing.
pub const SAMPLES: usize = 16;
/// Blocking waits let go first, uncounted, when switching from polling to
/// sleeping: the kernel needs a few wake-ups to place client and server
/// thread on one CPU again.
pub const SETTLE: usize = 240;
/// Waits spent in the chosen mode before measuring again.
pub const EXPLOIT: u32 = 4096;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    MeasureBlocking,
    MeasurePolling,
    Exploit { poll: bool, left: u32 },
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

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

impl BusyPoll {
    /// Polls for at most `max` per wait (a zero `max` never polls), while
    /// `budget` allows and the measurements favour it.
    pub fn new(max: Duration, budget: Arc<SpinBudget>) -> BusyPoll {
        BusyPoll {
            max,
            budget,
            phase: Phase::MeasureBlocking,
            samples: Vec::with_capacity(SETTLE + SAMPLES),
            blocking_median: 0,
            last_start: None,
        }
    }

    /// Whether the next wait polls (budget permitting). Never with a zero
    /// `max`: measuring then stops after the blocking phase.
    pub fn polling(&self) -> bool {
        matches!(
            self.phase,
            Phase::MeasurePolling | Phase::Exploit { poll: true, .. }
        )
    }

    /// Accounts for a wait starting at `start`: the interval since the
    /// previous one is a sample of the current phase.
    fn begin(&mut self, start: Instant) {
        let interval = self.last_start.map(|l| start - l);
        self.last_start = Some(start);
        let Some(interval) = interval else { return };
        // A pause of the client, not a round trip.
        let paused = interval > self.max * 10;
        match self.phase {
            Phase::Exploit { poll, left } => {
                self.phase = if left <= 1 {
                    self.samples.clear();
                    Phase::MeasureBlocking
                } else {
                    Phase::Exploit {
                        poll,
                        left: left - 1,
                    }
                };
            }
            Phase::MeasureBlocking | Phase::MeasurePolling if paused => {}
            Phase::MeasureBlocking => {
                self.samples.push(interval.as_nanos() as u64);
                if self.samples.len() == SETTLE + SAMPLES {
                    self.blocking_median = median(&mut self.samples[SETTLE..]);
                    self.samples.clear();
                    self.phase = if self.max.is_zero() {
                        Phase::Exploit {
                            poll: false,
                            left: EXPLOIT,
                        }
                    } else {
                        Phase::MeasurePolling
                    };
                }
            }
            Phase::MeasurePolling => {
                self.samples.push(interval.as_nanos() as u64);
                if self.samples.len() == SAMPLES {
                    let polled = median(&mut self.samples);
                    self.samples.clear();
                    let poll = polled * 10 < self.blocking_median * 9;
                    self.phase = Phase::Exploit {
                        poll,
                        left: EXPLOIT,
                    };
                }
            }
        }
    }

    /// A poll ran its whole window: the client paused. Stop polling and
    /// measure again (pauses are not samples, so an idle connection stays
    /// asleep).
    fn missed(&mut self) {
        self.samples.clear();
        self.phase = Phase::MeasureBlocking;
    }

    /// Polls `fd` with non-blocking `recv` into `buf` for up to `max`, if
    /// this connection polls now. `start` is when the wait began.
    pub(crate) fn poll(
        &mut self,
        fd: std::os::fd::RawFd,
        buf: &mut [u8],
        start: Instant,
    ) -> std::io::Result<Polled> {
        self.begin(start);
        if !self.polling() || !self.budget.try_acquire() {
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
            if now - start >= self.max {
                self.missed();
                break Ok(Polled::Block);
            }
            // A poll takes a microsecond or two; a much longer gap means
            // this thread lost its CPU to someone else: stop taking it.
            if now - last > PREEMPTED {
                break Ok(Polled::Block);
            }
            last = now;
            // SAFETY: no arguments; lets a runnable thread on this CPU go first.
            unsafe { libc::sched_yield() };
        };
        self.budget.release();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds waits `gap` apart; returns whether the connection polls after.
    fn feed(p: &mut BusyPoll, t: &mut Instant, gaps: &[u64]) -> bool {
        for &g in gaps {
            *t += Duration::from_micros(g);
            p.begin(*t);
        }
        p.polling()
    }

    #[test]
    fn polls_only_when_it_measurably_shortens_round_trips() {
        let mut p = BusyPoll::new(Duration::from_micros(50), Arc::new(SpinBudget::new(1)));
        let mut t = Instant::now();
        p.begin(t);
        assert!(!p.polling());
        // Blocking round trips of 40 us, then polling ones of 20 us.
        assert!(
            feed(&mut p, &mut t, &[40; SETTLE + SAMPLES]),
            "now measuring polls"
        );
        assert!(feed(&mut p, &mut t, &[20; SAMPLES]), "polling wins");
        // Exploit, then measure again: blocking 10 us, polling 20 us.
        feed(&mut p, &mut t, &vec![20; EXPLOIT as usize]);
        assert!(!p.polling(), "measuring sleeps again");
        // The settling waits do not count: 45 us, then 10 us.
        feed(&mut p, &mut t, &[45; SETTLE]);
        feed(&mut p, &mut t, &[10; SAMPLES]);
        assert!(!feed(&mut p, &mut t, &[20; SAMPLES]), "sleeping wins");
        // Equal (within 10%): sleep, it costs no CPU.
        feed(&mut p, &mut t, &vec![10; EXPLOIT as usize]);
        feed(&mut p, &mut t, &[30; SETTLE + SAMPLES]);
        assert!(!feed(&mut p, &mut t, &[28; SAMPLES]));
    }

    #[test]
    fn pauses_are_not_samples_and_a_missed_poll_stops_polling() {
        let mut p = BusyPoll::new(Duration::from_micros(50), Arc::new(SpinBudget::new(1)));
        let mut t = Instant::now();
        p.begin(t);
        feed(&mut p, &mut t, &[40; SETTLE + SAMPLES - 1]);
        feed(&mut p, &mut t, &[5_000, 5_000]);
        assert!(!p.polling(), "pauses do not complete a phase");
        assert!(feed(&mut p, &mut t, &[40]));
        p.missed();
        assert!(!p.polling());
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
        let mut t = Instant::now();
        p.begin(t);
        assert!(!feed(&mut p, &mut t, &[1; 3 * SAMPLES]));
    }
}
