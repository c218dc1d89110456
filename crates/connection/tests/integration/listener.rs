//! Listener and Stream behaviour on real sockets (no Python needed).

use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::time::Duration;

use mpmanager_connection::{Address, Connection, ConnectionError, Listener, Stream};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mpm-conn-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn echo_once(listener: &Listener) {
    let addr = listener.local_address().clone();
    let t = std::thread::spawn(move || {
        let mut c = Connection::connect(&addr, Some(Duration::from_secs(5))).unwrap();
        c.stream()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        c.send(b"ping").unwrap();
        c.recv(16).unwrap()
    });
    let s = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut s = Connection::new(s);
    let m = s.recv(16).unwrap();
    s.send(&m).unwrap();
    assert_eq!(t.join().unwrap(), b"ping");
}

#[test]
fn tcp_port_zero_reports_real_port() {
    let l = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let Address::Tcp(sa) = l.local_address() else {
        panic!()
    };
    assert_ne!(sa.port(), 0);
    assert_eq!(
        l.local_address().python_repr(),
        format!("('127.0.0.1', {})", sa.port())
    );
    echo_once(&l);
    // The accepted/connected TCP streams have TCP_NODELAY.
    let addr = l.local_address().clone();
    let c = Stream::connect(&addr, None).unwrap();
    let s = l.accept().unwrap();
    assert!(c.is_tcp() && s.is_tcp());
    let fd = socket2::SockRef::from(&c);
    assert!(fd.nodelay().unwrap());
    assert!(socket2::SockRef::from(&s).nodelay().unwrap());
}

#[test]
fn ipv6_loopback_if_available() {
    let Ok(l) = Listener::bind(&"[::1]:0".parse().unwrap()) else {
        eprintln!("skipping: ::1 unavailable");
        return;
    };
    echo_once(&l);
}

#[test]
fn abstract_socket() {
    let name = format!("mpm-conn-test-{}", std::process::id());
    let addr: Address = format!("unix:@{name}").parse().unwrap();
    let l = Listener::bind(&addr).unwrap();
    assert_eq!(l.local_address(), &addr);
    echo_once(&l);
    // A second bind to the same name fails.
    let e = Listener::bind(&addr).unwrap_err();
    assert!(matches!(e, ConnectionError::Bind { .. }), "{e:?}");
}

#[test]
fn unix_path_lifecycle() {
    let dir = temp_dir("path");
    let path = dir.join("sock");
    let addr = Address::Unix(path.clone());

    let l = Listener::bind(&addr).unwrap();
    echo_once(&l);
    // A live socket is not clobbered.
    let e = Listener::bind(&addr).unwrap_err();
    assert!(
        matches!(&e, ConnectionError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse),
        "{e:?}"
    );
    assert!(path.exists());
    drop(l);
    assert!(!path.exists(), "Drop unlinks the socket file");

    // A stale socket file (nobody listening) is replaced.
    drop(StdUnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let l = Listener::bind(&addr).unwrap();
    echo_once(&l);

    // Drop does not unlink a file that replaced ours.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"not ours").unwrap();
    drop(l);
    assert_eq!(std::fs::read(&path).unwrap(), b"not ours");

    // A regular file is refused, not removed.
    let e = Listener::bind(&addr).unwrap_err();
    assert!(matches!(e, ConnectionError::Bind { .. }), "{e:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not ours");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn connect_failures_are_retryable() {
    let dir = temp_dir("refused");
    // Missing unix socket: NotFound.
    let e = Stream::connect(
        &Address::Unix(dir.join("none")),
        Some(Duration::from_secs(1)),
    )
    .unwrap_err();
    assert!(e.is_retryable() && !e.must_reconnect(), "{e:?}");
    // Stale unix socket: refused.
    let p = dir.join("stale");
    drop(StdUnixListener::bind(&p).unwrap());
    let e = Stream::connect(&Address::Unix(p), None).unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    // Closed TCP port: refused.
    let l = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_address().clone();
    drop(l);
    let e = Stream::connect(&addr, Some(Duration::from_secs(1))).unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(matches!(
        Stream::connect(&addr, Some(Duration::ZERO)),
        Err(ConnectionError::InvalidTimeout(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shutdown_from_clone_wakes_reader() {
    let (a, _b) = Stream::pair().unwrap();
    let clone = a.try_clone().unwrap();
    let t = std::thread::spawn(move || Connection::new(a).recv(10));
    std::thread::sleep(Duration::from_millis(50));
    clone.shutdown(std::net::Shutdown::Both).unwrap();
    let r = t.join().unwrap();
    assert!(matches!(r, Err(ConnectionError::Closed)), "{r:?}");
}
