# Busy polling A/B: CPython's SyncManager server, `mpmanager serve` and the
# echo floor with each --busy-poll-us value given, driven by unmodified
# Python proxies (`ns.x` in a loop) in slices, servers interleaved, so a
# change of the shared machine's state hits every server alike. Prints p50
# latency, server CPU per call and ops/s (median of the slices).
#
#   cargo build --release -p mpmanager-cli --bin mpmanager --example echo_floor
#   SLICES=9 OPS=6000 python3 scripts/busy_poll_ab.py 0,50 1   # values, processes
import multiprocessing as mp, os, subprocess, sys, time, tempfile, statistics
from multiprocessing.managers import SyncManager
KEY = b'k'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get('CARGO_TARGET_DIR', os.path.join(ROOT, 'target'))
MPM = os.path.join(TARGET, 'release', 'mpmanager')
ECHO = os.path.join(TARGET, 'release', 'examples', 'echo_floor')
tmp = tempfile.mkdtemp()
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
def cpu(pid):
    cid = ctypes.c_int()
    assert _libc.clock_getcpuclockid(pid, ctypes.byref(cid)) == 0
    return time.clock_gettime(cid.value)
servers = {}
import atexit, shutil
@atexit.register
def _stop():
    for p, a in servers.values():
        p.kill()
    shutil.rmtree(tmp, ignore_errors=True)
def start(name, argv, env=None):
    a = os.path.join(tmp, name)
    p = subprocess.Popen(argv(a), env=dict(os.environ, MPMANAGER_AUTHKEY='k', **(env or {})), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(a): time.sleep(0.01)
    servers[name] = (p, a)
polls = sys.argv[1].split(',') if len(sys.argv) > 1 else ['0', '50']
nprocs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
start('cpython', lambda a: [sys.executable, '-c', 'import multiprocessing as m\nfrom multiprocessing.managers import SyncManager\nm.current_process().authkey=b"k"\nSyncManager(address=%r, authkey=b"k").get_server().serve_forever()' % a])
for bp in polls:
    start('mpm%s' % bp, lambda a: [MPM, 'serve', '--address', 'unix:' + a, '--quiet', '--busy-poll-us', bp])
    start('echo%s' % bp, lambda a: [ECHO, 'unix:' + a], {'MPMANAGER_BUSY_POLL_US': bp})
def client(addr, n, q):
    mp.current_process().authkey = KEY
    m = SyncManager(address=addr, authkey=KEY); m.connect()
    ns = m.Namespace(); ns.x = 1
    for _ in range(500): ns.x
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        s = time.perf_counter(); ns.x; lat.append(time.perf_counter() - s)
    q.put((lat, time.perf_counter() - t0))
res = {k: {'p50': [], 'cpu': [], 'ops': []} for k in servers}
ctx = mp.get_context('fork')
for rnd in range(int(os.environ.get("SLICES", 5))):
    for name, (p, a) in servers.items():
        q = ctx.Queue(); c0 = cpu(p.pid)
        ps = [ctx.Process(target=client, args=(a, int(os.environ.get("OPS", 4000)), q)) for _ in range(nprocs)]
        for x in ps: x.start()
        out = [q.get() for _ in ps]
        for x in ps: x.join()
        c1 = cpu(p.pid)
        lat = sorted(sum((o[0] for o in out), []))
        res[name]['p50'].append(lat[len(lat) // 2] * 1e6)
        res[name]['cpu'].append((c1 - c0) / len(lat) * 1e6)
        res[name]['ops'].append(len(lat) / max(o[1] for o in out))
print('procs=%d  (median of slices)' % nprocs)
print('%-10s %8s %8s %10s %8s' % ('server', 'p50 us', 'cpu us', 'ops/s', 'vs cpy'))
base = statistics.median(res['cpython']['ops'])
for k, r in res.items():
    o = statistics.median(r['ops'])
    print('%-10s %8.1f %8.1f %10.0f %7.2fx' % (k, statistics.median(r['p50']), statistics.median(r['cpu']), o, o / base))
