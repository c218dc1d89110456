//! The native Rust client against a raw socket ping-pong floor and against
//! Redis, in one run, on unix sockets and on TCP loopback (the Rust-client
//! targets of docs/BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p mpmanager-client --features bench --example bench_client
//! ```
//!
//! It builds `mpmanager` (`cargo build --release -p mpmanager-cli --bin
//! mpmanager`, skipped with `--no-build` or `--mpmanager PATH`) and starts,
//! in a temporary directory, per transport (`--transports unix,tcp`, default
//! both), all killed at the end:
//!
//! * **mpmanager**: `mpmanager serve --address unix:…` or `--address
//!   127.0.0.1:0` (the real port read back from `--print-address`); one
//!   served binary per transport (`--in-process` runs the servers on threads
//!   of this process instead);
//! * **floor**: a raw ping-pong server (this program re-run with
//!   `--floor-server ADDR PAIRS`, a separate process like `mpmanager serve`,
//!   on a unix socket or on `127.0.0.1:0`, printing its bound address): for
//!   each request frame it answers the reply frame `mpmanager serve` gave to
//!   the same request bytes, found by comparing bytes. Its client side
//!   writes the pre-encoded request bytes and reads the reply frame with the
//!   same connection crate, no pickling on either side: the same bytes on
//!   the same sockets with no work around them;
//! * **redis**: one `redis-server` (no persistence) on a unix socket and, for
//!   TCP, `--port PORT --bind 127.0.0.1` (a free port), driven by
//!   `redis-benchmark -s SOCK` (unix) or `-h 127.0.0.1 -p PORT` (tcp) `-t get
//!   -c N -P 1|16 -n N -q` for each thread count N; skipped with a note if
//!   either is missing (or with `--no-redis`).
//!
//! The Rust client runs `d['k']` (`DictProxy::get_item`), `l.append(1)`
//! (`ListProxy::push`) and `ns.x` (`Namespace::get`): latency p50/p99 with
//! one thread (alternating with the floor and with the floor's raw bytes
//! sent to `mpmanager serve`, which splits the gap between server and
//! client); aggregate ops/s for each thread count of `--threads-list`
//! (default 1,2,4,16; each thread its own objects, calls through the
//! manager's shared connection pool; the 1-thread figure is the latency
//! loop's); pipelined ops/s with 16 calls in flight (`Manager::batch()` of
//! 16, run, repeat) from each thread count. The floor does the same with its
//! raw bytes. Each figure is the median of `--reps` runs, servers and
//! transports interleaved. Targets, judged per transport on `d['k']` vs
//! Redis GET: latency ≤ 1.25× floor (every op); 4 threads (or the largest
//! count listed, without 4) ≥ `redis-benchmark -c 4`; pipelined ≥ ½
//! `redis-benchmark -P 16`, from 1 and from 4 threads.
//!
//! Options: `--secs S` (per timed loop, default 0.3), `--reps N` (5),
//! `--threads-list A,B,…` (1,2,4,16), `--threads N` (shorthand for
//! `--threads-list 1,N`), `--transports unix,tcp` (both), `--depth N` (16),
//! `--redis-n N` (requests per non-pipelined redis-benchmark run; ×10 when
//! pipelined), `--no-redis`, `--no-build`, `--mpmanager PATH`,
//! `--in-process`, `--smoke`.
#![allow(missing_docs)] // criterion and example harness items need no docs

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mpmanager_client::{DictProxy, ListProxy, Manager, Namespace, Value};
use mpmanager_connection::{auth, Address, Connection, Listener};
use mpmanager_protocol::{PublicOp, Request};

const KEY: &[u8] = b"rbench-key";
const MAX: usize = 1 << 30;

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Seconds per timed loop.
    pub secs: f64,
    /// Runs per figure (the median is reported).
    pub reps: usize,
    /// Thread counts for the throughput figures (sorted, no duplicates).
    pub threads: Vec<usize>,
    /// Transports, each with its own servers, rows and targets.
    pub transports: Vec<Transport>,
    /// Calls in flight for the pipelined figures.
    pub depth: usize,
    /// Requests per non-pipelined redis-benchmark run (0: no Redis).
    pub redis_n: usize,
    /// Run the server on a thread of this process, the floor on a thread.
    pub in_process: bool,
    /// Build `mpmanager` with cargo first.
    pub build: bool,
    /// The `mpmanager` binary (default: next to this program's profile dir).
    pub mpmanager: Option<PathBuf>,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            secs: 0.3,
            reps: 5,
            threads: vec![1, 2, 4, 16],
            transports: vec![Transport::Unix, Transport::Tcp],
            depth: 16,
            redis_n: 30_000,
            in_process: false,
            build: true,
            mpmanager: None,
        }
    }
}

impl Opts {
    /// Tiny loops, 1 and 2 threads, both transports, no Redis, in-process
    /// servers (the smoke test).
    pub fn smoke() -> Opts {
        Opts {
            secs: 0.02,
            reps: 1,
            threads: vec![1, 2],
            transports: vec![Transport::Unix, Transport::Tcp],
            depth: 4,
            redis_n: 0,
            in_process: true,
            build: false,
            mpmanager: None,
        }
    }
}

/// Where the servers listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Unix sockets in the temporary directory.
    Unix,
    /// TCP on 127.0.0.1, free ports.
    Tcp,
}

impl Transport {
    /// `unix` / `tcp` (the table column, the `--transports` spelling).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Unix => "unix",
            Transport::Tcp => "tcp",
        }
    }

    /// A listening address for a server named `name`: a socket in `dir`,
    /// or 127.0.0.1 port 0 (the listener reports the real port).
    fn address(self, dir: &Path, name: &str) -> Result<Address, String> {
        let s = match self {
            Transport::Unix => format!("unix:{}", dir.join(format!("{name}.sock")).display()),
            Transport::Tcp => "127.0.0.1:0".to_string(),
        };
        s.parse().map_err(|e| format!("{e}"))
    }
}

// ------------------------------------------------------------ processes

/// A child process killed (and waited for) on drop.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> std::io::Result<Kid> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; the child dies with us (Ctrl-C).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().map(Kid)
}

/// The first line a child prints on stdout (its bound address).
fn first_line(kid: &mut Kid) -> Result<String, String> {
    let out = kid.0.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.is_empty() {
        return Err("the child printed nothing".into());
    }
    Ok(line.trim().to_string())
}

fn mpmanager_binary(opts: &Opts, notes: &mut Vec<String>) -> Result<PathBuf, String> {
    if let Some(p) = &opts.mpmanager {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/examples/bench_client -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no profile dir")?
        .to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    if opts.build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "mpmanager-cli", "--bin", "mpmanager"]);
        if release {
            cmd.arg("--release");
        }
        // The same target directory as this program.
        if let Some(t) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", t);
        }
        eprintln!("building mpmanager: {cmd:?}");
        match cmd.status() {
            Ok(s) if s.success() => {}
            other => notes.push(format!("cargo build of mpmanager failed: {other:?}")),
        }
    }
    let p = profile_dir.join("mpmanager");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!("{} not found", p.display()))
    }
}

// ---------------------------------------------------------- the floor

/// Request bytes → reply bytes, as `mpmanager serve` answered them.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn write_pairs(path: &Path, pairs: &Pairs) -> std::io::Result<()> {
    let mut f = Vec::new();
    for (a, b) in pairs {
        for x in [a, b] {
            f.extend_from_slice(&(x.len() as u32).to_le_bytes());
            f.extend_from_slice(x);
        }
    }
    std::fs::write(path, f)
}

fn read_pairs(path: &Path) -> std::io::Result<Pairs> {
    let mut data = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut data)?;
    let mut items = Vec::new();
    let mut i = 0;
    while i + 4 <= data.len() {
        let n = u32::from_le_bytes(data[i..i + 4].try_into().unwrap()) as usize;
        items.push(data[i + 4..i + 4 + n].to_vec());
        i += 4 + n;
    }
    let mut pairs = Vec::new();
    let mut it = items.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        pairs.push((a, b));
    }
    Ok(pairs)
}

/// Answers each frame with its canned reply (thread per connection, no
/// authentication: it is timed after connecting). Unknown requests close
/// the connection.
fn floor_accept_loop(listener: Listener, pairs: Arc<Pairs>) {
    while let Ok(stream) = listener.accept() {
        let pairs = pairs.clone();
        std::thread::spawn(move || {
            let mut c = Connection::new(stream);
            let mut buf = Vec::new();
            while c.recv_into(&mut buf, MAX).is_ok() {
                let Some((_, reply)) = pairs.iter().find(|(q, _)| *q == buf) else {
                    return;
                };
                if c.send(reply).is_err() {
                    return;
                }
            }
        });
    }
}

/// `bench_client --floor-server ADDR PAIRS`: the floor as its own process;
/// prints its bound address (the real port for `127.0.0.1:0`).
fn floor_server_main(addr: &str, pairs: &str) {
    let pairs = Arc::new(read_pairs(Path::new(pairs)).expect("pairs"));
    let listener = Listener::bind(&addr.parse::<Address>().expect("address")).expect("bind");
    println!("{}", listener.local_address());
    std::io::stdout().flush().unwrap();
    floor_accept_loop(listener, pairs);
}

// ---------------------------------------------------------- measuring

/// One timed loop's result.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Operations per second, summed over threads.
    pub ops: f64,
    /// p50 / p99 of one unit (µs), single-threaded non-pipelined only.
    pub p50: f64,
    /// p99 (µs).
    pub p99: f64,
}

/// Runs `threads` loops of `secs` each; `make(i)` builds thread i's unit
/// of work, which returns how many operations it did.
fn timed<F, U>(threads: usize, secs: f64, make: F) -> Result<Sample, String>
where
    F: Fn(usize) -> Result<U, String> + Sync,
    U: FnMut() -> Result<usize, String>,
{
    let barrier = Barrier::new(threads);
    let dur = Duration::from_secs_f64(secs);
    type ThreadResult = Result<(usize, f64, Vec<f64>), String>;
    let results: Vec<ThreadResult> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|i| {
                let (barrier, make) = (&barrier, &make);
                s.spawn(move || {
                    let mut unit = make(i)?;
                    for _ in 0..20 {
                        unit()?; // warm-up (connections, caches)
                    }
                    barrier.wait();
                    let mut lat = Vec::with_capacity(1 << 16);
                    let (start, mut n) = (Instant::now(), 0usize);
                    loop {
                        let t = Instant::now();
                        n += unit()?;
                        let e = t.elapsed();
                        lat.push(e.as_secs_f64() * 1e6);
                        if t + e - start >= dur {
                            break;
                        }
                    }
                    Ok((n, start.elapsed().as_secs_f64(), lat))
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let mut ops = 0.0;
    let mut lat = Vec::new();
    for r in results {
        let (n, el, l) = r?;
        ops += n as f64 / el;
        lat = l;
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    Ok(Sample {
        ops,
        p50: pct(0.5),
        p99: pct(0.99),
    })
}

/// The operations timed: name, Rust call.
pub const OPS: [&str; 3] = ["d['k']", "l.append(1)", "ns.x"];

/// Per-thread objects and their raw request bytes.
struct Objects {
    d: DictProxy<String, i64>,
    l: ListProxy<i64>,
    ns: Namespace,
}

impl Objects {
    fn new(m: &Manager) -> Result<Objects, String> {
        let e = |e: mpmanager_client::ClientError| e.to_string();
        let d = m.dict::<String, i64>().map_err(e)?;
        d.insert(&"k".to_string(), &1).map_err(e)?;
        let l = m.list::<i64>(&[]).map_err(e)?;
        let ns = m.namespace().map_err(e)?;
        ns.set("x", &1i64).map_err(e)?;
        Ok(Objects { d, l, ns })
    }

    /// One call of operation `op`.
    fn call(&self, op: usize) -> Result<(), String> {
        let e = |e: mpmanager_client::ClientError| e.to_string();
        match op {
            0 => {
                let v: i64 = self.d.get_item(&"k".to_string()).map_err(e)?;
                assert_eq!(v, 1);
            }
            1 => self.l.push(&1).map_err(e)?,
            _ => {
                let v: i64 = self.ns.get("x").map_err(e)?;
                assert_eq!(v, 1);
            }
        }
        Ok(())
    }

    /// `depth` calls of `op` in one pipeline, every result checked.
    fn pipelined(&self, m: &Manager, op: usize, depth: usize) -> Result<(), String> {
        let (p, method, args) = match op {
            0 => (self.d.proxy(), "__getitem__", vec![Value::str("k")]),
            1 => (self.l.proxy(), "append", vec![Value::Int(1)]),
            _ => (self.ns.proxy(), "__getattribute__", vec![Value::str("x")]),
        };
        let mut b = m.batch();
        for _ in 0..depth {
            b.call(p, method, args.clone(), vec![]);
        }
        for r in b.run().map_err(|e| e.to_string())? {
            let r = r.map_err(|e| e.to_string())?;
            if op == 1 {
                r.get::<Option<i64>>().map_err(|e| e.to_string())?;
                continue;
            }
            let v: i64 = r.get().map_err(|e| e.to_string())?;
            if v != 1 {
                return Err(format!("unexpected {v:?}"));
            }
        }
        Ok(())
    }

    /// The request bytes the client sends for `op` (encoded as the client
    /// encodes them).
    fn request(&self, op: usize) -> Vec<u8> {
        let (id, method, args) = match op {
            0 => (
                &self.d.proxy().token().id,
                "__getitem__",
                vec![Value::str("k")],
            ),
            1 => (&self.l.proxy().token().id, "append", vec![Value::Int(1)]),
            _ => (
                &self.ns.proxy().token().id,
                "__getattribute__",
                vec![Value::str("x")],
            ),
        };
        let req = Request::call(id.clone(), method, args, vec![]);
        mpmanager_pickle::encode(&req.to_value()).expect("encode")
    }
}

/// A served connection made by hand (handshake, `accept_connection`).
fn raw_served(addr: &Address) -> Result<Connection, String> {
    let e = |e: mpmanager_connection::ConnectionError| e.to_string();
    let mut c = Connection::connect(addr, Some(Duration::from_secs(10))).map_err(e)?;
    auth::client_handshake(&mut c, KEY).map_err(e)?;
    let req = Request::public(PublicOp::AcceptConnection, vec![Value::str("rbench")]);
    c.send(&mpmanager_pickle::encode(&req.to_value()).unwrap())
        .map_err(e)?;
    c.recv(MAX).map_err(e)?;
    Ok(c)
}

/// Figures of one target (Rust client or floor), one rep.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Per op: 1 thread (latency: client and floor alternating).
    pub one: Vec<Sample>,
    /// Per op, 1 thread: the raw request bytes sent to `mpmanager serve`.
    pub raw_server: Vec<Sample>,
    /// `[k][op]`: `opts.threads[k]` threads (for 1 thread: `one`).
    pub thr: Vec<Vec<Sample>>,
    /// `[k][op]`: pipelined, `opts.threads[k]` threads.
    pub pipe: Vec<Vec<Sample>>,
}

impl Figures {
    fn new(opts: &Opts) -> Figures {
        Figures {
            thr: vec![Vec::new(); opts.threads.len()],
            pipe: vec![Vec::new(); opts.threads.len()],
            ..Figures::default()
        }
    }

    /// Sets the latency loops' samples, which are also the 1-thread
    /// non-pipelined throughput.
    fn set_one(&mut self, one: Vec<Sample>, opts: &Opts) {
        for (k, &t) in opts.threads.iter().enumerate() {
            if t == 1 {
                self.thr[k] = one.clone();
            }
        }
        self.one = one;
    }
}

fn bench_client(m: &Manager, objs: &[Objects], opts: &Opts) -> Result<Figures, String> {
    let mut f = Figures::new(opts);
    for op in 0..OPS.len() {
        for (k, &t) in opts.threads.iter().enumerate() {
            if t > 1 {
                f.thr[k].push(timed(t, opts.secs, |i| {
                    let o = &objs[i];
                    Ok(move || o.call(op).map(|_| 1))
                })?);
            }
        }
        for (k, &t) in opts.threads.iter().enumerate() {
            f.pipe[k].push(timed(t, opts.secs, |i| {
                let o = &objs[i];
                Ok(move || o.pipelined(m, op, opts.depth).map(|_| opts.depth))
            })?);
        }
    }
    Ok(f)
}

/// Single-thread latency in alternating slices (ten each per op), so that
/// a burst of load on the shared machine hits every leg: the Rust client
/// against `mpmanager serve`; the raw floor; and the floor's raw bytes sent
/// to `mpmanager serve` itself (a hand-made served connection), which
/// splits the gap into the server's share and the client's. Returns
/// (client, floor, raw→server) samples per op.
fn bench_latency(
    objs: &[Objects],
    server: &Address,
    floor: &Address,
    reqs: &[Vec<u8>],
    opts: &Opts,
) -> Result<[Vec<Sample>; 3], String> {
    const SLICES: usize = 10;
    let slice = Duration::from_secs_f64(opts.secs / SLICES as f64);
    let mut out: [Vec<Sample>; 3] = Default::default();
    for (op, req) in reqs.iter().enumerate() {
        let o = &objs[0];
        let mut conns = [
            Connection::connect(floor, Some(Duration::from_secs(10))).map_err(|e| e.to_string())?,
            raw_served(server)?,
        ];
        let mut buf = Vec::new();
        let mut leg = |k: usize| -> Result<(), String> {
            if k == 0 {
                return o.call(op);
            }
            let c = &mut conns[k - 1];
            c.send(req).map_err(|e| e.to_string())?;
            c.recv_into(&mut buf, MAX).map_err(|e| e.to_string())
        };
        for _ in 0..20 {
            for k in 0..3 {
                leg(k)?;
            }
        }
        let mut lats: [Vec<f64>; 3] = Default::default();
        let mut totals = [0.0; 3];
        for _ in 0..SLICES {
            for k in 0..3 {
                let start = Instant::now();
                loop {
                    let t = Instant::now();
                    leg(k)?;
                    let e = t.elapsed();
                    lats[k].push(e.as_secs_f64() * 1e6);
                    if t + e - start >= slice {
                        break;
                    }
                }
                totals[k] += start.elapsed().as_secs_f64();
            }
        }
        for k in 0..3 {
            let lat = &mut lats[k];
            let n = lat.len();
            lat.sort_by(f64::total_cmp);
            let pct = |p: f64| lat[((n - 1) as f64 * p) as usize];
            out[k].push(Sample {
                ops: n as f64 / totals[k],
                p50: pct(0.5),
                p99: pct(0.99),
            });
        }
    }
    Ok(out)
}

fn bench_floor(addr: &Address, reqs: &[Vec<u8>], opts: &Opts) -> Result<Figures, String> {
    let connect =
        || Connection::connect(addr, Some(Duration::from_secs(10))).map_err(|e| e.to_string());
    let mut f = Figures::new(opts);
    for req in reqs {
        let one = |_| {
            let mut c = connect()?;
            let mut buf = Vec::new();
            Ok(move || {
                c.send(req).map_err(|e| e.to_string())?;
                c.recv_into(&mut buf, MAX).map_err(|e| e.to_string())?;
                Ok(1)
            })
        };
        for (k, &t) in opts.threads.iter().enumerate() {
            if t > 1 {
                f.thr[k].push(timed(t, opts.secs, one)?);
            }
        }
        let pipe = |_| {
            let mut c = connect()?;
            let batch = vec![req.as_slice(); opts.depth];
            let mut buf = Vec::new();
            Ok(move || {
                c.send_many(&batch).map_err(|e| e.to_string())?;
                for _ in 0..opts.depth {
                    c.recv_into(&mut buf, MAX).map_err(|e| e.to_string())?;
                }
                Ok(opts.depth)
            })
        };
        for (k, &t) in opts.threads.iter().enumerate() {
            f.pipe[k].push(timed(t, opts.secs, pipe)?);
        }
    }
    Ok(f)
}

// ---------------------------------------------------------------- redis

/// `redis-benchmark` GET figures, ops/s: `[k] = (-c N -P 1, -c N -P depth)`
/// for `N = opts.threads[k]`, over `transport`.
fn bench_redis(
    redis: &Redis,
    transport: Transport,
    opts: &Opts,
) -> Result<Vec<(f64, f64)>, String> {
    let mut out = Vec::new();
    for &c in &opts.threads {
        let mut pair = [0.0; 2];
        for (slot, p) in [1, opts.depth].into_iter().enumerate() {
            let n = if p > 1 {
                opts.redis_n * 10
            } else {
                opts.redis_n
            };
            let mut cmd = Command::new("redis-benchmark");
            match transport {
                Transport::Unix => cmd.arg("-s").arg(&redis.sock),
                Transport::Tcp => {
                    let port = redis.port.ok_or("Redis has no TCP port")?;
                    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
                }
            };
            let o = cmd
                .args(["-t", "get", "-q"])
                .args([
                    "-c",
                    &c.to_string(),
                    "-P",
                    &p.to_string(),
                    "-n",
                    &n.to_string(),
                ])
                .output()
                .map_err(|e| format!("redis-benchmark: {e}"))?;
            let text = String::from_utf8_lossy(&o.stdout);
            pair[slot] =
                parse_redis(&text).ok_or_else(|| format!("redis-benchmark output: {text:?}"))?;
        }
        out.push((pair[0], pair[1]));
    }
    Ok(out)
}

/// `GET: 81234.56 requests per second, p50=0.055 msec` → 81234.56 (the
/// last such line; `-q` rewrites progress lines with `\r`).
pub fn parse_redis(text: &str) -> Option<f64> {
    text.rsplit(['\r', '\n']).find_map(|l| {
        let rest = l.trim().strip_prefix("GET:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// A running `redis-server`: a unix socket, and a TCP port on 127.0.0.1
/// when asked for.
struct Redis {
    _kid: Kid,
    sock: PathBuf,
    port: Option<u16>,
}

/// A port free on 127.0.0.1 just now (bound to port 0, then closed).
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn start_redis(dir: &Path, tcp: bool, notes: &mut Vec<String>) -> Option<Redis> {
    let sock = dir.join("redis.sock");
    let port = if tcp {
        match free_port() {
            Ok(p) => Some(p),
            Err(e) => {
                notes.push(format!("Redis skipped: no free TCP port ({e})"));
                return None;
            }
        }
    } else {
        None
    };
    let mut cmd = Command::new("redis-server");
    match port {
        Some(p) => cmd.args(["--port", &p.to_string(), "--bind", "127.0.0.1"]),
        None => cmd.args(["--port", "0"]),
    };
    let kid = spawn(
        cmd.args(["--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&sock)
            .args(["--unixsocketperm", "700", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let kid = match kid {
        Ok(k) => k,
        Err(e) => {
            notes.push(format!("Redis skipped: redis-server could not start ({e})"));
            return None;
        }
    };
    let t = Instant::now();
    let up = || {
        sock.exists() && port.is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())
    };
    while !up() {
        if t.elapsed() > Duration::from_secs(5) {
            notes.push("Redis skipped: not listening after 5 s".into());
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = Command::new("redis-benchmark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        notes.push("Redis skipped: redis-benchmark is not installed".into());
        return None;
    }
    Some(Redis {
        _kid: kid,
        sock,
        port,
    })
}

// -------------------------------------------------------------- report

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// Medians over reps of one figure kind.
fn med(reps: &[Figures], pick: impl Fn(&Figures) -> f64) -> f64 {
    median(reps.iter().map(pick).collect())
}

/// Median over reps of Redis's figure for `opts.threads[k]` connections,
/// pipelined or not.
fn redis_med(rd: &[Vec<(f64, f64)>], k: usize, piped: bool) -> f64 {
    median(
        rd.iter()
            .map(|r| if piped { r[k].1 } else { r[k].0 })
            .collect(),
    )
}

/// The whole result.
#[derive(Debug, Default)]
pub struct Report {
    /// The printed tables.
    pub text: String,
    /// Notes (skips, fallbacks).
    pub notes: Vec<String>,
    /// Targets: (name, met).
    pub targets: Vec<(String, bool)>,
}

/// One rep's client side on one transport: a new manager connection (so a
/// new connection pool: a connection the scheduler treats badly does not
/// last across reps), one set of objects per thread of the largest thread
/// count, and a floor on the same transport serving their request bytes
/// with the replies `mpmanager serve` gave.
struct RepSetup {
    m: Manager,
    objs: Vec<Objects>,
    floor: Address,
    reqs: Vec<Vec<u8>>,
    sizes: Vec<(usize, usize)>,
    _kid: Option<Kid>,
}

fn rep_setup(
    server: &Address,
    transport: Transport,
    dir: &Path,
    rep: usize,
    opts: &Opts,
) -> Result<RepSetup, String> {
    let m = Manager::connect_to(server.clone(), KEY).map_err(|e| e.to_string())?;
    let n_objs = opts.threads.iter().copied().max().unwrap_or(1);
    let objs = (0..n_objs)
        .map(|_| Objects::new(&m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pairs: Pairs = Vec::new();
    let mut raw = raw_served(server)?;
    for o in &objs {
        for op in 0..OPS.len() {
            let q = o.request(op);
            raw.send(&q).map_err(|e| e.to_string())?;
            let r = raw.recv(MAX).map_err(|e| e.to_string())?;
            pairs.push((q, r));
        }
    }
    drop(raw);
    let name = format!("floor-{}-{rep}", transport.name());
    let want = transport.address(dir, &name)?;
    let reqs: Vec<Vec<u8>> = pairs[..OPS.len()].iter().map(|p| p.0.clone()).collect();
    let sizes = pairs[..OPS.len()]
        .iter()
        .map(|p| (p.0.len(), p.1.len()))
        .collect();
    let (floor, kid) = if opts.in_process {
        let l = Listener::bind(&want).map_err(|e| e.to_string())?;
        let floor = l.local_address().clone();
        let pairs = Arc::new(pairs);
        std::thread::spawn(move || floor_accept_loop(l, pairs));
        (floor, None)
    } else {
        let pf = dir.join(format!("pairs-{}-{rep}", transport.name()));
        write_pairs(&pf, &pairs).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut kid = spawn(
            Command::new(exe)
                .arg("--floor-server")
                .arg(want.to_string())
                .arg(&pf)
                .stdout(Stdio::piped()),
        )
        .map_err(|e| e.to_string())?;
        let floor: Address = first_line(&mut kid)?
            .parse()
            .map_err(|e| format!("floor address: {e}"))?;
        (floor, Some(kid))
    };
    Ok(RepSetup {
        m,
        objs,
        floor,
        reqs,
        sizes,
        _kid: kid,
    })
}

/// One transport's server and figures.
struct Side {
    transport: Transport,
    server: Address,
    m: Manager,
    _kid: Option<Kid>,
    /// Per rep: client, floor, Redis (when it ran).
    cl: Vec<Figures>,
    fl: Vec<Figures>,
    rd: Vec<Vec<(f64, f64)>>,
    sizes: Vec<(usize, usize)>,
}

/// Starts the mpmanager server for `transport` (a `mpmanager serve`
/// process, or a thread with `--in-process`).
fn start_server(
    transport: Transport,
    dir: &Path,
    bin: Option<&Path>,
) -> Result<(Manager, Address, Option<Kid>), String> {
    let want = transport.address(dir, "mpm")?;
    match bin {
        None => {
            let cfg = mpmanager_server::ServerConfig::new(want, KEY.to_vec());
            let m = Manager::spawn_server(cfg).map_err(|e| e.to_string())?;
            let addr = m.address().clone();
            Ok((m, addr, None))
        }
        Some(bin) => {
            let mut kid = spawn(
                Command::new(bin)
                    .args(["serve", "--quiet", "--print-address", "--address"])
                    .arg(want.to_string())
                    .env("MPMANAGER_AUTHKEY", std::str::from_utf8(KEY).unwrap())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null()),
            )
            .map_err(|e| format!("{}: {e}", bin.display()))?;
            let addr: Address = first_line(&mut kid)?
                .parse()
                .map_err(|e| format!("mpmanager serve address: {e}"))?;
            let m = Manager::connect_to(addr.clone(), KEY).map_err(|e| e.to_string())?;
            Ok((m, addr, Some(kid)))
        }
    }
}

/// Runs everything and prints the tables.
pub fn run(opts: &Opts) -> Result<Report, String> {
    let mut notes = Vec::new();
    let dir = std::env::temp_dir().join(format!("mpm-rbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    struct RmDir(PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = RmDir(dir.clone());

    // The servers, one per transport.
    let bin = if opts.in_process {
        None
    } else {
        Some(mpmanager_binary(opts, &mut notes)?)
    };
    let mut sides = Vec::new();
    for &transport in &opts.transports {
        let (m, server, kid) = start_server(transport, &dir, bin.as_deref())?;
        sides.push(Side {
            transport,
            server,
            m,
            _kid: kid,
            cl: Vec::new(),
            fl: Vec::new(),
            rd: Vec::new(),
            sizes: Vec::new(),
        });
    }
    let server_kind = match &bin {
        None => "in-process servers (threads)".to_string(),
        Some(b) => format!("`{} serve`", b.display()),
    };
    let redis = if opts.redis_n == 0 {
        notes.push("Redis not run (--no-redis / smoke).".into());
        None
    } else {
        start_redis(&dir, opts.transports.contains(&Transport::Tcp), &mut notes)
    };

    let floor_kind = if opts.in_process {
        "thread of this process"
    } else {
        "separate process, thread per connection"
    };
    for rep in 0..opts.reps {
        for side in &mut sides {
            eprintln!("run {}/{} {}", rep + 1, opts.reps, side.transport.name());
            let r = rep_setup(&side.server, side.transport, &dir, rep, opts)?;
            let [c1, f1, s1] = bench_latency(&r.objs, &side.server, &r.floor, &r.reqs, opts)?;
            let mut c = bench_client(&r.m, &r.objs, opts)?;
            let mut f = bench_floor(&r.floor, &r.reqs, opts)?;
            c.set_one(c1, opts);
            f.set_one(f1, opts);
            c.raw_server = s1;
            side.sizes = r.sizes;
            side.cl.push(c);
            side.fl.push(f);
            if let Some(redis) = &redis {
                match bench_redis(redis, side.transport, opts) {
                    Ok(r) => side.rd.push(r),
                    Err(e) => {
                        notes.push(format!("Redis run failed ({}): {e}", side.transport.name()))
                    }
                }
            }
        }
    }
    for side in &sides {
        let _ = side.m.shutdown();
    }
    drop(redis);

    // Tables.
    let d = opts.depth;
    // The thread count the "≥ Redis" targets are judged at.
    let target_t = if opts.threads.contains(&4) {
        4
    } else {
        opts.threads.iter().copied().max().unwrap_or(1)
    };
    let mut s = String::new();
    let mut targets = Vec::new();
    use std::fmt::Write as _;
    let names: Vec<_> = sides
        .iter()
        .map(|x| format!("{} ({})", x.transport.name(), x.server))
        .collect();
    let _ = writeln!(
        s,
        "server: {server_kind}; floor: {floor_kind}; transports: {}; {} s loops, median of {} runs\n",
        names.join(", "),
        opts.secs,
        opts.reps
    );
    let _ = writeln!(
        s,
        "Latency, 1 thread (µs; ratio = client p50 ÷ floor p50, target ≤ 1.25; raw→mpmanager: \
         the floor's bytes sent to mpmanager serve, so raw→mpmanager − floor is the server's \
         share of the gap, client − raw→mpmanager the client's)\n"
    );
    let _ = writeln!(
        s,
        "| transport | op | request/reply bytes | client p50 | client p99 | floor p50 | floor p99 | raw→mpmanager p50 | ratio | target |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for side in &sides {
        let (cl, fl, tr) = (&side.cl, &side.fl, side.transport.name());
        for (i, op) in OPS.iter().enumerate() {
            let (c50, c99) = (med(cl, |f| f.one[i].p50), med(cl, |f| f.one[i].p99));
            let (f50, f99) = (med(fl, |f| f.one[i].p50), med(fl, |f| f.one[i].p99));
            let s50 = med(cl, |f| f.raw_server[i].p50);
            let r = c50 / f50;
            let met = r <= 1.25;
            targets.push((format!("{tr} `{op}` latency ≤ 1.25× floor ({r:.2}×)"), met));
            let _ = writeln!(
                s,
                "| {tr} | `{op}` | {}/{} | {c50:.1} | {c99:.1} | {f50:.1} | {f99:.1} | {s50:.1} | {r:.2}× | {} |",
                side.sizes[i].0,
                side.sizes[i].1,
                if met { "met" } else { "missed" }
            );
        }
    }
    let _ = writeln!(
        s,
        "\nThroughput (ops/s, summed over threads; Redis: redis-benchmark GET, same transport, \
         -c = threads, -P {d} for the in-flight rows)\n"
    );
    let _ = writeln!(
        s,
        "| transport | op | setup | client | floor | client ÷ floor | Redis GET | client ÷ Redis | target |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---|");
    for side in &sides {
        let tr = side.transport.name();
        let have_redis = !side.rd.is_empty();
        for (i, op) in OPS.iter().enumerate() {
            for piped in [false, true] {
                for (k, &t) in opts.threads.iter().enumerate() {
                    let label = match (t, piped) {
                        (1, false) => "1 thread".to_string(),
                        (t, false) => format!("{t} threads"),
                        (1, true) => format!("1 thread, {d} in flight"),
                        (t, true) => format!("{t} threads, {d} in flight each"),
                    };
                    let pick = |f: &Figures| {
                        if piped {
                            f.pipe[k][i].ops
                        } else {
                            f.thr[k][i].ops
                        }
                    };
                    let c = med(&side.cl, pick);
                    let fo = med(&side.fl, pick);
                    // Targets: `target_t` threads ≥ Redis -c 4; pipelined ≥ ½
                    // Redis -P 16 (from 1 and from `target_t` connections).
                    let want = match (piped, t) {
                        (true, t) if t == 1 || t == target_t => 0.5,
                        (false, t) if t == target_t && t > 1 => 1.0,
                        _ => 0.0,
                    };
                    let (rs, ratio, tgt) = if have_redis {
                        let r = redis_med(&side.rd, k, piped);
                        let ratio = c / r;
                        let tgt = if want > 0.0 && i == 0 {
                            let met = ratio >= want;
                            targets.push((
                                format!("{tr} `{op}` {label}: ≥ {want}× Redis ({ratio:.2}×)"),
                                met,
                            ));
                            format!("≥ {want}×: {}", if met { "met" } else { "missed" })
                        } else {
                            String::new()
                        };
                        (format!("{r:.0}"), format!("{ratio:.2}×"), tgt)
                    } else {
                        ("–".into(), "–".into(), String::new())
                    };
                    let _ = writeln!(
                        s,
                        "| {tr} | `{op}` | {label} | {c:.0} | {fo:.0} | {:.2}× | {rs} | {ratio} | {tgt} |",
                        c / fo
                    );
                }
            }
        }
    }
    for side in &sides {
        if side.rd.is_empty() {
            continue;
        }
        let runs: Vec<String> = opts
            .threads
            .iter()
            .enumerate()
            .map(|(k, t)| {
                format!(
                    "-c {t}: -P 1 {:.0}, -P {d} {:.0}",
                    redis_med(&side.rd, k, false),
                    redis_med(&side.rd, k, true)
                )
            })
            .collect();
        let how = match side.transport {
            Transport::Unix => "-s SOCK".to_string(),
            Transport::Tcp => "-h 127.0.0.1 -p PORT".to_string(),
        };
        let _ = writeln!(
            s,
            "\nredis-benchmark {how} -t get -n N -q ({}), requests/s: {}",
            side.transport.name(),
            runs.join("; ")
        );
    }
    let _ = writeln!(s, "\nTargets:");
    for (name, met) in &targets {
        let _ = writeln!(s, "  [{}] {name}", if *met { "met" } else { "MISSED" });
    }
    for n in &notes {
        let _ = writeln!(s, "note: {n}");
    }
    drop(sides);
    Ok(Report {
        text: s,
        notes,
        targets,
    })
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut next = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--secs" => o.secs = next("--secs")?.parse().map_err(|e| format!("{e}"))?,
            "--reps" => o.reps = next("--reps")?.parse().map_err(|e| format!("{e}"))?,
            "--threads" => {
                let n: usize = next("--threads")?.parse().map_err(|e| format!("{e}"))?;
                o.threads = vec![1, n];
            }
            "--threads-list" => {
                o.threads = next("--threads-list")?
                    .split(',')
                    .map(|x| x.trim().parse::<usize>().map_err(|e| format!("{x:?}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--transports" => {
                o.transports = next("--transports")?
                    .split(',')
                    .map(|x| match x.trim() {
                        "unix" => Ok(Transport::Unix),
                        "tcp" => Ok(Transport::Tcp),
                        other => Err(format!("unknown transport {other:?} (unix, tcp)")),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .fold(Vec::new(), |mut v, t| {
                        if !v.contains(&t) {
                            v.push(t);
                        }
                        v
                    });
            }
            "--depth" => o.depth = next("--depth")?.parse().map_err(|e| format!("{e}"))?,
            "--redis-n" => o.redis_n = next("--redis-n")?.parse().map_err(|e| format!("{e}"))?,
            "--no-redis" => o.redis_n = 0,
            "--no-build" => o.build = false,
            "--in-process" => o.in_process = true,
            "--mpmanager" => o.mpmanager = Some(next("--mpmanager")?.into()),
            "--smoke" => o = Opts::smoke(),
            "-h" | "--help" => {
                println!("see the top of crates/client/examples/bench_client.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    o.threads.sort_unstable();
    o.threads.dedup();
    if o.threads.contains(&0) || o.threads.is_empty() || o.depth == 0 || o.reps == 0 {
        return Err("--threads(-list), --depth and --reps must be ≥ 1".into());
    }
    if o.transports.is_empty() {
        return Err("--transports needs unix and/or tcp".into());
    }
    Ok(o)
}

#[allow(dead_code)] // the smoke test includes this file as a module
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--floor-server" {
        floor_server_main(&args[2], &args[3]);
        return;
    }
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    match run(&opts) {
        Ok(r) => print!("{}", r.text),
        Err(e) => {
            eprintln!("bench_client: {e}");
            std::process::exit(1);
        }
    }
}
