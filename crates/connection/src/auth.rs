//! The `multiprocessing.connection` HMAC challenge/response handshake
//! (docs/PROTOCOL.md §2), compatible with CPython 3.8 – 3.14 on either side.
//!
//! One half-handshake: the *deliverer* sends `#CHALLENGE#` + message, the
//! *answerer* replies with a MAC of the message under the shared authkey, the
//! deliverer replies `#WELCOME#` or `#FAILURE#`. A manager runs it both ways on
//! every connection: the server with [`server_handshake`] (deliver, then
//! answer), the client with [`client_handshake`] (answer, then deliver; this is
//! also what CPython's `multiprocessing.connection.Client(authkey=…)` does).
//!
//! We always deliver the modern challenge `{sha256}` + 40 random bytes, and
//! accept every answer CPython 3.8+ can give (raw 16-byte HMAC-MD5, or a
//! `{md5|sha256|sha384|sha3_256|sha3_384}`-prefixed MAC, always over the whole
//! message). As answerer we follow CPython 3.12 exactly: a 20-byte (legacy,
//! CPython ≤ 3.11) challenge gets a raw HMAC-MD5, a prefixed one a prefixed MAC.
//! Auth frames are read with a 256-byte cap.
//!
//! Each public function bounds the whole exchange by a deadline (default
//! [`DEFAULT_HANDSHAKE_TIMEOUT`]) using the socket's read and write timeouts,
//! which are restored afterwards. Any failure poisons the connection.
//!
//! ```
//! use mpmanager_connection::{auth, Connection, Stream};
//!
//! let (s, c) = Stream::pair().unwrap();
//! let server = std::thread::spawn(move || {
//!     let mut s = Connection::new(s);
//!     auth::server_handshake(&mut s, b"secret").map(|_| s)
//! });
//! let mut c = Connection::new(c);
//! auth::client_handshake(&mut c, b"secret").unwrap();
//! let mut s = server.join().unwrap().unwrap();
//! c.send(b"ping").unwrap();
//! assert_eq!(s.recv(100).unwrap(), b"ping");
//! ```

use std::time::{Duration, Instant};

use hmac::{Mac, SimpleHmac};
use subtle::ConstantTimeEq;

use crate::connection::Connection;
use crate::error::{AuthFailure, ConnectionError, Result};

/// `#CHALLENGE#`
pub const CHALLENGE: &[u8] = b"#CHALLENGE#";
/// `#WELCOME#`
pub const WELCOME: &[u8] = b"#WELCOME#";
/// `#FAILURE#`
pub const FAILURE: &[u8] = b"#FAILURE#";
/// Largest frame read during authentication (CPython's `recv_bytes(256)`).
pub const AUTH_MAX_FRAME: usize = 256;
/// Random bytes in a challenge we deliver (CPython 3.12+'s `MESSAGE_LENGTH`).
pub const NONCE_LEN: usize = 40;
/// Default deadline for a whole handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Challenge lengths (and unprefixed answer lengths) meaning "legacy HMAC-MD5".
const LEGACY_LENGTHS: [usize; 2] = [20, 16];
/// Longest allowed digest name (`sha3_256`).
const MAX_DIGEST_NAME_LEN: usize = 8;

/// The HMAC digests CPython accepts in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digest {
    /// HMAC-MD5 (16 bytes); the legacy default.
    Md5,
    /// HMAC-SHA256 (32 bytes); what modern deliverers ask for.
    Sha256,
    /// HMAC-SHA384 (48 bytes).
    Sha384,
    /// HMAC-SHA3-256 (32 bytes).
    Sha3_256,
    /// HMAC-SHA3-384 (48 bytes).
    Sha3_384,
}

impl Digest {
    /// All allowed digests.
    pub const ALL: [Digest; 5] = [
        Digest::Md5,
        Digest::Sha256,
        Digest::Sha384,
        Digest::Sha3_256,
        Digest::Sha3_384,
    ];

    /// The name used in `{name}` prefixes (`hashlib` name).
    pub fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
            Digest::Sha3_256 => "sha3_256",
            Digest::Sha3_384 => "sha3_384",
        }
    }

    /// The digest with this `{name}`, if allowed.
    pub fn from_name(name: &[u8]) -> Option<Digest> {
        Digest::ALL
            .into_iter()
            .find(|d| d.name().as_bytes() == name)
    }

    /// `HMAC-<digest>(key, message)`.
    pub fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<D: hmac::digest::Digest + hmac::digest::core_api::BlockSizeUser>(
            key: &[u8],
            message: &[u8],
        ) -> Vec<u8> {
            let mut m = <SimpleHmac<D> as Mac>::new_from_slice(key)
                .expect("HMAC accepts keys of any length");
            m.update(message);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Md5 => run::<md5::Md5>(key, message),
            Digest::Sha256 => run::<sha2::Sha256>(key, message),
            Digest::Sha384 => run::<sha2::Sha384>(key, message),
            Digest::Sha3_256 => run::<sha3::Sha3_256>(key, message),
            Digest::Sha3_384 => run::<sha3::Sha3_384>(key, message),
        }
    }
}

/// CPython's `_get_digest_name_and_payload`: `None` digest = legacy (16 or
/// 20 bytes, raw MD5); `Err` = no valid prefix.
fn split_digest(message: &[u8]) -> std::result::Result<(Option<Digest>, &[u8]), ()> {
    if LEGACY_LENGTHS.contains(&message.len()) {
        return Ok((None, message));
    }
    if message.first() != Some(&b'{') {
        return Err(());
    }
    // message.find(b'}', 1, MAX_DIGEST_NAME_LEN + 2)
    let end = message.len().min(MAX_DIGEST_NAME_LEN + 2);
    let curly = message[1..end].iter().position(|&b| b == b'}').ok_or(())? + 1;
    let digest = Digest::from_name(&message[1..curly]).ok_or(())?;
    Ok((Some(digest), &message[curly + 1..]))
}

/// The answer to challenge message `message` (bytes after `#CHALLENGE#`),
/// exactly as CPython 3.12's `_create_response`.
fn create_response(key: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    if message.len() < 20 {
        return Err(ConnectionError::BadChallenge {
            reason: format!("challenge too short: {} bytes", message.len()),
        });
    }
    match split_digest(message) {
        Ok((None, _)) => Ok(Digest::Md5.hmac(key, message)),
        Ok((Some(d), _)) => {
            let mut r = Vec::with_capacity(2 + d.name().len() + 48);
            r.push(b'{');
            r.extend_from_slice(d.name().as_bytes());
            r.push(b'}');
            r.extend_from_slice(&d.hmac(key, message));
            Ok(r)
        }
        Err(()) => Err(ConnectionError::BadChallenge {
            reason: "unsupported message length, missing digest prefix, or unsupported digest"
                .into(),
        }),
    }
}

/// CPython 3.12's `_verify_challenge`: is `response` a valid answer to our
/// challenge `message`?
fn verify_response(
    key: &[u8],
    message: &[u8],
    response: &[u8],
) -> std::result::Result<(), AuthFailure> {
    let (digest, mac) = split_digest(response).map_err(|()| AuthFailure::UnsupportedDigest)?;
    let digest = digest.unwrap_or(Digest::Md5);
    let expected = digest.hmac(key, message);
    if expected.len() != mac.len() {
        return Err(AuthFailure::DigestLength {
            digest: digest.name(),
            expected: expected.len(),
            got: mac.len(),
        });
    }
    if bool::from(expected.ct_eq(mac)) {
        Ok(())
    } else {
        Err(AuthFailure::DigestWrong)
    }
}

/// Applies the deadline to the socket and restores the old timeouts on drop.
struct Deadline {
    saved: Option<(Option<Duration>, Option<Duration>)>,
}

impl Deadline {
    /// Starts the deadline: the write timeout becomes the whole budget, and
    /// the connection gives each read the time left.
    fn start(conn: &mut Connection, timeout: Option<Duration>) -> Result<Deadline> {
        let Some(t) = timeout else {
            return Ok(Deadline { saved: None });
        };
        if t.is_zero() {
            return Err(ConnectionError::InvalidTimeout(t));
        }
        let s = conn.stream();
        let saved = (s.read_timeout()?, s.write_timeout()?);
        s.set_write_timeout(Some(t))?;
        conn.set_deadline(Some(Instant::now() + t));
        Ok(Deadline { saved: Some(saved) })
    }

    fn restore(self, conn: &mut Connection) {
        if let Some((r, w)) = self.saved {
            conn.set_deadline(None);
            let s = conn.stream();
            if let Err(e) = s.set_read_timeout(r).and_then(|()| s.set_write_timeout(w)) {
                tracing::debug!("cannot restore socket timeouts after handshake: {e}");
            }
        }
    }
}

fn timeout() -> ConnectionError {
    ConnectionError::Timeout {
        operation: "authentication handshake",
        partial: true,
    }
}

/// Runs `f` under a deadline; any error poisons the connection.
fn with_deadline(
    conn: &mut Connection,
    timeout_: Option<Duration>,
    f: impl FnOnce(&mut Connection) -> Result<()>,
) -> Result<()> {
    let deadline = Deadline::start(conn, timeout_)?;
    let r = f(conn).map_err(|e| match e {
        ConnectionError::Timeout { .. } => timeout(),
        e => e,
    });
    deadline.restore(conn);
    if let Err(e) = &r {
        tracing::debug!("authentication handshake ended: {e}");
        conn.poison();
    }
    r
}

fn deliver(conn: &mut Connection, key: &[u8], nonce: &[u8]) -> Result<()> {
    let mut frame = Vec::with_capacity(CHALLENGE.len() + 8 + nonce.len());
    frame.extend_from_slice(CHALLENGE);
    frame.extend_from_slice(b"{sha256}");
    frame.extend_from_slice(nonce);
    conn.send(&frame)?;
    let message = &frame[CHALLENGE.len()..];
    let response = conn.recv(AUTH_MAX_FRAME)?;
    match verify_response(key, message, &response) {
        Ok(()) => conn.send(WELCOME),
        Err(reason) => {
            let _ = conn.send(FAILURE);
            Err(ConnectionError::AuthenticationFailed { reason })
        }
    }
}

fn answer(conn: &mut Connection, key: &[u8]) -> Result<()> {
    let challenge = conn.recv(AUTH_MAX_FRAME)?;
    let message =
        challenge
            .strip_prefix(CHALLENGE)
            .ok_or_else(|| ConnectionError::BadChallenge {
                reason: "protocol error, expected #CHALLENGE#".into(),
            })?;
    let response = create_response(key, message)?;
    conn.send(&response)?;
    let verdict = conn.recv(AUTH_MAX_FRAME)?;
    if verdict == WELCOME {
        Ok(())
    } else {
        Err(ConnectionError::AuthenticationFailed {
            reason: AuthFailure::DigestRejected,
        })
    }
}

fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)
        .map_err(|e| ConnectionError::Io(std::io::Error::other(format!("getrandom: {e}"))))?;
    Ok(nonce)
}

/// Deliverer half: send a `{sha256}` challenge, check the answer, reply
/// `#WELCOME#` or `#FAILURE#` (and then fail with
/// [`AuthenticationFailed`](ConnectionError::AuthenticationFailed)).
pub fn deliver_challenge(conn: &mut Connection, key: &[u8]) -> Result<()> {
    let nonce = random_nonce()?;
    with_deadline(conn, Some(DEFAULT_HANDSHAKE_TIMEOUT), |c| {
        deliver(c, key, &nonce)
    })
}

/// Answerer half: MAC the peer's challenge, send it, expect `#WELCOME#`.
pub fn answer_challenge(conn: &mut Connection, key: &[u8]) -> Result<()> {
    with_deadline(conn, Some(DEFAULT_HANDSHAKE_TIMEOUT), |c| answer(c, key))
}

/// Server side of mutual authentication (deliver, then answer), with the
/// default deadline.
pub fn server_handshake(conn: &mut Connection, key: &[u8]) -> Result<()> {
    server_handshake_timeout(conn, key, Some(DEFAULT_HANDSHAKE_TIMEOUT))
}

/// Client side of mutual authentication (answer, then deliver), with the
/// default deadline.
pub fn client_handshake(conn: &mut Connection, key: &[u8]) -> Result<()> {
    client_handshake_timeout(conn, key, Some(DEFAULT_HANDSHAKE_TIMEOUT))
}

/// [`server_handshake`] with a chosen deadline for the whole exchange
/// (`None`: no deadline; the socket's own timeouts apply).
pub fn server_handshake_timeout(
    conn: &mut Connection,
    key: &[u8],
    timeout: Option<Duration>,
) -> Result<()> {
    server_handshake_verified(conn, key, timeout, || {})
}

/// [`server_handshake_timeout`], calling `verified` as soon as the peer
/// has answered our challenge correctly (it has the key), before the
/// second half (we answer the peer's challenge). A server uses it to stop
/// counting the connection as unauthenticated one round trip earlier.
pub fn server_handshake_verified(
    conn: &mut Connection,
    key: &[u8],
    timeout: Option<Duration>,
    verified: impl FnOnce(),
) -> Result<()> {
    let nonce = random_nonce()?;
    with_deadline(conn, timeout, |c| {
        deliver(c, key, &nonce)?;
        verified();
        answer(c, key)
    })
}

/// [`client_handshake`] with a chosen deadline for the whole exchange
/// (`None`: no deadline; the socket's own timeouts apply).
pub fn client_handshake_timeout(
    conn: &mut Connection,
    key: &[u8],
    timeout: Option<Duration>,
) -> Result<()> {
    let nonce = random_nonce()?;
    with_deadline(conn, timeout, |c| {
        answer(c, key)?;
        deliver(c, key, &nonce)
    })
}

#[cfg(test)]
mod tests;
