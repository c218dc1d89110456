//! `multiprocessing.connection` framing over a [`Stream`].

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::busy_poll::{BusyPoll, Polled};
use crate::error::{ConnectionError, Result};
use crate::stream::Stream;

/// Size of the per-connection read buffer. A frame whose remaining payload is
/// larger than the buffer is read straight into the caller's buffer.
const READ_BUF_SIZE: usize = 32 * 1024;

/// The read buffer starts this small and grows to [`READ_BUF_SIZE`] the
/// first time a read fills it (a peer sending more than one small frame at
/// a time): an idle connection then costs ~7 KB less (measured with 1,000
/// idle connections, docs/BENCHMARKS.md).
const INITIAL_READ_BUF_SIZE: usize = 4 * 1024;

/// Largest up-front reservation for a payload: a peer announcing a huge frame
/// must actually send the bytes before we allocate more than this.
const MAX_PREALLOC: usize = 16 * 1024 * 1024;

/// Pass as `max_len` to accept frames of any length (as CPython's
/// `recv_bytes()` without `maxlength` does).
pub const NO_LIMIT: usize = usize::MAX;

/// A framed, blocking, message-oriented connection, byte-compatible with
/// CPython's `multiprocessing.connection.Connection.send_bytes`/`recv_bytes`
/// on sockets.
///
/// A frame is an `i32be` length and the payload; payloads over `0x7FFFFFFF`
/// bytes use `ff ff ff ff` and a `u64be` length (both forms are read).
/// Reads are buffered (one `read` usually brings header and payload); each
/// [`send`](Self::send) writes header and payload with one `writev`.
///
/// After an error that leaves the stream in the middle of a frame, every
/// further call fails with [`ConnectionError::Poisoned`].
///
/// ```
/// use mpmanager_connection::{Connection, Stream};
///
/// let (a, b) = Stream::pair().unwrap();
/// let (mut a, mut b) = (Connection::new(a), Connection::new(b));
/// a.send(b"hello").unwrap();
/// a.send(b"").unwrap();                       // empty messages are legal
/// assert_eq!(b.recv(1024).unwrap(), b"hello");
/// let mut buf = Vec::new();                   // reusable buffer
/// b.recv_into(&mut buf, 1024).unwrap();
/// assert!(buf.is_empty());
///
/// a.send(&[0u8; 100]).unwrap();
/// let err = b.recv(10).unwrap_err();          // over the limit: nothing allocated
/// assert!(err.must_reconnect());
///
/// drop(a);
/// ```
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    rbuf: Box<[u8]>,
    start: usize,
    end: usize,
    poisoned: bool,
    /// While set (during authentication), every read gets the time left as
    /// its timeout, so a peer dripping bytes cannot outlast the deadline.
    deadline: Option<Instant>,
    /// Poll before blocking in a read (servers; see [`BusyPoll`]).
    busy_poll: Option<BusyPoll>,
    /// ACK at once when a read waits for the rest of a frame (see
    /// [`Connection::set_quickack`]).
    quickack: bool,
    /// The payload length of a frame whose header [`recv_header`]
    /// (Self::recv_header) has read and whose payload is still unread.
    pending: Option<u64>,
}

fn map_io(e: io::Error, operation: &'static str, partial: bool) -> ConnectionError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            ConnectionError::Timeout { operation, partial }
        }
        _ => ConnectionError::Io(e),
    }
}

impl Connection {
    /// Wraps a connected stream.
    pub fn new(stream: Stream) -> Connection {
        Connection {
            stream,
            rbuf: vec![0u8; INITIAL_READ_BUF_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            poisoned: false,
            deadline: None,
            busy_poll: None,
            quickack: false,
            pending: None,
        }
    }

    /// TCP, for peers with Nagle's algorithm on (CPython's clients): ACK
    /// what has arrived now, and again whenever a read has to wait for the
    /// rest of a frame it has begun (`TCP_QUICKACK`). Such a peer writes a
    /// frame over 16 KiB as header then payload, and its last handshake
    /// message and first request back to back: its second write waits for
    /// the ACK of the first, which the kernel would otherwise delay by
    /// ~40 ms. A frame that arrives whole costs no extra system call.
    /// Nothing happens on unix sockets.
    pub fn set_quickack(&mut self, on: bool) {
        self.quickack = on && self.stream.is_tcp();
        if self.quickack {
            self.stream.quickack();
        }
    }

    /// Makes every read first poll the socket, for up to the limit of
    /// `busy_poll` and only while its measurements favour polling, before it
    /// blocks (`None`, the default: block at once). Reads under a deadline
    /// (authentication) never poll.
    pub fn set_busy_poll(&mut self, busy_poll: Option<BusyPoll>) {
        self.busy_poll = busy_poll;
    }

    /// The busy-polling state set by [`set_busy_poll`](Self::set_busy_poll).
    pub fn busy_poll(&self) -> Option<&BusyPoll> {
        self.busy_poll.as_ref()
    }

    /// [`Stream::connect`] and wrap. No authentication is done.
    pub fn connect(address: &Address, timeout: Option<Duration>) -> Result<Connection> {
        Stream::connect(address, timeout).map(Connection::new)
    }

    /// The underlying stream (to set timeouts, shut down, get the fd).
    /// Reading from or writing to it directly would corrupt the framing.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// True once an error has left the stream mid-frame; the connection can
    /// only be dropped.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Bytes received from the socket but not yet returned by `recv`
    /// (nonzero means a `recv` may complete without blocking).
    pub fn buffered_len(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Sends `payload` as one frame (header and payload in one `writev` call
    /// where the kernel accepts it all).
    ///
    /// A timeout before any byte was written is retryable; after that the
    /// connection is poisoned.
    pub fn send(&mut self, payload: &[u8]) -> Result<()> {
        if self.poisoned {
            return Err(ConnectionError::Poisoned);
        }
        let mut header = [0xffu8; 12];
        let hlen = if payload.len() <= 0x7fff_ffff {
            header[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
            4
        } else {
            header[4..].copy_from_slice(&(payload.len() as u64).to_be_bytes());
            12
        };
        self.write_fully(hlen + payload.len(), |mut stream, written| {
            if written < hlen {
                let bufs = [IoSlice::new(&header[written..hlen]), IoSlice::new(payload)];
                stream.write_vectored(&bufs)
            } else {
                stream.write(&payload[written - hlen..])
            }
        })
    }

    /// Writes `total` bytes, `write(stream, written)` writing from offset
    /// `written` on. The error rules of [`send`](Self::send): a timeout
    /// before any byte is retryable, anything else poisons the connection.
    fn write_fully(
        &mut self,
        total: usize,
        mut write: impl FnMut(&Stream, usize) -> io::Result<usize>,
    ) -> Result<()> {
        let mut written = 0usize;
        while written < total {
            match write(&self.stream, written) {
                Ok(0) => {
                    self.poisoned = true;
                    return Err(ConnectionError::Io(io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let err = map_io(e, "send", written > 0);
                    if written > 0 || !err.is_retryable() {
                        self.poisoned = true;
                    }
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Sends several frames with one `write` (for pipelining: the peer
    /// sees them as if sent one by one, but there is one system call and
    /// one wakeup instead of one per frame). Frames are copied into one
    /// buffer; large payloads go through [`send`](Self::send) one by one.
    ///
    /// Errors as [`send`](Self::send): a timeout before any byte was
    /// written is retryable (nothing was sent); after that the connection
    /// is poisoned.
    ///
    /// ```
    /// use mpmanager_connection::{Connection, Stream};
    /// let (a, b) = Stream::pair().unwrap();
    /// let (mut a, mut b) = (Connection::new(a), Connection::new(b));
    /// a.send_many(&[b"one".as_slice(), b"", b"three"]).unwrap();
    /// assert_eq!(b.recv(10).unwrap(), b"one");
    /// assert_eq!(b.recv(10).unwrap(), b"");
    /// assert_eq!(b.recv(10).unwrap(), b"three");
    /// ```
    pub fn send_many(&mut self, payloads: &[&[u8]]) -> Result<()> {
        if self.poisoned {
            return Err(ConnectionError::Poisoned);
        }
        let total: usize = payloads.iter().map(|p| p.len() + 4).sum();
        if payloads.len() <= 1 || total > READ_BUF_SIZE {
            for p in payloads {
                self.send(p)?;
            }
            return Ok(());
        }
        let mut buf = Vec::with_capacity(total);
        for p in payloads {
            // total ≤ READ_BUF_SIZE: every length fits the short header.
            buf.extend_from_slice(&(p.len() as u32).to_be_bytes());
            buf.extend_from_slice(p);
        }
        self.write_fully(total, |mut stream, written| stream.write(&buf[written..]))
    }

    /// Receives one frame into a new `Vec`. Frames longer than `max_len`
    /// fail with [`ConnectionError::FrameTooLarge`] without being allocated.
    pub fn recv(&mut self, max_len: usize) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.recv_into(&mut v, max_len)?;
        Ok(v)
    }

    /// Receives one frame into `buf` (cleared first, capacity reused).
    ///
    /// Errors: [`Closed`](ConnectionError::Closed) on a clean end of file
    /// before the frame, [`Truncated`](ConnectionError::Truncated) on end of
    /// file inside it, [`BadHeader`](ConnectionError::BadHeader) for a
    /// negative length other than -1, [`FrameTooLarge`](ConnectionError::FrameTooLarge)
    /// over `max_len`, [`Timeout`](ConnectionError::Timeout) if a read timeout
    /// expires (retryable while still waiting for the header).
    pub fn recv_into(&mut self, buf: &mut Vec<u8>, max_len: usize) -> Result<()> {
        buf.clear();
        let n = self.recv_header()?;
        if n > max_len as u64 {
            // The payload is left unread: the stream is mid-frame.
            self.pending = None;
            self.poisoned = true;
            return Err(ConnectionError::FrameTooLarge {
                len: n,
                max: max_len,
            });
        }
        self.recv_payload_into(buf)
    }

    /// The first half of a receive in two steps: reads the next frame's
    /// header and returns its payload length, so that the caller can decide
    /// what to do with a payload before it is read (refuse one that is too
    /// large, wait for memory to hold it). Then either
    /// [`recv_payload_into`](Self::recv_payload_into) reads the payload or
    /// [`skip_payload`](Self::skip_payload) reads and discards it; either
    /// leaves the connection at the next frame, usable.
    ///
    /// Errors as [`recv_into`](Self::recv_into) before the payload. Calling
    /// it again before the payload is read or skipped fails with
    /// [`ConnectionError::Poisoned`].
    ///
    /// ```
    /// use mpmanager_connection::{Connection, Stream};
    /// let (a, b) = Stream::pair().unwrap();
    /// let (mut a, mut b) = (Connection::new(a), Connection::new(b));
    /// a.send(&[1u8; 1000]).unwrap();
    /// a.send(b"next").unwrap();
    /// assert_eq!(b.recv_header().unwrap(), 1000);
    /// b.skip_payload().unwrap();               // too large for us: thrown away
    /// assert_eq!(b.recv_header().unwrap(), 4);
    /// let mut buf = Vec::new();
    /// b.recv_payload_into(&mut buf).unwrap();
    /// assert_eq!(buf, b"next");
    /// ```
    pub fn recv_header(&mut self) -> Result<u64> {
        if self.poisoned || self.pending.is_some() {
            self.poisoned = true;
            return Err(ConnectionError::Poisoned);
        }
        // Nothing is consumed until the header is complete, so a timeout
        // here leaves the connection consistent.
        let r = self.read_header();
        match &r {
            Ok(n) => self.pending = Some(*n),
            Err(e) => self.poison_after(e),
        }
        r
    }

    /// Reads the payload announced by [`recv_header`](Self::recv_header)
    /// into `buf` (cleared first, capacity reused; grown to exactly the
    /// payload's length as it arrives).
    ///
    /// Errors: [`Truncated`](ConnectionError::Truncated) on end of file,
    /// [`Timeout`](ConnectionError::Timeout) (not retryable: the stream is
    /// mid-frame), [`Poisoned`](ConnectionError::Poisoned) without a header
    /// read first.
    pub fn recv_payload_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        let Some(n) = self.pending.take().filter(|_| !self.poisoned) else {
            self.poisoned = true;
            return Err(ConnectionError::Poisoned);
        };
        let r = match usize::try_from(n) {
            Ok(n) => self.read_payload(buf, n),
            Err(_) => Err(ConnectionError::FrameTooLarge {
                len: n,
                max: usize::MAX,
            }),
        };
        if let Err(e) = &r {
            self.poison_after(e);
        }
        r
    }

    /// Reads the payload announced by [`recv_header`](Self::recv_header)
    /// and throws it away, through the connection's own read buffer:
    /// nothing is allocated, however large the frame. The connection is
    /// then at the next frame.
    ///
    /// Errors as [`recv_payload_into`](Self::recv_payload_into).
    pub fn skip_payload(&mut self) -> Result<()> {
        let Some(n) = self.pending.take().filter(|_| !self.poisoned) else {
            self.poisoned = true;
            return Err(ConnectionError::Poisoned);
        };
        let r = self.skip(n);
        if let Err(e) = &r {
            self.poison_after(e);
        }
        r
    }

    fn poison_after(&mut self, e: &ConnectionError) {
        if e.must_reconnect() && !matches!(e, ConnectionError::Closed) {
            self.poisoned = true;
        }
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let mut left = n;
        loop {
            let have = (self.buffered_len() as u64).min(left);
            self.start += have as usize;
            left -= have;
            if left == 0 {
                return Ok(());
            }
            if self.deadline.is_some() {
                // Only auth frames (<= 256 bytes) are read under a deadline.
                return Err(ConnectionError::FrameTooLarge {
                    len: n,
                    max: self.rbuf.len(),
                });
            }
            if self.quickack {
                self.stream.quickack();
            }
            // The read buffer is empty: refill it with up to `left` bytes.
            let want = (left as usize).min(self.rbuf.len()).max(1);
            match self.fill(want.min(self.rbuf.len())) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(ConnectionError::Truncated {
                        expected: n,
                        received: n - left + self.buffered_len() as u64,
                    })
                }
                Err(e) => return Err(map_io(e, "recv", true)),
            }
        }
    }

    /// Reads an `n`-byte payload into `buf`.
    fn read_payload(&mut self, buf: &mut Vec<u8>, n: usize) -> Result<()> {
        let have = self.buffered_len().min(n);
        buf.reserve_exact(n.min(MAX_PREALLOC));
        buf.extend_from_slice(&self.rbuf[self.start..self.start + have]);
        self.start += have;
        let remaining = n - have;
        if remaining == 0 {
            return Ok(());
        }
        // The read buffer is empty now.
        self.start = 0;
        self.end = 0;
        if self.quickack {
            self.stream.quickack();
        }
        if remaining <= self.rbuf.len() {
            match self.fill(remaining) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(ConnectionError::Truncated {
                        expected: n as u64,
                        received: (have + self.end) as u64,
                    })
                }
                Err(e) => return Err(map_io(e, "recv", true)),
            }
            buf.extend_from_slice(&self.rbuf[..remaining]);
            self.start = remaining;
        } else {
            if self.deadline.is_some() {
                // Only auth frames (<= 256 bytes) are read under a deadline.
                return Err(ConnectionError::FrameTooLarge {
                    len: n as u64,
                    max: self.rbuf.len(),
                });
            }
            // Grow the buffer as the bytes arrive (a peer announcing a huge
            // frame must send it), by doubling, but never past `n`.
            while buf.len() < n {
                if buf.len() == buf.capacity() {
                    let more = buf.capacity().max(MAX_PREALLOC).min(n - buf.len());
                    buf.reserve_exact(more);
                }
                let room = buf.capacity().min(n) - buf.len();
                let mut take = (&self.stream).take(room as u64);
                match take.read_to_end(buf) {
                    Ok(0) => {
                        return Err(ConnectionError::Truncated {
                            expected: n as u64,
                            received: buf.len() as u64,
                        })
                    }
                    Ok(_) => {}
                    Err(e) => return Err(map_io(e, "recv", true)),
                }
            }
        }
        Ok(())
    }

    /// Reads and consumes a frame header, returning the payload length.
    fn read_header(&mut self) -> Result<u64> {
        match self.fill(4) {
            Ok(true) => {}
            Ok(false) if self.buffered_len() == 0 => return Err(ConnectionError::Closed),
            Ok(false) => {
                return Err(ConnectionError::Truncated {
                    expected: 4,
                    received: self.buffered_len() as u64,
                })
            }
            Err(e) => return Err(map_io(e, "recv", false)),
        }
        let s = self.start;
        let h = i32::from_be_bytes([
            self.rbuf[s],
            self.rbuf[s + 1],
            self.rbuf[s + 2],
            self.rbuf[s + 3],
        ]);
        if h >= 0 {
            self.start += 4;
            return Ok(h as u64);
        }
        if h != -1 {
            return Err(ConnectionError::BadHeader { header: h });
        }
        match self.fill(12) {
            Ok(true) => {}
            Ok(false) => {
                return Err(ConnectionError::Truncated {
                    expected: 12,
                    received: self.buffered_len() as u64,
                })
            }
            Err(e) => return Err(map_io(e, "recv", false)),
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&self.rbuf[self.start + 4..self.start + 12]);
        self.start += 12;
        Ok(u64::from_be_bytes(len))
    }

    /// Grows the read buffer to its full size once a read has filled it.
    fn grow_if_full(&mut self) {
        if self.end == self.rbuf.len() && self.rbuf.len() < READ_BUF_SIZE {
            let mut bigger = vec![0u8; READ_BUF_SIZE].into_boxed_slice();
            bigger[..self.end - self.start].copy_from_slice(&self.rbuf[self.start..self.end]);
            self.end -= self.start;
            self.start = 0;
            self.rbuf = bigger;
        }
    }

    /// Reads until at least `need` (<= buffer size) bytes are buffered.
    /// `Ok(false)` on end of file first.
    fn fill(&mut self, need: usize) -> io::Result<bool> {
        debug_assert!(need <= self.rbuf.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        while self.end - self.start < need {
            if self.rbuf.len() - self.start < need {
                self.rbuf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if let Some(d) = self.deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                self.stream.set_read_timeout(Some(left))?;
            }
            if self.quickack && self.end > self.start {
                // Part of a header is here; the rest may wait for our ACK.
                self.stream.quickack();
            }
            if let (Some(bp), None) = (self.busy_poll.as_mut(), self.deadline) {
                let fd = self.stream.as_raw_fd();
                match bp.poll(fd, &mut self.rbuf[self.end..], Instant::now())? {
                    Polled::Read(k) => {
                        self.end += k;
                        self.grow_if_full();
                        continue;
                    }
                    Polled::Eof => return Ok(false),
                    Polled::Block => {}
                }
            }
            let r = (&self.stream).read(&mut self.rbuf[self.end..]);
            match r {
                Ok(0) => return Ok(false),
                Ok(k) => {
                    self.end += k;
                    self.grow_if_full();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// A connection whose peer is a raw socket we write bytes to.
    fn raw_peer() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (Connection::new(Stream::from(a)), b)
    }

    #[test]
    fn normal_and_empty_frames() {
        let (a, b) = Stream::pair().unwrap();
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        a.send(b"abc").unwrap();
        a.send(b"").unwrap();
        a.send(b"xyz").unwrap();
        let mut buf = Vec::new();
        b.recv_into(&mut buf, 3).unwrap();
        assert_eq!(buf, b"abc");
        b.recv_into(&mut buf, 0).unwrap();
        assert_eq!(buf, b"");
        b.recv_into(&mut buf, 3).unwrap();
        assert_eq!(buf, b"xyz");
    }

    #[test]
    fn wire_bytes_of_a_frame() {
        let (mut c, mut raw) = raw_peer();
        c.send(b"\x80\x04N.").unwrap();
        c.send(b"").unwrap();
        let mut got = [0u8; 12];
        std::io::Read::read_exact(&mut raw, &mut got).unwrap();
        assert_eq!(got, [0, 0, 0, 4, 0x80, 4, b'N', b'.', 0, 0, 0, 0]);
    }

    #[test]
    fn large_header_form_with_small_payload() {
        let (mut c, mut raw) = raw_peer();
        raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5])
            .unwrap();
        raw.write_all(b"hello").unwrap();
        raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
        raw.write_all(&[0, 0, 0, 1, b'!']).unwrap();
        assert_eq!(c.recv(5).unwrap(), b"hello");
        assert_eq!(c.recv(0).unwrap(), b"");
        assert_eq!(c.recv(1).unwrap(), b"!");
    }

    #[test]
    fn large_header_announcing_more_than_the_limit() {
        let (mut c, mut raw) = raw_peer();
        raw.write_all(&[
            0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ])
        .unwrap();
        let e = c.recv(1 << 40).unwrap_err();
        assert!(
            matches!(
                e,
                ConnectionError::FrameTooLarge {
                    len: 0x7fff_ffff_ffff_ffff,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.must_reconnect());
        assert!(matches!(c.recv(10), Err(ConnectionError::Poisoned)));
        assert!(matches!(c.send(b"x"), Err(ConnectionError::Poisoned)));
    }

    #[test]
    fn huge_frame_without_limit_is_truncated_not_allocated() {
        let (mut c, mut raw) = raw_peer();
        // Announce 2^62 bytes, send 3, hang up: must not try to allocate 2^62.
        raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3])
            .unwrap();
        drop(raw);
        let e = c.recv(NO_LIMIT).unwrap_err();
        assert!(
            matches!(
                e,
                ConnectionError::Truncated {
                    expected: 0x4000_0000_0000_0000,
                    received: 3
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn negative_header_is_rejected() {
        for h in [-2i32, i32::MIN] {
            let (mut c, mut raw) = raw_peer();
            raw.write_all(&h.to_be_bytes()).unwrap();
            let e = c.recv(NO_LIMIT).unwrap_err();
            assert!(
                matches!(e, ConnectionError::BadHeader { header } if header == h),
                "{e:?}"
            );
            assert!(e.must_reconnect());
            assert!(c.is_poisoned());
        }
    }

    #[test]
    fn eof_before_header_is_closed() {
        let (mut c, raw) = raw_peer();
        drop(raw);
        let e = c.recv(10).unwrap_err();
        assert!(matches!(e, ConnectionError::Closed), "{e:?}");
        assert!(e.must_reconnect());
        assert!(matches!(c.recv(10), Err(ConnectionError::Closed)));
    }

    #[test]
    fn truncated_frames() {
        // (bytes written, expected, received)
        let cases: [(&[u8], u64, u64); 4] = [
            (&[0, 0], 4, 2),
            (&[0, 0, 0, 10, 1, 2, 3], 10, 3),
            (&[0xff, 0xff, 0xff, 0xff, 0, 0], 12, 6),
            (&[0, 0, 0x80, 0], 0x8000, 0),
        ];
        for (bytes, expected, received) in cases {
            let (mut c, mut raw) = raw_peer();
            raw.write_all(bytes).unwrap();
            drop(raw);
            let e = c.recv(NO_LIMIT).unwrap_err();
            match e {
                ConnectionError::Truncated {
                    expected: x,
                    received: r,
                } => {
                    assert_eq!((x, r), (expected, received), "{bytes:?}")
                }
                e => panic!("{bytes:?}: {e:?}"),
            }
        }
    }

    #[test]
    fn oversized_vs_cap() {
        let (mut c, mut raw) = raw_peer();
        raw.write_all(&[0, 0, 1, 0]).unwrap(); // 256: exactly the cap
        raw.write_all(&[7u8; 256]).unwrap();
        raw.write_all(&[0, 0, 1, 1]).unwrap(); // 257: over
        assert_eq!(c.recv(256).unwrap(), vec![7u8; 256]);
        let e = c.recv(256).unwrap_err();
        assert!(
            matches!(e, ConnectionError::FrameTooLarge { len: 257, max: 256 }),
            "{e:?}"
        );
        assert!(e.to_string().contains("unusable"));
    }

    /// Frames skipped after their header leave the connection at the next
    /// frame, whatever their size relative to the read buffer.
    #[test]
    fn skipped_payloads_keep_framing() {
        let (a, b) = Stream::pair().unwrap();
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        let sizes = [0, 1, INITIAL_READ_BUF_SIZE + 3, READ_BUF_SIZE + 1, 1 << 20];
        let t = std::thread::spawn(move || {
            for &n in &sizes {
                a.send(&vec![9u8; n]).unwrap();
                a.send(&(n as u32).to_be_bytes()).unwrap();
            }
        });
        let mut buf = Vec::new();
        for &n in &sizes {
            assert_eq!(b.recv_header().unwrap(), n as u64);
            b.skip_payload().unwrap();
            b.recv_into(&mut buf, 4).unwrap();
            assert_eq!(buf, (n as u32).to_be_bytes(), "after skipping {n} bytes");
        }
        t.join().unwrap();
        assert!(!b.is_poisoned());
    }

    #[test]
    fn truncated_skip_and_misuse_poison() {
        let (mut c, mut raw) = raw_peer();
        raw.write_all(&[0, 0, 0x80, 0]).unwrap();
        raw.write_all(&[1u8; 100]).unwrap();
        drop(raw);
        assert_eq!(c.recv_header().unwrap(), 0x8000);
        let e = c.skip_payload().unwrap_err();
        assert!(
            matches!(
                e,
                ConnectionError::Truncated {
                    expected: 0x8000,
                    received: 100
                }
            ),
            "{e:?}"
        );
        assert!(c.is_poisoned());
        // A payload read without a header first is a misuse.
        let (mut c, _raw) = raw_peer();
        assert!(matches!(
            c.recv_payload_into(&mut Vec::new()),
            Err(ConnectionError::Poisoned)
        ));
    }

    #[test]
    fn big_payloads_across_buffer_sizes() {
        let (a, b) = Stream::pair().unwrap();
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        let sizes = [
            1,
            INITIAL_READ_BUF_SIZE - 4,
            INITIAL_READ_BUF_SIZE,
            INITIAL_READ_BUF_SIZE + 1,
            READ_BUF_SIZE - 4,
            READ_BUF_SIZE,
            READ_BUF_SIZE + 1,
            3 * READ_BUF_SIZE + 7,
            1 << 20,
        ];
        let payloads: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| (0..n).map(|i| (i * 31 % 251) as u8).collect())
            .collect();
        let expect = payloads.clone();
        let t = std::thread::spawn(move || {
            for p in &payloads {
                a.send(p).unwrap();
            }
        });
        let mut buf = Vec::new();
        for p in &expect {
            b.recv_into(&mut buf, NO_LIMIT).unwrap();
            assert!(buf == *p, "payload of {} bytes differs", p.len());
        }
        t.join().unwrap();
    }

    #[test]
    fn header_timeout_is_retryable_and_keeps_partial_header() {
        let (mut c, mut raw) = raw_peer();
        c.stream()
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        raw.write_all(&[0, 0]).unwrap();
        let e = c.recv(10).unwrap_err();
        assert!(
            matches!(e, ConnectionError::Timeout { partial: false, .. }),
            "{e:?}"
        );
        assert!(e.is_retryable() && !e.must_reconnect());
        raw.write_all(&[0, 2, b'o', b'k']).unwrap();
        assert_eq!(c.recv(10).unwrap(), b"ok");
        // A timeout inside the payload poisons.
        raw.write_all(&[0, 0, 0, 5, b'a']).unwrap();
        let e = c.recv(10).unwrap_err();
        assert!(
            matches!(e, ConnectionError::Timeout { partial: true, .. }),
            "{e:?}"
        );
        assert!(e.must_reconnect() && !e.is_retryable());
        assert!(c.is_poisoned());
    }

    #[test]
    fn send_many_frames_arrive_in_order_small_and_large() {
        let (a, b) = Stream::pair().unwrap();
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        let small: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; i as usize]).collect();
        let refs: Vec<&[u8]> = small.iter().map(Vec::as_slice).collect();
        a.send_many(&refs).unwrap();
        a.send_many(&[]).unwrap();
        for s in &small {
            assert_eq!(&b.recv(1 << 20).unwrap(), s);
        }
        // Over the one-buffer limit: sent frame by frame (a reader thread,
        // since the socket buffer is smaller than the frames).
        let big = vec![vec![7u8; 40_000], vec![], vec![9u8; 3]];
        let want = big.clone();
        let h = std::thread::spawn(move || {
            (0..3).map(|_| b.recv(1 << 20).unwrap()).collect::<Vec<_>>()
        });
        let refs: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
        a.send_many(&refs).unwrap();
        assert_eq!(h.join().unwrap(), want);
    }

    /// A polling connection sees frames exactly as a blocking one: whole,
    /// split and back-to-back frames, then EOF, whether it polls or sleeps.
    #[test]
    fn busy_poll_keeps_framing() {
        use crate::busy_poll::{BusyPoll, SpinBudget, SAMPLES, SETTLE};
        use std::sync::Arc;
        let (mut c, mut raw) = raw_peer();
        c.set_busy_poll(Some(BusyPoll::new(
            Duration::from_micros(200),
            Arc::new(SpinBudget::new(1)),
        )));
        // Enough waits for a measured blocking phase, a polling one and
        // some of the chosen mode.
        let n = (SETTLE + 4 * SAMPLES) as u32;
        let h = std::thread::spawn(move || {
            for i in 0..n {
                if i % 3 == 0 {
                    raw.write_all(&[0, 0, 0, 4, 0, 0]).unwrap();
                    std::thread::sleep(Duration::from_micros(30));
                    raw.write_all(&i.to_be_bytes()[2..]).unwrap();
                } else {
                    raw.write_all(&[0, 0, 0, 4]).unwrap();
                    raw.write_all(&i.to_be_bytes()).unwrap();
                }
                std::thread::sleep(Duration::from_micros(20));
            }
        });
        for i in 0..n {
            assert_eq!(c.recv(4).unwrap(), i.to_be_bytes(), "frame {i}");
        }
        h.join().unwrap();
        assert!(matches!(c.recv(4), Err(ConnectionError::Closed)));
    }

    /// The read buffer stays small for one frame at a time and grows when
    /// a burst of frames fills it; frames are intact either way.
    #[test]
    fn read_buffer_grows_on_a_burst_only() {
        let (a, b) = Stream::pair().unwrap();
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        a.send(b"one").unwrap();
        assert_eq!(b.recv(16).unwrap(), b"one");
        assert_eq!(b.rbuf.len(), INITIAL_READ_BUF_SIZE);
        let frames: Vec<Vec<u8>> = (0..600u32).map(|i| i.to_be_bytes().repeat(6)).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        a.send_many(&refs).unwrap(); // 600 x 28 bytes, in few writes
        for f in &frames {
            assert_eq!(&b.recv(64).unwrap(), f);
        }
        assert_eq!(b.rbuf.len(), READ_BUF_SIZE);
    }
}
