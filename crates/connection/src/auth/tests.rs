use super::*;
use crate::Stream;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Raw side of a socket pair with helpers to read/write frames by hand.
struct Raw(UnixStream);

impl Raw {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }
    fn send(&mut self, payload: &[u8]) {
        self.write(&frame(payload));
    }
    /// Reads one whole frame including its 4-byte header.
    fn read_frame_bytes(&mut self) -> Vec<u8> {
        let mut h = [0u8; 4];
        self.0.read_exact(&mut h).unwrap();
        let mut v = h.to_vec();
        let n = u32::from_be_bytes(h) as usize;
        let mut p = vec![0u8; n];
        self.0.read_exact(&mut p).unwrap();
        v.extend_from_slice(&p);
        v
    }
    fn recv(&mut self) -> Vec<u8> {
        self.read_frame_bytes()[4..].to_vec()
    }
}

/// Runs `f` on our side of a fresh socket pair in a thread.
fn ours<T: Send + 'static>(
    f: impl FnOnce(&mut Connection) -> T + Send + 'static,
) -> (JoinHandle<T>, Raw) {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h = std::thread::spawn(move || {
        let mut c = Connection::new(Stream::from(a));
        f(&mut c)
    });
    (h, Raw(b))
}

fn nonce40() -> Vec<u8> {
    (0u8..40).collect()
}

fn deliver_fixed(c: &mut Connection, key: &'static [u8]) -> Result<()> {
    let nonce = nonce40();
    with_deadline(c, Some(Duration::from_secs(5)), |c| deliver(c, key, &nonce))
}

const MODERN_SHA256_ANSWER: &str = "00 00 00 28 7b 73 68 61 32 35 36 7d
    fc 57 fb e6 50 d6 12 4b 98 21 5e 7b 5d 19 7d 58
    07 ad 69 98 2d 27 5a 97 35 ea 2d 56 f1 fa 69 89";

fn modern_challenge_frame() -> Vec<u8> {
    let mut p = b"#CHALLENGE#{sha256}".to_vec();
    p.extend_from_slice(&nonce40());
    frame(&p)
}

#[test]
fn modern_worked_example_as_deliverer() {
    let (h, mut raw) = ours(|c| deliver_fixed(c, b"secret"));
    let challenge = raw.read_frame_bytes();
    assert_eq!(challenge[..4], [0, 0, 0, 0x3b]);
    assert_eq!(challenge, modern_challenge_frame());
    raw.write(&hex(MODERN_SHA256_ANSWER));
    assert_eq!(
        raw.read_frame_bytes(),
        hex("00 00 00 09 23 57 45 4c 43 4f 4d 45 23")
    );
    h.join().unwrap().unwrap();
}

#[test]
fn modern_worked_example_as_answerer() {
    let (h, mut raw) = ours(|c| answer_challenge(c, b"secret"));
    raw.write(&modern_challenge_frame());
    assert_eq!(raw.read_frame_bytes(), hex(MODERN_SHA256_ANSWER));
    raw.send(WELCOME);
    h.join().unwrap().unwrap();
}

#[test]
fn legacy_worked_example_as_answerer() {
    let (h, mut raw) = ours(|c| answer_challenge(c, b"secret"));
    let mut ch = CHALLENGE.to_vec();
    ch.extend(0u8..20);
    let f = frame(&ch);
    assert_eq!(f[..4], [0, 0, 0, 0x1f]);
    raw.write(&f);
    assert_eq!(
        raw.read_frame_bytes(),
        hex("00 00 00 10 7d ef a9 cc 46 ab c3 58 33 25 d1 7c cd a7 51 90")
    );
    raw.send(WELCOME);
    h.join().unwrap().unwrap();
}

#[test]
fn legacy_answer_to_modern_challenge_is_accepted() {
    let (h, mut raw) = ours(|c| deliver_fixed(c, b"secret"));
    raw.recv();
    raw.write(&hex(
        "00 00 00 10 8e 48 d2 bb 34 9b 4b 72 b9 38 29 99 ed 5b 62 eb",
    ));
    assert_eq!(raw.recv(), WELCOME);
    h.join().unwrap().unwrap();
}

#[test]
fn every_prefixed_digest_is_accepted() {
    for d in Digest::ALL {
        let (h, mut raw) = ours(|c| deliver_fixed(c, b"secret"));
        let ch = raw.recv();
        let message = &ch[CHALLENGE.len()..];
        let mut answer = format!("{{{}}}", d.name()).into_bytes();
        answer.extend_from_slice(&d.hmac(b"secret", message));
        if d == Digest::Md5 {
            assert_eq!(answer.len(), 21);
        }
        raw.send(&answer);
        assert_eq!(raw.recv(), WELCOME, "{d:?}");
        h.join().unwrap().unwrap();
    }
}

#[test]
fn md5_answer_uses_md5_for_the_whole_message() {
    // An {md5} answer over the nonce only (without the {sha256} prefix) is wrong.
    let (h, mut raw) = ours(|c| deliver_fixed(c, b"secret"));
    raw.recv();
    let mut answer = b"{md5}".to_vec();
    answer.extend_from_slice(&Digest::Md5.hmac(b"secret", &nonce40()));
    raw.send(&answer);
    assert_eq!(raw.recv(), FAILURE);
    let e = h.join().unwrap().unwrap_err();
    assert!(
        matches!(
            e,
            ConnectionError::AuthenticationFailed {
                reason: AuthFailure::DigestWrong
            }
        ),
        "{e:?}"
    );
}

#[test]
fn twenty_byte_answer_is_rejected() {
    let (h, mut raw) = ours(|c| deliver_fixed(c, b"secret"));
    raw.recv();
    raw.send(&[0u8; 20]);
    assert_eq!(raw.recv(), FAILURE);
    let e = h.join().unwrap().unwrap_err();
    assert!(
        matches!(
            e,
            ConnectionError::AuthenticationFailed {
                reason: AuthFailure::DigestLength {
                    digest: "md5",
                    expected: 16,
                    got: 20
                }
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "authentication failed: expected 'md5' of length 16 got 20"
    );
    assert!(e.must_reconnect() && e.is_auth_failure());
}

#[test]
fn unprefixed_or_unknown_digest_answer_is_rejected() {
    for answer in [
        vec![1u8; 32],
        b"{sha1}0123456789012345678901234567890123456".to_vec(),
        b"{sha256".to_vec(),
        b"{sha256}".to_vec(), // right prefix, empty MAC: wrong length
    ] {
        let (h, mut raw) = ours(|c| deliver_fixed(c, b"secret"));
        raw.recv();
        raw.send(&answer);
        assert_eq!(raw.recv(), FAILURE);
        let e = h.join().unwrap().unwrap_err();
        assert!(
            matches!(e, ConnectionError::AuthenticationFailed { .. }),
            "{e:?}"
        );
    }
}

#[test]
fn wrong_key_fails_on_both_sides() {
    let (s, c) = Stream::pair().unwrap();
    let server =
        std::thread::spawn(move || server_handshake(&mut Connection::new(s), b"server-key"));
    let ce = client_handshake(&mut Connection::new(c), b"client-key").unwrap_err();
    let se = server.join().unwrap().unwrap_err();
    assert!(
        matches!(
            se,
            ConnectionError::AuthenticationFailed {
                reason: AuthFailure::DigestWrong
            }
        ),
        "{se:?}"
    );
    assert!(
        matches!(
            ce,
            ConnectionError::AuthenticationFailed {
                reason: AuthFailure::DigestRejected
            }
        ),
        "{ce:?}"
    );
}

#[test]
fn right_key_and_empty_key_succeed() {
    for key in [&b"k"[..], b"", &[0xaa; 100]] {
        let (s, c) = Stream::pair().unwrap();
        let k = key.to_vec();
        let server = std::thread::spawn(move || server_handshake(&mut Connection::new(s), &k));
        client_handshake(&mut Connection::new(c), key).unwrap();
        server.join().unwrap().unwrap();
    }
}

#[test]
fn malformed_challenges() {
    let mut long = b"#CHALLENGE#".to_vec();
    long.extend_from_slice(&[b'x'; 300]);
    let cases: Vec<Vec<u8>> = vec![
        b"#CHALLENGX#01234567890123456789".to_vec(),
        b"#CHALLENGE#0123456789012345678".to_vec(), // 19 bytes: too short
        b"#CHALLENGE#{sha1}01234567890123456789".to_vec(), // unknown digest
        b"#CHALLENGE#{sha256123456789}0123456789".to_vec(), // no '}' within 10 bytes
        b"#CHALLENGE#012345678901234567890".to_vec(), // 21 bytes, no prefix
        long,                                       // over the 256-byte cap
    ];
    for (i, ch) in cases.into_iter().enumerate() {
        let (h, mut raw) = ours(|c| answer_challenge(c, b"secret"));
        raw.send(&ch);
        let e = h.join().unwrap().unwrap_err();
        if i == 5 {
            assert!(
                matches!(e, ConnectionError::FrameTooLarge { len: 311, max: 256 }),
                "{e:?}"
            );
        } else {
            assert!(
                matches!(e, ConnectionError::BadChallenge { .. }),
                "case {i}: {e:?}"
            );
        }
        assert!(e.must_reconnect());
    }
}

#[test]
fn answerer_requires_welcome() {
    for verdict in [FAILURE, b"#WELCOME", b"#WELCOME##"] {
        let (h, mut raw) = ours(|c| answer_challenge(c, b"secret"));
        raw.write(&modern_challenge_frame());
        raw.recv();
        raw.send(verdict);
        let e = h.join().unwrap().unwrap_err();
        assert!(
            matches!(
                e,
                ConnectionError::AuthenticationFailed {
                    reason: AuthFailure::DigestRejected
                }
            ),
            "{e:?}"
        );
    }
}

#[test]
fn silent_peer_times_out_and_timeouts_are_restored() {
    let (h, raw) = ours(|c| {
        c.stream()
            .set_read_timeout(Some(Duration::from_secs(42)))
            .unwrap();
        let t0 = Instant::now();
        let r = server_handshake_timeout(c, b"k", Some(Duration::from_millis(200)));
        (
            r,
            t0.elapsed(),
            c.stream().read_timeout().unwrap(),
            c.stream().write_timeout().unwrap(),
            c.is_poisoned(),
        )
    });
    let (r, elapsed, rt, wt, poisoned) = h.join().unwrap();
    drop(raw);
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            ConnectionError::Timeout {
                operation: "authentication handshake",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.must_reconnect() && !e.is_retryable());
    assert!(
        elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(rt, Some(Duration::from_secs(42)));
    assert_eq!(wt, None);
    assert!(poisoned);
}

#[test]
fn slow_drip_peer_cannot_exceed_the_deadline() {
    // The peer answers each step just before a per-read timeout would fire;
    // only a whole-handshake deadline stops it.
    let (h, mut raw) = ours(|c| {
        let t0 = Instant::now();
        (
            with_deadline(c, Some(Duration::from_millis(300)), |c| answer(c, b"k")),
            t0.elapsed(),
        )
    });
    let mut ch = modern_challenge_frame();
    // Drip the challenge one byte every 50 ms: 63 bytes = ~3 s.
    let mut sent = 0;
    for b in ch.drain(..) {
        if raw.0.write_all(&[b]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
        if sent > 20 {
            break;
        }
    }
    let (r, elapsed) = h.join().unwrap();
    assert!(matches!(r, Err(ConnectionError::Timeout { .. })), "{r:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[test]
fn split_digest_matches_cpython() {
    assert_eq!(split_digest(&[0; 16]), Ok((None, &[0u8; 16][..])));
    assert_eq!(split_digest(&[0; 20]), Ok((None, &[0u8; 20][..])));
    assert_eq!(
        split_digest(b"{sha3_384}xyz"),
        Ok((Some(Digest::Sha3_384), &b"xyz"[..]))
    );
    assert_eq!(split_digest(b"{md5}"), Ok((Some(Digest::Md5), &b""[..])));
    assert!(split_digest(b"{MD5}abc").is_err());
    assert!(split_digest(b"{}abc").is_err());
    assert!(split_digest(b"").is_err());
    assert!(split_digest(b"{").is_err());
}
