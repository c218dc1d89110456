#!/usr/bin/env python3
"""Side-by-side benchmark of manager servers, driven by unmodified Python
proxies (docs/BENCHMARKS.md).

    cargo build --release -p mpmanager-cli && python3 scripts/bench.py --quick

Servers, all started by this script, all on loopback / unix sockets:
  cpython    CPython's own SyncManager server (a subprocess, the reference)
  mpmanager  `mpmanager serve`
  echo       the echo floor (crates/cli/examples/echo_floor.rs): answers each
             request with a canned reply of the same shape, doing no work
  redis      redis-server (SET/GET only, via redis-py), if available

Clients: SyncManager proxies in 1, 2, 4 (16 with --full) processes, each with
its own objects. Figures: ops/s, latency p50/p99, server CPU time per
operation (utime+stime of the server process, read before/after each timed
loop through its process CPU clock, the nanosecond form of /proc/PID/stat's
utime+stime), peak RSS (VmHWM) with 10,000 live objects and with 1,000 idle
connections. Each figure is the median of --reps runs. Raw results go to
bench-results/bench.json (and bench.png with matplotlib).

Modes: --smoke (seconds; no Redis, no chart, for the test suite), --quick
(a few minutes), --full (longer loops, 16 processes too).
"""
import argparse, ast, importlib, json, multiprocessing, os, resource, shutil, signal
import statistics, subprocess, sys, tempfile, time
from multiprocessing.connection import Client
from multiprocessing.managers import SyncManager, dispatch

KEY = b'bench-key'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIG = b'x' * (1 << 20)

# name -> (description, calls per op)
OPS = {
    'ns_set': ('ns.x = 1', 1),
    'ns_get': ('ns.x', 1),
    'list_append': ('l.append(1)', 1),
    'dict_set': ("d['k'] = 1", 1),
    'dict_get': ("d['k']", 1),
    'queue_putget': ('q.put(1); q.get()', 2),
    'lock': ('lk.acquire(); lk.release()', 2),
    'proxy_create': ('m.list() create + drop', 4),
    'big_1mib': ("d['big'] = 1 MiB bytes; d['big']", 2),
}
# Redis equivalents (redis-py): the comparable operations only.
REDIS_OPS = {'dict_set': "SET k 1", 'dict_get': 'GET k', 'big_1mib': 'SET + GET 1 MiB'}
# --busy-poll-us of `mpmanager serve` and the echo floor (None: their default).
BUSY_POLL_US = None
SIMPLE = ['ns_set', 'ns_get', 'list_append', 'dict_set', 'dict_get']

MODES = {
    # seconds per timed loop (each op, each client process), runs per
    # figure, client process counts, live objects, idle connections
    'smoke': dict(secs=0.02, reps=1, procs=[1, 2], objects=300, conns=50),
    'quick': dict(secs=0.25, reps=3, procs=[1, 2, 4], objects=10000, conns=1000),
    'full': dict(secs=1.0, reps=5, procs=[1, 2, 4, 16], objects=10000, conns=1000),
}
# Slow operations (milliseconds each, and ~180 ms for CPython's server over
# TCP): fewer warm-up and minimum iterations.
SLOW = {'proxy_create', 'big_1mib'}

CHILDREN = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------- measures

def cpu_seconds(pid):
    """utime+stime of process `pid` (all its threads, living and exited), in
    seconds: its process CPU-time clock (nanoseconds; the same sum that
    /proc/PID/stat reports in clock ticks), else /proc/PID/stat."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, SCHED)
    except OSError:
        f = open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')


def proc_status(pid, field):
    for line in open('/proc/%d/status' % pid):
        if line.startswith(field + ':'):
            return int(line.split()[1]) * 1024
    return None


# ---------------------------------------------------------------- servers

class Server:
    def __init__(self, name, proc, address):
        self.name, self.proc, self.address = name, proc, address

    @property
    def pid(self):
        return self.proc.pid


def spawn(cmd, env=None):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    CHILDREN.append(p)
    return p


def parse_addr(line, kind):
    line = line.strip()
    if kind == 'python':
        return ast.literal_eval(line)
    if line.startswith('unix:'):
        return line[5:]
    host, port = line.rsplit(':', 1)
    return (host.strip('[]'), int(port))


def start_server(kind, transport, tmp, bins, busy_poll_us=None):
    """Starts a server; `busy_poll_us` overrides BUSY_POLL_US for
    mpmanager and the echo floor."""
    env = dict(os.environ, MPMANAGER_AUTHKEY=KEY.decode())
    poll = BUSY_POLL_US if busy_poll_us is None else busy_poll_us
    poll_args = [] if poll is None else ['--busy-poll-us', str(poll)]
    if poll is not None:
        env['MPMANAGER_BUSY_POLL_US'] = str(poll)
    tag = '%s-%s-%d' % (kind, transport, len(CHILDREN))
    if kind == 'mpmanager':
        a = 'unix:' + os.path.join(tmp, tag) if transport == 'unix' else '127.0.0.1:0'
        p = spawn([bins['mpmanager'], 'serve', '--address', a, '--print-address', '--quiet',
                   '--log-level', 'error'] + poll_args, env)
        addr = parse_addr(p.stdout.readline(), 'rust')
    elif kind == 'echo':
        a = 'unix:' + os.path.join(tmp, tag) if transport == 'unix' else '127.0.0.1:0'
        p = spawn([bins['echo'], a], env)
        addr = parse_addr(p.stdout.readline(), 'rust')
    elif kind == 'cpython':
        a = os.path.join(tmp, tag) if transport == 'unix' else ('127.0.0.1', 0)
        code = ('import multiprocessing, sys\n'
                'from multiprocessing.managers import SyncManager\n'
                'multiprocessing.current_process().authkey = %r\n'
                's = SyncManager(address=%r, authkey=%r).get_server()\n'
                'print(repr(s.address), flush=True)\n'
                's.serve_forever()\n' % (KEY, a, KEY))
        p = spawn([sys.executable, '-c', code])
        addr = parse_addr(p.stdout.readline(), 'python')
    elif kind == 'redis':
        port = free_port()
        sock = os.path.join(tmp, tag)
        p = spawn([bins['redis'], '--port', str(port), '--bind', '127.0.0.1', '--unixsocket', sock,
                   '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'])
        addr = sock if transport == 'unix' else ('127.0.0.1', port)
        import redis
        for _ in range(500):
            try:
                redis_client(addr).ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.01)
    else:
        raise ValueError(kind)
    if not addr:
        raise RuntimeError('%s did not start' % kind)
    return Server(kind, p, addr)


def stop(server):
    p = server.proc
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cleanup(*_):
    for p in CHILDREN:
        if p.poll() is None:
            p.kill()
    for p in CHILDREN:
        try:
            p.wait(5)
        except Exception:
            pass
    for c in multiprocessing.active_children():
        c.kill()


def free_port():
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def redis_client(addr):
    import redis
    if isinstance(addr, str):
        return redis.Redis(unix_socket_path=addr)
    return redis.Redis(host=addr[0], port=addr[1])


# ---------------------------------------------------------------- clients

def make_ops(kind, addr):
    """The benchmark operations as zero-argument functions, with their
    objects made; `keep` holds what must stay alive."""
    if kind == 'redis':
        r = redis_client(addr)
        k = 'k%d' % os.getpid()
        kb = 'big%d' % os.getpid()
        r.set(k, 1)
        return {'dict_set': lambda: r.set(k, 1), 'dict_get': lambda: r.get(k),
                'big_1mib': lambda: (r.set(kb, BIG), r.get(kb))}, r
    m = SyncManager(address=addr, authkey=KEY)
    m.connect()
    ns = m.Namespace()
    ns.x = 1
    l = m.list()
    d = m.dict()
    d['k'] = 1
    q = m.Queue()
    lk = m.Lock()

    def queue_putget():
        q.put(1)
        q.get()

    def lock():
        lk.acquire()
        lk.release()

    def big():
        d['big'] = BIG
        return d['big']

    ops = {
        'ns_set': lambda: setattr(ns, 'x', 1),
        'ns_get': lambda: ns.x,
        'list_append': lambda: l.append(1),
        'dict_set': lambda: d.__setitem__('k', 1),
        'dict_get': lambda: d['k'],
        'queue_putget': queue_putget,
        'lock': lock,
        'proxy_create': lambda: m.list(),
        'big_1mib': big,
    }
    return ops, (m, ns, l, d, q, lk)


def worker(kind, addr, plan, b_ready, b_go, b_done, pipe):
    multiprocessing.current_process().authkey = KEY
    try:
        ops, keep = make_ops(kind, addr)
        err = None
    except Exception as e:  # still take part in the barriers
        ops, keep, err = {}, None, repr(e)
    clock = time.perf_counter_ns
    for op, secs in plan:
        fn = ops.get(op)
        few = op in SLOW
        if fn is not None:
            for _ in range(2 if few else 50):
                fn()
        b_ready.wait()
        b_go.wait()
        lat = []
        t0 = clock()
        deadline = t0 + int(secs * 1e9)
        least = 3 if few else 20
        if fn is not None:
            while True:
                s = clock()
                fn()
                e = clock()
                lat.append(e - s)
                if e >= deadline and len(lat) >= least:
                    break
        t1 = clock()
        b_done.wait()
        pipe.send((op, t0, t1, lat, err))
    pipe.close()


def run_clients(server, nprocs, plan):
    """Runs `plan` ([(op, seconds)]) in `nprocs` client processes
    against `server`; returns {op: figures}."""
    ctx = multiprocessing.get_context('fork')
    bs = [ctx.Barrier(nprocs + 1) for _ in range(3)]
    pipes, procs = [], []
    for _ in range(nprocs):
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=worker, args=(server.name, server.address, plan, *bs, w), daemon=True)
        p.start()
        w.close()
        pipes.append(r)
        procs.append(p)
    out = {}
    timeout = 600
    for op, _ in plan:
        bs[0].wait(timeout)
        c0 = cpu_seconds(server.pid)
        bs[1].wait(timeout)
        bs[2].wait(timeout)
        c1 = cpu_seconds(server.pid)
        res = [pp.recv() for pp in pipes]
        errs = [r[4] for r in res if r[4]]
        if errs:
            raise RuntimeError('%s client failed: %s' % (server.name, errs[0]))
        lat = sorted(x for r in res for x in r[3])
        if not lat:
            continue
        start, end = min(r[1] for r in res), max(r[2] for r in res)
        total = len(lat)
        out[op] = {
            'ops_per_s': total / ((end - start) / 1e9),
            'p50_us': lat[len(lat) // 2] / 1e3,
            'p99_us': lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e3,
            'cpu_us_per_op': (c1 - c0) / total * 1e6,
            'ops': total,
        }
    for p in procs:
        p.join(30)
    return out


def median_runs(runs):
    """Median of each figure over repeated runs."""
    out = {}
    for op in runs[0]:
        vals = [r[op] for r in runs if op in r]
        out[op] = {k: statistics.median(v[k] for v in vals) for k in vals[0]}
    return out


# ----------------------------------------------------------------- memory

def memory(kind, tmp, bins, n_objects, n_conns):
    res = {}
    # live objects: one-shot `create` calls (what m.list() does, minus the
    # proxy's incref/decref pair), refcount 1 each, all kept
    s = start_server(kind, 'unix', tmp, bins)
    try:
        m = SyncManager(address=s.address, authkey=KEY)
        m.connect()
        m._create('list')
        base = proc_status(s.pid, 'VmHWM')
        for _ in range(n_objects):
            m._create('list')
        peak = proc_status(s.pid, 'VmHWM')
        res['objects'] = {'n': n_objects, 'base_rss': base, 'peak_rss': peak,
                          'bytes_per': (peak - base) / n_objects}
    finally:
        stop(s)
    # idle connections: authenticated, accept_connection'ed, as a proxy's
    # connection waiting for its next call
    s = start_server(kind, 'unix', tmp, bins)
    conns = []
    try:
        def idle():
            c = Client(s.address, authkey=KEY)
            dispatch(c, None, 'accept_connection', ('idle',))
            return c
        conns.append(idle())
        base = proc_status(s.pid, 'VmHWM')
        for _ in range(n_conns):
            conns.append(idle())
        time.sleep(0.2)
        peak = proc_status(s.pid, 'VmHWM')
        res['connections'] = {'n': n_conns, 'base_rss': base, 'peak_rss': peak,
                              'bytes_per': (peak - base) / n_conns}
    finally:
        for c in conns:
            c.close()
        stop(s)
    return res


# ------------------------------------------------------------------ build

def find_binaries(args):
    bins = {}
    if not args.no_build:
        cmd = ['cargo', 'build', '--release', '-p', 'mpmanager-cli', '--bin', 'mpmanager',
               '--example', 'echo_floor', '--message-format=json-render-diagnostics']
        log('building:', ' '.join(cmd))
        out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True).stdout
        for line in out.splitlines():
            msg = json.loads(line)
            if msg.get('reason') == 'compiler-artifact' and msg.get('executable'):
                name = msg['target']['name']
                bins['mpmanager' if name == 'mpmanager' else 'echo' if name == 'echo_floor' else name] = msg['executable']
    target = os.environ.get('CARGO_TARGET_DIR', os.path.join(ROOT, 'target'))
    bins.setdefault('mpmanager', args.mpmanager or os.path.join(target, 'release', 'mpmanager'))
    bins.setdefault('echo', args.echo or os.path.join(target, 'release', 'examples', 'echo_floor'))
    return bins


def setup_redis(args, notes):
    if args.no_redis:
        notes.append('Redis skipped (--no-redis).')
        return None
    path = shutil.which('redis-server')
    if path is None and os.geteuid() == 0 and shutil.which('apt-get'):
        log('installing redis-server with apt-get')
        subprocess.run(['apt-get', 'install', '-y', '-q', 'redis-server'],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = shutil.which('redis-server')
    if path is None:
        notes.append('Redis skipped: redis-server is not installed and apt-get could not install it.')
        return None
    if import_or_install('redis') is None:
        notes.append('Redis skipped: redis-py is not installed and pip could not install it.')
        return None
    return path


def import_or_install(module):
    """Imports `module`, installing it with pip first if it is missing;
    None if that fails."""
    try:
        return importlib.import_module(module)
    except ImportError:
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', module],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return importlib.import_module(module)
        except ImportError:
            return None


# ------------------------------------------------------------------ report

def fmt_ratio(a, b):
    return '%.2fx' % (a / b) if a and b else '-'


def report(R, out):
    w = out.write
    servers = R['servers']
    lat = R['throughput']
    for transport in R['transports']:
        one = lat.get('%s/1' % transport, {})
        if not one:
            continue
        w('\n== Latency, 1 client process, %s socket (median of %d runs) ==\n' % (transport, R['reps']))
        w('%-13s %9s %9s %9s %9s | %9s %9s | %8s %8s | %7s %7s %7s | %7s\n' % (
            'operation', 'p50 cpy', 'p50 mpm', 'p50 echo', 'p50 redis', 'p99 cpy', 'p99 mpm',
            'vs cpy', 'vs echo', 'cpu cpy', 'cpu mpm', 'cpu/cpy', 'cpu echo'))
        for op in OPS:
            g = {s: one.get(s, {}).get(op) for s in servers}
            if not g.get('mpmanager'):
                continue
            c, m, e, r = g.get('cpython'), g['mpmanager'], g.get('echo'), g.get('redis')
            us = lambda x, k: '%.1f' % x[k] if x else '-'
            w('%-13s %9s %9s %9s %9s | %9s %9s | %8s %8s | %7s %7s %7s | %7s\n' % (
                op, us(c, 'p50_us'), us(m, 'p50_us'), us(e, 'p50_us'), us(r, 'p50_us'),
                us(c, 'p99_us'), us(m, 'p99_us'),
                fmt_ratio(c and c['p50_us'], m['p50_us']), fmt_ratio(m['p50_us'], e and e['p50_us']),
                us(c, 'cpu_us_per_op'), us(m, 'cpu_us_per_op'),
                fmt_ratio(m['cpu_us_per_op'], c and c['cpu_us_per_op']), us(e, 'cpu_us_per_op')))
    w('\n== Throughput, ops/s summed over client processes (median of %d runs) ==\n' % R['reps'])
    w('%-6s %5s %-13s %10s %10s %10s %10s | %8s %8s\n' % (
        'socket', 'procs', 'operation', 'cpython', 'mpmanager', 'echo', 'redis', 'mpm/cpy', 'mpm/echo'))
    for transport in R['transports']:
        for n in R['procs']:
            g = lat.get('%s/%d' % (transport, n), {})
            for op in OPS:
                m = g.get('mpmanager', {}).get(op)
                if not m:
                    continue
                c, e, r = (g.get(s, {}).get(op) for s in ('cpython', 'echo', 'redis'))
                v = lambda x: '%.0f' % x['ops_per_s'] if x else '-'
                w('%-6s %5d %-13s %10s %10s %10s %10s | %8s %8s\n' % (
                    transport, n, op, v(c), v(m), v(e), v(r),
                    fmt_ratio(m['ops_per_s'], c and c['ops_per_s']),
                    fmt_ratio(m['ops_per_s'], e and e['ops_per_s'])))
    mem = R.get('memory', {})
    if mem:
        w('\n== Server memory (peak RSS, VmHWM; unix socket) ==\n')
        w('%-22s %14s %14s %9s\n' % ('', 'cpython', 'mpmanager', 'cpy/mpm'))
        for what, label in (('objects', 'live objects'), ('connections', 'idle connections')):
            c, m = mem.get('cpython', {}).get(what), mem.get('mpmanager', {}).get(what)
            if not m:
                continue
            n = m['n']
            w('%-22s %11.1f MiB %11.1f MiB %9s\n' % ('%d %s' % (n, label),
              c['peak_rss'] / 2**20 if c else float('nan'), m['peak_rss'] / 2**20,
              fmt_ratio(c and c['peak_rss'], m['peak_rss'])))
            w('%-22s %12.0f B %12.0f B %9s\n' % ('  per ' + label.split()[-1][:-1],
              c['bytes_per'] if c else float('nan'), m['bytes_per'],
              fmt_ratio(c and c['bytes_per'], m['bytes_per'])))
    tg = targets(R)
    if tg:
        w('\n== Issue 6 targets (operations: %s, queue_putget and lock; CPU: the first five) ==\n'
          % ', '.join(SIMPLE))
        for name, detail, verdict in tg:
            w('  [%s] %s: %s\n' % (verdict, name, detail))
    for note in R['notes']:
        w('note: %s\n' % note)


def targets(R):
    """The performance targets judged on this run: (target, figures, verdict).
    A verdict is 'met', 'MISSED' or 'met for k of n' operations."""
    out = []
    def judge(name, ratios, ok, fmt='%.2f'):
        ratios = [(op, r) for op, r in ratios if r is not None]
        if not ratios:
            return
        good = [op for op, r in ratios if ok(r)]
        lo, hi = min(r for _, r in ratios), max(r for _, r in ratios)
        detail = (fmt + '-' + fmt + ' over %d operations') % (lo, hi, len(ratios))
        verdict = ('met' if len(good) == len(ratios) else
                   'MISSED' if not good else 'met for %d of %d' % (len(good), len(ratios)))
        out.append((name, detail, verdict))
    def field(g, server, op, key):
        x = g.get(server, {}).get(op)
        return x[key] if x else None
    def ratio(a, b):
        return a / b if a and b else None
    one = R['throughput'].get('unix/1', {})
    if one:
        calls = SIMPLE + ['queue_putget', 'lock']
        judge('unix, 1 process: p50 within 1.15x of the echo floor',
              [(op, ratio(field(one, 'mpmanager', op, 'p50_us'), field(one, 'echo', op, 'p50_us')))
               for op in calls], lambda r: r <= 1.15)
        judge("unix, 1 process: p50 at least 1.6x faster than CPython's server",
              [(op, ratio(field(one, 'cpython', op, 'p50_us'), field(one, 'mpmanager', op, 'p50_us')))
               for op in calls], lambda r: r >= 1.6)
        judge("unix, 1 process: server CPU per call at most 1/3 of CPython's",
              [(op, ratio(field(one, 'mpmanager', op, 'cpu_us_per_op'),
                          field(one, 'cpython', op, 'cpu_us_per_op'))) for op in SIMPLE],
              lambda r: r <= 1 / 3)
    for transport in R['transports']:
        counts = [n for n in R['procs'] if n > 1 and '%s/%d' % (transport, n) in R['throughput']]
        if not counts:
            continue
        n = 4 if 4 in counts else max(counts)
        g = R['throughput']['%s/%d' % (transport, n)]
        judge("%s, %d processes: throughput at least 1.8x CPython's server" % (transport, n),
              [(op, ratio(field(g, 'mpmanager', op, 'ops_per_s'), field(g, 'cpython', op, 'ops_per_s')))
               for op in SIMPLE + ['queue_putget', 'lock']], lambda r: r >= 1.8)
    mem = R.get('memory', {}).get('mpmanager', {})
    ref = R.get('memory', {}).get('cpython', {})
    if 'objects' in mem and 'connections' in mem:
        out.append(('%d live objects and %d idle connections held' % (
            mem['objects']['n'], mem['connections']['n']),
            '%.0f B per object (CPython %s), %.0f B per connection (CPython %s)' % (
                mem['objects']['bytes_per'],
                '%.0f B' % ref['objects']['bytes_per'] if 'objects' in ref else '-',
                mem['connections']['bytes_per'],
                '%.0f B' % ref['connections']['bytes_per'] if 'connections' in ref else '-'),
            'met'))
    return out


def chart(R, path, notes):
    matplotlib = import_or_install('matplotlib')
    if matplotlib is None:
        notes.append('chart skipped: matplotlib is not installed and pip could not install it')
        return
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = [k for k in R['throughput'] if 'mpmanager' in R['throughput'][k]]
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 2.6 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        g = R['throughput'][key]
        ops = [op for op in OPS if op in g['mpmanager']]
        width = 0.8 / len(R['servers'])
        for i, s in enumerate(R['servers']):
            ref = g.get('cpython', {})
            ys = [g.get(s, {}).get(op, {}).get('ops_per_s', 0) / ref[op]['ops_per_s']
                  if op in ref else 0 for op in ops]
            ax.bar([j + i * width for j in range(len(ops))], ys, width, label=s)
        ax.axhline(1, color='grey', lw=0.5)
        # Log scale: one-shot ops over TCP are ~180x, the rest near 1.
        ax.set_yscale('log')
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(ops))])
        ax.set_xticklabels(ops, fontsize=7)
        ax.set_ylabel('ops/s vs CPython (log)')
        ax.set_title('%s socket, %s client process(es)' % tuple(key.split('/')), fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    log('chart:', path)


# ------------------------------------------------------------------- main

def redraw(json_path, png_path):
    """Draws the chart of a saved run again (--redraw JSON PNG)."""
    with open(json_path) as f:
        R = json.load(f)
    chart(R, png_path, [])

def main():
    global BUSY_POLL_US
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    for m in MODES:
        g.add_argument('--' + m, dest='mode', action='store_const', const=m)
    ap.add_argument('--mpmanager', help='mpmanager binary (default: built by cargo)')
    ap.add_argument('--echo', help='echo_floor binary (default: built by cargo)')
    ap.add_argument('--no-build', action='store_true', help='do not run cargo build')
    ap.add_argument('--no-redis', action='store_true')
    ap.add_argument('--no-chart', action='store_true')
    ap.add_argument('--no-memory', action='store_true')
    ap.add_argument('--transports', default='unix,tcp')
    ap.add_argument('--redraw', nargs=2, metavar=('JSON', 'PNG'),
                    help='only draw the chart of a saved bench.json again')
    ap.add_argument('--busy-poll-us', type=int,
                    help="mpmanager's and the echo floor's --busy-poll-us (default: mpmanager's, 0)")
    ap.add_argument('--ops', default=','.join(OPS), help='comma-separated subset of: ' + ', '.join(OPS))
    ap.add_argument('--servers', default='cpython,mpmanager,echo,redis',
                    help='comma-separated subset of: cpython, mpmanager, echo, redis')
    ap.add_argument('--procs', help='comma-separated client process counts (default: by mode)')
    ap.add_argument('--reps', type=int, help='runs per figure (default: by mode)')
    ap.add_argument('--out', default=os.path.join(ROOT, 'bench-results'))
    args = ap.parse_args()
    if args.redraw:
        redraw(*args.redraw)
        return
    mode = args.mode or 'quick'
    cfg = dict(MODES[mode])
    if args.procs:
        cfg['procs'] = [int(x) for x in args.procs.split(',')]
    if args.reps:
        cfg['reps'] = args.reps
    if mode == 'smoke':
        args.no_redis = args.no_chart = True
    multiprocessing.current_process().authkey = KEY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))

    notes = []
    bins = find_binaries(args)
    wanted = args.servers.split(',')
    if 'redis' not in wanted:
        args.no_redis = True
    servers = [s for s in ('cpython', 'mpmanager', 'echo') if s in wanted]
    for s in servers:
        if s in bins and not os.path.exists(bins[s]):
            sys.exit('bench.py: %s binary not found: %s (build it, or pass --%s)' % (s, bins[s], s))
    redis_path = setup_redis(args, notes)
    if redis_path:
        bins['redis'] = redis_path
        servers.append('redis')
    transports = args.transports.split(',')
    ops = [o for o in args.ops.split(',') if o]
    bad = [o for o in ops if o not in OPS]
    if bad:
        sys.exit('bench.py: unknown operation(s) %s; known: %s' % (', '.join(bad), ', '.join(OPS)))
    if args.busy_poll_us is not None:
        BUSY_POLL_US = args.busy_poll_us
        notes.append('busy-poll limit of mpmanager and the echo floor: %d us' % args.busy_poll_us)
    tmp = tempfile.mkdtemp(prefix='mpm-bench-')
    R = {'mode': mode, 'reps': cfg['reps'], 'procs': cfg['procs'], 'servers': servers,
         'transports': transports, 'ops': {o: OPS[o][0] for o in ops}, 'notes': notes,
         'machine': {'nproc': os.cpu_count(), 'python': sys.version.split()[0],
                     'kernel': os.uname().release}, 'throughput': {}, 'runs': {}, 'memory': {}}
    try:
        for transport in transports:
            running = {s: start_server(s, transport, tmp, bins) for s in servers}
            for n in cfg['procs']:
                runs = {s: [] for s in servers}
                for rep in range(cfg['reps']):
                    for s in servers:  # interleaved, so drift hits all alike
                        plan = []
                        for op in ops:
                            if s == 'redis' and op not in REDIS_OPS:
                                continue
                            plan.append((op, cfg['secs']))
                        log('%s %s procs=%d rep=%d' % (transport, s, n, rep + 1))
                        runs[s].append(run_clients(running[s], n, plan))
                R['throughput']['%s/%d' % (transport, n)] = {s: median_runs(runs[s]) for s in servers}
                R['runs']['%s/%d' % (transport, n)] = runs
            for s in running.values():
                stop(s)
        if not args.no_memory:
            for s in ('cpython', 'mpmanager'):
                log('memory', s)
                R['memory'][s] = memory(s, tmp, bins, cfg['objects'], cfg['conns'])
        os.makedirs(args.out, exist_ok=True)
        R['targets'] = targets(R)
        with open(os.path.join(args.out, 'bench.json'), 'w') as f:
            json.dump(R, f, indent=1)
        if not args.no_chart:
            chart(R, os.path.join(args.out, 'bench.png'), notes)
        else:
            notes.append('chart skipped (%s)' % ('--smoke' if mode == 'smoke' else '--no-chart'))
        report(R, sys.stdout)
        log('raw results:', os.path.join(args.out, 'bench.json'))
    finally:
        cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        cleanup()
        sys.exit(130)
