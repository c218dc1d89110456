//! The hang-up watcher: one thread that learns, through `epoll`, when the
//! peer of a served connection hangs up, and cancels that connection's
//! [`CallContext`](mpmanager_objects::CallContext) so that a call blocked
//! for it (a `q.get()`, a lock `acquire`) gives up at once and takes
//! nothing.
//!
//! A connection thread blocked inside a call does not read its socket, so
//! it cannot see the peer go; the kernel can. Each served connection is
//! registered for `EPOLLRDHUP` (the peer closed or shut down its side;
//! `EPOLLHUP`/`EPOLLERR` are always reported) and nothing else, so data
//! arriving costs the watcher nothing. A registration lasts as long as its
//! connection; the watcher sleeps in `epoll_wait` while nobody hangs up.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mpmanager_objects::CancelHandle;

/// How often a cancelled call still waiting is woken again (closes the
/// window between a wait's last check of the flag and its sleep).
const REWAKE: Duration = Duration::from_millis(20);

/// The watcher shared by a server's connections.
pub(crate) struct HangupWatcher {
    epoll: OwnedFd,
    /// Registered connections: id → (socket, cancel handle).
    conns: Mutex<HashMap<u64, (RawFd, CancelHandle)>>,
    stop: AtomicBool,
}

impl std::fmt::Debug for HangupWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HangupWatcher").finish_non_exhaustive()
    }
}

/// Unregisters a connection when dropped (before its socket is closed).
pub(crate) struct Watched {
    watcher: Arc<HangupWatcher>,
    id: u64,
}

impl Drop for Watched {
    fn drop(&mut self) {
        let entry = self
            .watcher
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        if let Some((fd, _)) = entry {
            self.watcher.ctl(libc::EPOLL_CTL_DEL, fd, self.id);
        }
    }
}

impl HangupWatcher {
    /// Creates the epoll instance and starts the watcher thread, which ends
    /// once [`HangupWatcher::stop`] is called and the last `Arc` is gone
    /// (it holds a `Weak`).
    pub(crate) fn start() -> io::Result<Arc<HangupWatcher>> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor owned by nothing else.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let w = Arc::new(HangupWatcher {
            epoll,
            conns: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        // The thread waits on a descriptor of its own, so the epoll
        // instance outlives every `epoll_wait` it makes.
        let epoll = w.epoll.try_clone()?;
        let weak = Arc::downgrade(&w);
        std::thread::Builder::new()
            .name("mpm-hangups".into())
            .stack_size(64 << 10)
            .spawn(move || run(&epoll, weak))?;
        Ok(w)
    }

    /// Asks the watcher thread to end (within a second).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Watches connection `id` (socket `fd`) until the guard drops; a
    /// hang-up cancels `cancel`.
    pub(crate) fn watch(self: &Arc<Self>, id: u64, fd: RawFd, cancel: CancelHandle) -> Watched {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (fd, cancel));
        self.ctl(libc::EPOLL_CTL_ADD, fd, id);
        Watched {
            watcher: self.clone(),
            id,
        }
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, id: u64) {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32,
            u64: id,
        };
        // SAFETY: valid epoll descriptor and event struct; a failure (the
        // socket is already closed, say) only means it is not watched.
        let r = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) };
        if r < 0 {
            tracing::debug!(
                conn = id,
                "epoll_ctl({op}) failed: {}",
                io::Error::last_os_error()
            );
        }
    }

    /// The peer of `id` hung up: cancel its calls and stop watching it
    /// (the registration is level-triggered).
    fn hung_up(&self, id: u64) -> Option<CancelHandle> {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let (fd, cancel) = conns.get(&id)?;
        self.ctl(libc::EPOLL_CTL_DEL, *fd, id);
        Some(cancel.clone())
    }
}

fn run(epoll: &OwnedFd, weak: std::sync::Weak<HangupWatcher>) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    // Cancelled calls that were still waiting: woken again until they leave.
    let mut rewake: Vec<CancelHandle> = Vec::new();
    loop {
        match weak.upgrade() {
            Some(w) if !w.stop.load(Ordering::SeqCst) => {}
            _ => return,
        }
        let timeout = if rewake.is_empty() {
            1000
        } else {
            REWAKE.as_millis() as i32
        };
        // SAFETY: `events` is a valid buffer of its length and `epoll` an
        // open epoll descriptor owned by this thread.
        let n = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout,
            )
        };
        let Some(w) = weak.upgrade() else { return };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!("hang-up watcher: epoll_wait failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        rewake.retain(|c| c.wake_again());
        for ev in &events[..n as usize] {
            let id = ev.u64;
            if let Some(cancel) = w.hung_up(id) {
                tracing::debug!(conn = id, "peer hung up");
                if cancel.cancel() {
                    rewake.push(cancel);
                }
            }
        }
    }
}
