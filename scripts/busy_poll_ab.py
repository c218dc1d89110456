# Busy polling A/B: CPython's SyncManager server, and `mpmanager serve` and
# the echo floor once per --busy-poll-us value given, driven by unmodified
# Python proxies (`ns.x` in a loop, scripts/bench.py's clients) in short
# slices, servers interleaved, so a change of the shared machine's state
# hits every server alike. Prints p50 latency, server CPU per call and
# ops/s, each the median over the slices.
#
#   cargo build --release -p mpmanager-cli --bin mpmanager --example echo_floor
#   SLICES=9 SECS=0.15 python3 scripts/busy_poll_ab.py 0,50 1   # values, processes
import multiprocessing, os, shutil, statistics, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get('CARGO_TARGET_DIR', os.path.join(ROOT, 'target'))
BINS = {'mpmanager': os.path.join(TARGET, 'release', 'mpmanager'),
        'echo': os.path.join(TARGET, 'release', 'examples', 'echo_floor')}


def main():
    polls = [int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else '0,50').split(',')]
    nprocs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    slices = int(os.environ.get('SLICES', 5))
    secs = float(os.environ.get('SECS', 0.15))
    multiprocessing.current_process().authkey = bench.KEY
    tmp = tempfile.mkdtemp(prefix='mpm-ab-')
    try:
        servers = {'cpython': bench.start_server('cpython', 'unix', tmp, BINS)}
        for bp in polls:
            for kind, label in (('mpmanager', 'mpm'), ('echo', 'echo')):
                servers['%s%d' % (label, bp)] = bench.start_server(kind, 'unix', tmp, BINS, busy_poll_us=bp)
        res = {k: [] for k in servers}
        for _ in range(slices):
            for label, server in servers.items():
                res[label].append(bench.run_clients(server, nprocs, [('ns_get', secs)])['ns_get'])
    finally:
        bench.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    print('ns.x, %d client process(es), median of %d slices of %.2f s' % (nprocs, slices, secs))
    print('%-10s %8s %8s %10s %8s' % ('server', 'p50 us', 'cpu us', 'ops/s', 'vs cpy'))
    med = {k: {f: statistics.median(r[f] for r in rs) for f in rs[0]} for k, rs in res.items()}
    for k, m in med.items():
        print('%-10s %8.1f %8.1f %10.0f %7.2fx' % (
            k, m['p50_us'], m['cpu_us_per_op'], m['ops_per_s'], m['ops_per_s'] / med['cpython']['ops_per_s']))


if __name__ == '__main__':
    main()
