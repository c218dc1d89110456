"""Stress: several client processes hammer one Queue, one Lock and one
Barrier of one manager server at once, for a bounded time.

    python stress_sync.py ADDRESS AUTHKEY_HEX PROCESSES SECONDS

ADDRESS is a unix socket path. Prints one JSON line with the findings; the
Rust test (tests/integration/stress.rs) checks them and the server's /proc figures:

* queue: every item put (by any process) is got exactly once;
* lock: never two holders (a shared Value records the holder; each holder
  checks it is free on entry and still its own on exit);
* barrier: every round completes with the arrival indices 0..N-1 exactly
  once each, and no wait breaks.
"""
import json
import multiprocessing
import os
import queue as queue_mod
import sys
import threading
import time
from multiprocessing.managers import SyncManager

ROUNDS_CAP = 10 ** 6


def connect(address, key):
    multiprocessing.current_process().authkey = key
    m = SyncManager(address=address, authkey=key)
    m.connect()
    return m


def producer_consumer(address, key, q, n_items, me, results):
    """Puts n_items tagged items and gets as many as it can meanwhile."""
    got = []
    for i in range(n_items):
        q.put((me, i))
        if i % 2:
            try:
                got.append(q.get(timeout=0.5))
            except queue_mod.Empty:
                pass
    results.put(("queue", me, got))


def locker(lock, holder, me, deadline, results):
    entries = 0
    violations = 0
    while time.monotonic() < deadline:
        with lock:
            if holder.value != 0:
                violations += 1
            holder.value = me
            entries += 1
            if holder.value != me:
                violations += 1
            holder.value = 0
    results.put(("lock", me, entries, violations))


def barrier_waiter(barrier, rounds, me, results):
    indices = []
    broken = 0
    for _ in range(rounds):
        try:
            indices.append(barrier.wait(timeout=60))
        except threading.BrokenBarrierError:
            broken += 1
            break
    results.put(("barrier", me, indices, broken))


def child(address, key, me, seconds, shared):
    # The proxies in `shared` came through fork; this process's own
    # connections are opened on first use (authkey set by connect()).
    m = connect(address, key)
    q = shared["q"]
    lock = shared["lock"]
    holder = shared["holder"]
    barrier = shared["barrier"]
    results = shared["results"]
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=locker, args=(lock, holder, me, deadline, results)),
        threading.Thread(target=producer_consumer,
                         args=(address, key, q, shared["items"], me, results)),
        threading.Thread(target=barrier_waiter,
                         args=(barrier, shared["rounds"], me, results)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    del m


def main():
    address, key_hex, nproc, seconds = sys.argv[1:5]
    key = bytes.fromhex(key_hex)
    nproc = int(nproc)
    seconds = float(seconds)
    m = connect(address, key)
    shared = {
        "q": m.Queue(),
        "lock": m.Lock(),
        "holder": m.Value("i", 0),
        "barrier": m.Barrier(nproc),
        "results": m.Queue(),
        "items": 2000,
        "rounds": 200,
    }
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=child,
                         args=(address, key, i + 1, seconds, shared))
             for i in range(nproc)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    elapsed = time.monotonic() - t0
    exitcodes = [p.exitcode for p in procs]

    got = []
    lock_entries = 0
    lock_violations = 0
    rounds = {}
    broken = 0
    n_results = 0
    while n_results < 3 * nproc:
        kind, me, *rest = shared["results"].get(timeout=60)
        n_results += 1
        if kind == "queue":
            got += [tuple(x) for x in rest[0]]
        elif kind == "lock":
            lock_entries += rest[0]
            lock_violations += rest[1]
        else:
            for r, idx in enumerate(rest[0]):
                rounds.setdefault(r, []).append(idx)
            broken += rest[1]
    q = shared["q"]
    while True:
        try:
            got.append(tuple(q.get_nowait()))
        except queue_mod.Empty:
            break
    expected = sorted((me, i) for me in range(1, nproc + 1)
                      for i in range(shared["items"]))
    got.sort()
    bad_rounds = [r for r, idx in rounds.items()
                  if sorted(idx) != list(range(nproc))]
    print(json.dumps({
        "exitcodes": exitcodes,
        "elapsed": round(elapsed, 2),
        "items_put": len(expected),
        "items_got": len(got),
        "items_exactly_once": got == expected,
        "lock_entries": lock_entries,
        "lock_violations": lock_violations,
        "barrier_rounds": len(rounds),
        "barrier_bad_rounds": len(bad_rounds),
        "barrier_broken": broken,
    }))
    del shared, q
    m = None


if __name__ == "__main__":
    main()
