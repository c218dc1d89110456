//! `mpmanager serve`: run a manager server.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mpmanager_connection::Address;
use mpmanager_server::{Serializer, Server, ServerConfig, SharedObject};

/// Environment variable holding the authkey (its UTF-8 bytes).
pub const AUTHKEY_ENV: &str = "MPMANAGER_AUTHKEY";

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The long help of `mpmanager serve`.
pub const LONG_ABOUT: &str = "\
Run a manager server that CPython's multiprocessing clients can use.

From Python:

  from multiprocessing.managers import SyncManager
  m = SyncManager(address=('127.0.0.1', 50000), authkey=KEY)
  m.connect()
  ns = m.Namespace(); l = m.list([1, 2]); d = m.dict()
  q = m.Queue(); q.put('job'); e = m.Event(); e.set()

The authkey comes from the environment variable MPMANAGER_AUTHKEY (its
UTF-8 bytes) or from --authkey-file (the file's exact bytes); it is never
taken from the command line nor logged. With neither, a random key is
generated and printed once on stderr. An empty key (MPMANAGER_AUTHKEY
set from an unset variable, an empty key file) is an error unless
--allow-empty-authkey is given.

Only authenticated connections count toward --max-connections; a client
over it gets ConnectionRefusedError naming the limit. Connections still
authenticating are bounded apart (--max-pending-handshakes, with
--handshake-timeout), so a peer without the key cannot keep clients out.

Proxies that come back inside other objects (nested proxies) are rebuilt
by the client with its process key: set
multiprocessing.current_process().authkey = KEY in clients too.

The server stops (exit status 0) when a client calls shutdown, or on
SIGTERM / SIGINT.";

/// Options of `mpmanager serve`.
// The field docs are the CLI help: `[:TYPECODE]` and `[::1]` are not links.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Where to listen: HOST:PORT (e.g. 127.0.0.1:50000, [::1]:50000, port 0
    /// for any free port), unix:/path/to/socket, or unix:@name (Linux
    /// abstract socket).
    #[arg(long, short, default_value = "127.0.0.1:50000", value_name = "ADDR")]
    address: String,

    /// Read the authkey from this file (raw bytes, used exactly as stored,
    /// no newline stripping). Takes precedence over MPMANAGER_AUTHKEY.
    #[arg(long, value_name = "PATH")]
    authkey_file: Option<PathBuf>,

    /// Register a named shared object: every client calling NAME() gets the
    /// same object. TYPE is list, dict, set, Namespace, Value[:TYPECODE],
    /// Array[:TYPECODE[:LEN]], Queue[:MAXSIZE], JoinableQueue[:MAXSIZE],
    /// Event, Lock, RLock, Semaphore[:VALUE], BoundedSemaphore[:VALUE],
    /// Condition or Barrier:PARTIES. Repeatable. Python side:
    /// SyncManager.register('NAME', proxytype=ListProxy) (AcquirerProxy for
    /// the locks and semaphores, ConditionProxy, BarrierProxy), or
    /// BaseManager.register('get_queue') for a queue (an AutoProxy).
    #[arg(long = "object", value_name = "NAME=TYPE")]
    objects: Vec<String>,

    /// Seconds a new connection has to complete authentication.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    handshake_timeout: f64,

    /// Most authenticated connections open at once. Connections still in
    /// the handshake do not count; a client over the limit gets
    /// ConnectionRefusedError naming it.
    #[arg(long, default_value_t = mpmanager_server::DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one)]
    max_connections: usize,

    /// Most connections in the authentication handshake at once; at the
    /// limit a new connection evicts the oldest pending one (whose socket
    /// is held open, without a thread, until its deadline), so a peer
    /// without the key holding sockets open cannot keep clients out.
    #[arg(long, value_name = "N", default_value_t = mpmanager_server::DEFAULT_MAX_PENDING_HANDSHAKES, value_parser = at_least_one)]
    max_pending_handshakes: usize,

    /// Serve with an empty authkey (MPMANAGER_AUTHKEY set to "" or an empty
    /// --authkey-file), which lets anyone who can connect use the server.
    /// Without this flag an empty key is an error. Never allowed on a
    /// non-loopback TCP address.
    #[arg(long)]
    allow_empty_authkey: bool,

    /// Largest request accepted, in bytes (suffixes K, M, G, KiB, MiB, GiB
    /// are binary: 8M = 8MiB). A larger request is read and thrown away and
    /// its client gets a MemoryError naming this flag (a RemoteError in
    /// Python); its connection and proxy keep working.
    #[arg(long, default_value = "1GiB", value_name = "BYTES", value_parser = parse_size)]
    max_frame: usize,

    /// Memory that requests being received and decoded at once may hold
    /// together (their frames and what decoding allocates). A request that
    /// would go over it waits up to --request-memory-wait, then fails with
    /// a MemoryError naming this flag; so does one needing more than all of
    /// it (a bytes value takes about twice its size: frame and copy). Peak
    /// memory is about the server's data plus this. Stored values are not
    /// counted, as in CPython.
    #[arg(long, default_value = "2304MiB", value_name = "BYTES", value_parser = parse_size)]
    max_request_memory: usize,

    /// Seconds a request may wait for --max-request-memory.
    #[arg(long, default_value_t = mpmanager_server::DEFAULT_REQUEST_MEMORY_WAIT.as_secs_f64(), value_name = "SECS")]
    request_memory_wait: f64,

    /// Decoding a request may allocate at most N times its size plus 64
    /// MiB; more fails that request with a MemoryError naming this flag.
    /// bytes and str cost about 1x their size, lists and dicts of small
    /// items 10-30x, a list of empty lists up to ~60x.
    #[arg(long, value_name = "N", default_value_t = mpmanager_server::DEFAULT_DECODE_FACTOR)]
    decode_factor: usize,

    /// Busy-poll for up to MICROS microseconds for a client's next request
    /// before sleeping (0, the default: never). Each connection polls only
    /// while that measurably shortens its client's round trips, and only
    /// with an idle CPU to spare. Makes tight loops of Python clients
    /// faster on VMs with slow wake-ups (try 50), at the cost of CPU time.
    #[arg(long, value_name = "MICROS", default_value_t = mpmanager_server::DEFAULT_BUSY_POLL.as_micros() as u64)]
    busy_poll_us: u64,

    /// When a client's connection closes, also release the plain Locks it
    /// acquired and the Semaphore permits it took and did not give back
    /// (RLocks and Condition locks are always released: nobody else
    /// could). Off by default: CPython lets one process release a Lock
    /// that another acquired.
    #[arg(long)]
    release_on_disconnect: bool,

    /// Print the bound address on stdout, alone on one line, once listening
    /// (in the --address syntax, with the real port), for scripts; if it
    /// cannot listen, print `error errno=N` (the OS error number) instead.
    #[arg(long)]
    print_address: bool,

    /// Log filter (error, warn, info, debug, trace, or a tracing directive
    /// like mpmanager_server=debug). Default: RUST_LOG, else info.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,

    /// The message codec, as CPython's BaseManager(serializer=...): pickle,
    /// or xmlrpclib for clients made with serializer='xmlrpclib' (CPython's
    /// remote-manager tests). Every client must use the same.
    #[arg(long, default_value = "pickle", value_name = "NAME", value_parser = parse_serializer)]
    serializer: Serializer,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Print no banner lines on stderr (where it serves, its shared
    /// objects, "stopped"); log lines still follow --log-level. For
    /// programs that start the server themselves, such as the Python
    /// package's `mpmanager.Manager()`.
    #[arg(long, short)]
    quiet: bool,

    /// Keep serving on SIGINT (stop only on SIGTERM or a client's
    /// shutdown), as CPython's manager process does since bpo-36368, so
    /// that Ctrl-C in the program that started the server does not take
    /// the shared objects away mid-cleanup.
    #[arg(long)]
    ignore_sigint: bool,

    /// Stop (as on SIGTERM) once process PID is no longer this server's
    /// parent, i.e. when the program that started the server has died
    /// without shutting it down (checked twice a second). The Python
    /// package passes its own pid, so a killed program leaves no server
    /// behind.
    #[arg(long, value_name = "PID")]
    parent_pid: Option<u32>,

    /// Stop (as on SIGTERM) as soon as descriptor FD, the read end of a
    /// pipe, reaches end of file: when every copy of the write end is
    /// closed, which the kernel does when the program holding it exits,
    /// however it dies. The Python package keeps the write end open for
    /// its lifetime.
    #[arg(long, value_name = "FD")]
    parent_fd: Option<i32>,
}

/// The OS error number of a failure to listen, if that is what `e` is.
fn bind_errno(e: &mpmanager_server::ServerError) -> Option<i32> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        source = err.source();
    }
    None
}

/// A count that must be at least 1 (`--max-connections 0` would refuse
/// everyone).
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A byte count: digits and an optional binary suffix (K, M, G, KiB, MiB,
/// GiB; case-insensitive; B alone is bytes).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (e.g. 1048576, 8MiB, 1G)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit (use K, M, G, KiB, MiB or GiB)"
            ))
        }
    };
    match n.checked_mul(1usize << shift) {
        Some(0) => Err("must be at least 1".to_string()),
        Some(n) => Ok(n),
        None => Err(format!("{s:?} is too large")),
    }
}

fn parse_serializer(s: &str) -> Result<Serializer, String> {
    s.parse()
        .map_err(|e: mpmanager_server::UnknownSerializer| e.to_string())
}

/// The levels a log filter may name.
const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Checks a log filter (`--log-level`, `RUST_LOG`) before `tracing` reads
/// it: `tracing` takes any bare word as a target name, so a misspelt level
/// (`warning`, `verbose`) would silently turn every log line off. Accepted:
/// comma-separated directives, each a level, `TARGET=LEVEL`, or a target
/// path of ours (`mpmanager_server`, `mpmanager_server::conn`).
fn check_log_filter(filter: &str) -> std::result::Result<(), String> {
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None if directive.starts_with("mpmanager") => continue,
            None => directive,
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(format!(
                "unknown log level {level:?} in {filter:?}: use one of {} or a directive \
                 like mpmanager_server=debug",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

fn init_logging(args: &ServeArgs) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match &args.log_level {
        Some(f) => {
            check_log_filter(f).map_err(|e| anyhow::anyhow!("bad --log-level: {e}"))?;
            EnvFilter::try_new(f).with_context(|| format!("bad --log-level {f:?}"))?
        }
        None => match std::env::var("RUST_LOG") {
            Ok(f) if !f.trim().is_empty() => {
                check_log_filter(&f).map_err(|e| anyhow::anyhow!("bad RUST_LOG: {e}"))?;
                EnvFilter::try_new(&f).with_context(|| format!("bad RUST_LOG {f:?}"))?
            }
            _ => EnvFilter::new("info"),
        },
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let r = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    r.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// The authkey and where it came from; generated keys are printed. An
/// empty key is refused without --allow-empty-authkey.
fn authkey(args: &ServeArgs) -> Result<Vec<u8>> {
    let empty = |source: String| {
        anyhow::anyhow!(
            "the authkey is empty ({source}): anyone who can connect could use the server; \
             set a key, or pass --allow-empty-authkey to serve without one"
        )
    };
    if let Some(p) = &args.authkey_file {
        let key = std::fs::read(p)
            .with_context(|| format!("cannot read the authkey file {}", p.display()))?;
        if std::env::var_os(AUTHKEY_ENV).is_some() {
            tracing::info!("using --authkey-file; {AUTHKEY_ENV} is ignored");
        }
        if key.is_empty() && !args.allow_empty_authkey {
            return Err(empty(format!("the file {} is empty", p.display())));
        }
        return Ok(key);
    }
    match std::env::var_os(AUTHKEY_ENV) {
        Some(v) => match v.into_string() {
            Ok(s) if s.is_empty() && !args.allow_empty_authkey => {
                Err(empty(format!("{AUTHKEY_ENV} is set to the empty string")))
            }
            Ok(s) => Ok(s.into_bytes()),
            Err(_) => bail!("{AUTHKEY_ENV} is not valid UTF-8; use --authkey-file for raw bytes"),
        },
        None => {
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            eprintln!(
                "mpmanager: no authkey given ({AUTHKEY_ENV} or --authkey-file); generated one for this run:\n\
                 mpmanager:     authkey=bytes.fromhex('{hex}')"
            );
            Ok(key)
        }
    }
}

/// Stops the server through `handle` once `parent` is no longer our parent
/// process (it died and we were re-parented).
fn watch_parent(parent: u32, handle: mpmanager_server::ServerHandle) -> Result<()> {
    let current = std::os::unix::process::parent_id();
    if current != parent {
        bail!("--parent-pid {parent}: the parent of this process is {current}");
    }
    std::thread::Builder::new()
        .name("mpmanager-parent".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            if std::os::unix::process::parent_id() != parent {
                tracing::info!(parent, "parent process gone; stopping");
                handle.shutdown();
                return;
            }
        })
        .context("cannot start the parent watchdog thread")?;
    Ok(())
}

/// Stops the server through `handle` once descriptor `fd` (the read end of
/// a pipe whose write end the parent holds) reaches end of file.
fn watch_parent_fd(fd: i32, handle: mpmanager_server::ServerHandle) -> Result<()> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only queries the descriptor's flags; it tells whether
    // `fd` is open before we take ownership of it.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        bail!("--parent-fd {fd}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and given to this
    // process for this purpose only; nothing else in it uses or closes it.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    // Keep it out of anything this process might execute.
    // SAFETY: F_SETFD on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    std::thread::Builder::new()
        .name("mpmanager-parent-fd".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!(fd, "cannot watch --parent-fd: {e}");
                        return;
                    }
                }
            }
            tracing::info!(fd, "parent process gone (its pipe closed); stopping");
            handle.shutdown();
        })
        .context("cannot start the parent pipe watchdog thread")?;
    Ok(())
}

/// Raises the soft limit on open descriptors to the hard limit: every
/// connection, pending handshake and evicted socket held until its deadline
/// is a descriptor, and the common soft default (1024) is below the default
/// limits (--max-connections 4096). At the limit, accept fails and clients
/// wait.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let old = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                tracing::debug!(from = old, to = lim.rlim_max, "raised the open-files limit");
            }
        }
    }
}

/// `mpmanager serve`.
pub fn run(args: ServeArgs) -> Result<()> {
    init_logging(&args)?;
    raise_fd_limit();
    let address: Address = args
        .address
        .parse()
        .with_context(|| format!("bad --address {:?}", args.address))?;
    if !(args.handshake_timeout.is_finite() && args.handshake_timeout > 0.0) {
        bail!("--handshake-timeout must be a positive number of seconds");
    }
    let mut objects = Vec::new();
    for o in &args.objects {
        objects.push(o.parse::<SharedObject>()?);
    }
    let key = authkey(&args)?;
    let mut config = ServerConfig::new(address, key);
    config.handshake_timeout = Duration::from_secs_f64(args.handshake_timeout);
    config.max_connections = args.max_connections;
    config.max_pending_handshakes = args.max_pending_handshakes;
    // Also checked in `authkey()`, with the key's source in the message.
    config.allow_empty_authkey = args.allow_empty_authkey;
    config.max_frame = args.max_frame;
    config.request_memory = args.max_request_memory;
    if !(args.request_memory_wait.is_finite() && args.request_memory_wait >= 0.0) {
        bail!("--request-memory-wait must be a number of seconds");
    }
    config.request_memory_wait = Duration::from_secs_f64(args.request_memory_wait);
    config.decode_factor = args.decode_factor;
    config.serializer = args.serializer;
    config.busy_poll = Duration::from_micros(args.busy_poll_us);
    config.release_on_disconnect = args.release_on_disconnect;
    config.objects = objects;

    // Install the handlers before binding, so that a SIGTERM arriving as
    // soon as the address is printed is not lost.
    let mut stop_signals = vec![signal_hook::consts::SIGTERM];
    if args.ignore_sigint {
        // SAFETY: SIG_IGN installs no handler code; it only changes this
        // process's disposition of SIGINT, before any thread is started.
        let r = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        if r == libc::SIG_ERR {
            bail!("cannot ignore SIGINT: {}", std::io::Error::last_os_error());
        }
    } else {
        stop_signals.push(signal_hook::consts::SIGINT);
    }
    let mut signals = signal_hook::iterator::Signals::new(stop_signals)
        .context("cannot install signal handlers")?;

    let server = match Server::bind(config) {
        Ok(s) => s,
        Err(e) => {
            // A program reading --print-address learns why, e.g. the
            // Python package raises OSError(EADDRINUSE) as CPython would.
            if let (true, Some(errno)) = (args.print_address, bind_errno(&e)) {
                println!("error errno={errno}");
            }
            return Err(e.into());
        }
    };
    let handle = server.handle();
    if let Some(parent) = args.parent_pid {
        watch_parent(parent, handle.clone())?;
    }
    if let Some(fd) = args.parent_fd {
        watch_parent_fd(fd, handle.clone())?;
    }
    let sig_handle = signals.handle();
    std::thread::Builder::new()
        .name("mpmanager-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "signal received");
                handle.shutdown();
            }
        })
        .context("cannot start the signal thread")?;

    let addr = server.address().clone();
    if !args.quiet {
        eprintln!("mpmanager: serving on {addr}");
        eprintln!(
            "mpmanager: Python address: {}  (e.g. SyncManager(address={}, authkey=...).connect())",
            server.python_address(),
            server.python_address()
        );
        if !args.objects.is_empty() {
            eprintln!("mpmanager: shared objects: {}", args.objects.join(", "));
        }
    }
    if args.print_address {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{addr}")?;
        out.flush()?;
    }
    let r = server.serve();
    sig_handle.close();
    r?;
    if !args.quiet {
        eprintln!("mpmanager: stopped");
    }
    Ok(())
}
