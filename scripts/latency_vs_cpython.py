# Side-by-side per-call latency: the same CPython client against CPython's own
# SyncManager server and against `mpmanager serve`, unix socket, same run.
# usage: cargo build --release -p mpmanager-cli && python3 scripts/latency_vs_cpython.py target/release/mpmanager
import multiprocessing, os, subprocess, sys, tempfile, time
from multiprocessing.managers import SyncManager

KEY = b'bench-key'
multiprocessing.current_process().authkey = KEY

def bench(m):
    out = {}
    l = m.list(range(10)); ns = m.Namespace(); ns.x = 1; d = m.dict()
    def t(name, fn, n):
        best = float('inf')
        for _ in range(5):
            s = time.perf_counter()
            for _ in range(n): fn()
            best = min(best, (time.perf_counter() - s) / n)
        out[name] = best
    t('l[1]', lambda: l[1], 2000)
    t('l.append(1)', lambda: l.append(1), 2000)
    t('ns.x', lambda: ns.x, 2000)
    t('d[k] = v', lambda: d.__setitem__('k', 1), 2000)
    t('m.list() create+drop', lambda: m.list(), 200)
    return out

tmp = tempfile.mkdtemp()
ref = SyncManager(address=os.path.join(tmp, 'ref'), authkey=KEY); ref.start()
r = bench(ref); ref.shutdown()
addr = os.path.join(tmp, 'ours')
env = dict(os.environ, MPMANAGER_AUTHKEY=KEY.decode())
p = subprocess.Popen([sys.argv[1], 'serve', '--address', 'unix:' + addr, '--log-level', 'warn'], env=env, stderr=subprocess.DEVNULL)
while not os.path.exists(addr): time.sleep(0.01)
m = SyncManager(address=addr, authkey=KEY); m.connect()
o = bench(m); p.terminate(); p.wait()
print('Python %d.%d client, unix socket, best of 5 loops' % sys.version_info[:2])
print('%-24s %12s %12s %7s' % ('operation', 'CPython', 'mpmanager', 'ratio'))
for k in r:
    print('%-24s %10.1f us %10.1f us %6.2fx' % (k, r[k] * 1e6, o[k] * 1e6, r[k] / o[k]))
