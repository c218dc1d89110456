#!/usr/bin/env python3
"""Chaos soak: worker processes doing mixed queue/dict/lock/condition work
against `mpmanager serve` while a killer SIGKILLs them at random; prints a
summary and exits non-zero if anything was lost or stuck.

    python3 scripts/chaos_soak.py [--seconds 60] [--workers 4] [--binary PATH]
                                  [--kill-every 0.25] [--tcp]

Workers (each a real CPython process, restarted when killed):
  * producers put unique items (`p<worker>-<n>`) into a Queue, and tell the
    supervisor each put that returned;
  * consumers `get` items and tell the supervisor each reply the moment it
    is read off the socket (before it is even unpickled);
  * lockers increment a dict counter under a shared RLock and signal a
    Condition whose waiters are other lockers.
At the end the supervisor drains the queue and checks:
  * every item whose put returned was got exactly once or is still queued
    (an item put by a producer killed mid-put may appear once without a
    confirmation). A reply the server sent to a consumer killed before it
    read it must come back to the queue: the server sees the unread reply
    (the kernel resets the connection) and puts the item back;
  * the RLock and the Condition can be acquired by a live client, and the
    counter equals the increments confirmed;
  * the server's RSS at the end is within a few MiB of its RSS after warm-up
    (printed every 10 s).
"""
import argparse
import multiprocessing as mp
import os
import pickle
import queue
import random
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.managers import AcquirerProxy, ConditionProxy, DictProxy, SyncManager

KEY = b"chaos-soak-key"
for _name, _proxy in [("get_q", None), ("get_rl", AcquirerProxy),
                      ("get_c", ConditionProxy), ("get_d", DictProxy)]:
    SyncManager.register(_name, proxytype=_proxy) if _proxy else SyncManager.register(_name)


def connect(address):
    mp.current_process().authkey = KEY
    m = SyncManager(address=address, authkey=KEY)
    m.connect()
    return m


def report(fd, line):
    os.write(fd, (line + "\n").encode())


def producer(address, wid, fd):
    m = connect(address)
    q = m.get_q()
    n = 0
    while True:
        item = "p%d-%d" % (wid, n)
        report(fd, "putting " + item)
        q.put(item)
        report(fd, "put " + item)
        n += 1
        time.sleep(random.uniform(0, 0.004))


def consumer(address, wid, fd):
    # Each reply is reported as soon as it is read off the socket, before
    # it is unpickled: what the client read is known even if it is killed
    # the next instant (the supervisor unpickles the raw frames).
    from multiprocessing.connection import Connection
    read = Connection._recv_bytes

    def recv_and_report(self, maxsize=None):
        buf = read(self, maxsize)
        report(fd, "raw " + buf.getvalue().hex())
        return buf

    Connection._recv_bytes = recv_and_report
    m = connect(address)
    q = m.get_q()
    while True:
        try:
            q.get(timeout=1)
        except queue.Empty:
            continue


def locker(address, wid, fd):
    m = connect(address)
    rl, c, d = m.get_rl(), m.get_c(), m.get_d()
    while True:
        with rl:
            rl.acquire()           # two levels held
            d["count"] = d.get("count", 0) + 1
            report(fd, "incremented")
            rl.release()
        with c:
            if random.random() < 0.5:
                c.wait(0.05)
            else:
                c.notify()


ROLES = [producer, consumer, locker, consumer, producer, locker]

# CPython's server with the same shared objects (for --cpython).
CPYTHON_SERVER = r'''
import os, queue, sys, threading
from multiprocessing.managers import AcquirerProxy, ConditionProxy, DictProxy, SyncManager
objs = {"get_q": queue.Queue(), "get_rl": threading.RLock(),
        "get_c": threading.Condition(), "get_d": {}}
class M(SyncManager): pass
for name, proxy in [("get_q", None), ("get_rl", AcquirerProxy),
                    ("get_c", ConditionProxy), ("get_d", DictProxy)]:
    M.register(name, callable=(lambda o=objs[name]: o), proxytype=proxy)
a = sys.argv[1]
if a.startswith("unix:"):
    address = a[5:]
else:
    address = ("127.0.0.1", 0)
m = M(address=address, authkey=os.environ["MPMANAGER_AUTHKEY"].encode())
srv = m.get_server()
addr = srv.address
print(addr if isinstance(addr, str) else "%s:%d" % addr, flush=True)
print("unix:" + addr if isinstance(addr, str) else "%s:%d" % addr, file=sys.stderr)
srv.serve_forever()
'''


def start_worker(address, role, wid):
    r, w = os.pipe()
    p = mp.get_context("fork").Process(target=role, args=(address, wid, w), daemon=True)
    p.start()
    os.close(w)
    return p, r


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--kill-every", type=float, default=0.25,
                    help="mean seconds between kills")
    ap.add_argument("--binary", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "mpmanager"))
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument("--release-on-disconnect", action="store_true")
    ap.add_argument("--cpython", action="store_true",
                    help="run the same soak against CPython's own manager server")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="mpm-chaos-")
    if args.tcp:
        listen = "127.0.0.1:0"
    else:
        listen = "unix:" + os.path.join(tmp, "s.sock")
    cmd = [args.binary, "serve", "--address", listen, "--print-address", "--quiet",
           "--log-level", "warn",
           "--object", "get_q=Queue", "--object", "get_rl=RLock",
           "--object", "get_c=Condition", "--object", "get_d=dict"]
    if args.release_on_disconnect:
        cmd.append("--release-on-disconnect")
    log = open(os.path.join(tmp, "server.log"), "w+")
    if args.cpython:
        cmd = [sys.executable, "-c", CPYTHON_SERVER, listen]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                              env=dict(os.environ, MPMANAGER_AUTHKEY=KEY.decode()))
    printed = server.stdout.readline().decode().strip()
    if printed.startswith("unix:") or printed.startswith("/"):
        address = printed[len("unix:"):] if printed.startswith("unix:") else printed
    else:
        host, port = printed.rsplit(":", 1)
        address = (host, int(port))

    workers = {}  # read fd -> (process, role index, wid)
    buffers = {}
    put_started, put_done, got = set(), set(), []
    increments = 0
    kills = 0
    kills_by_role = {}
    wid = 0
    for i in range(args.workers):
        p, r = start_worker(address, ROLES[i % len(ROLES)], wid)
        workers[r] = (p, i % len(ROLES), wid)
        buffers[r] = b""
        wid += 1

    def take(fd, data):
        nonlocal increments
        buffers[fd] += data
        *lines, buffers[fd] = buffers[fd].split(b"\n")
        for line in lines:
            kind, _, item = line.decode().partition(" ")
            if kind == "putting":
                put_started.add(item)
            elif kind == "put":
                put_done.add(item)
            elif kind == "raw":
                try:
                    reply = pickle.loads(bytes.fromhex(item))
                except Exception:
                    continue  # a handshake message
                if (isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "#RETURN"
                        and isinstance(reply[1], str)):
                    got.append(reply[1])
            elif kind == "incremented":
                increments += 1

    start = time.monotonic()
    next_kill = start + random.expovariate(1 / args.kill_every)
    next_print = start + 10
    rss_warm = None
    rss_series = []
    progress = [0]  # increments at each 10 s mark: lockers stuck if flat
    while time.monotonic() - start < args.seconds:
        ready, _, _ = select.select(list(workers), [], [], 0.02)
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                take(fd, data)
        now = time.monotonic()
        if now >= next_kill:
            fd = random.choice(list(workers))
            p, role, _ = workers.pop(fd)
            os.kill(p.pid, signal.SIGKILL)
            p.join()
            while True:  # what it said before dying
                data = os.read(fd, 65536)
                if not data:
                    break
                take(fd, data)
            os.close(fd)
            del buffers[fd]
            kills += 1
            name = ROLES[role].__name__
            kills_by_role[name] = kills_by_role.get(name, 0) + 1
            p, r = start_worker(address, ROLES[role], wid)
            wid += 1
            workers[r] = (p, role, wid)
            buffers[r] = b""
            next_kill = now + random.expovariate(1 / args.kill_every)
        if now >= next_print:
            rss = rss_kib(server.pid)
            if rss_warm is None:
                rss_warm = rss
            rss_series.append(rss)
            print("%5.0f s  kills %4d  puts %6d  gets %6d  increments %6d  server RSS %6d KiB"
                  % (now - start, kills, len(put_done), len(got), increments, rss), flush=True)
            progress.append(increments)
            next_print += 10

    for fd, (p, _, _) in list(workers.items()):
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            take(fd, data)
        os.close(fd)

    # Drain and check with a live client.
    m = connect(address)
    q = m.get_q()
    remaining = []
    while True:
        try:
            remaining.append(q.get(timeout=0.5))
        except queue.Empty:
            break
    seen = got + remaining
    dup = len(seen) - len(set(seen))
    seen = set(seen)
    lost = sorted(put_done - seen)
    unconfirmed = (seen - put_done)
    phantom = sorted(unconfirmed - put_started)
    rl_ok = m.get_rl().acquire(timeout=5)
    c = m.get_c()
    c_ok = c.acquire(timeout=5)
    if c_ok:
        c.release()
    count = m.get_d().get("count", 0)
    rss_end = rss_kib(server.pid)
    server.terminate()
    server.wait()
    log.seek(0)
    text = log.read()
    warnings = text.count(" WARN ")
    put_back = text.count("put back at the head of the queue")
    cancelled_gets = text.count("cancelled queue.Queue.get")
    consumer_kills = kills_by_role.get("consumer", 0)
    # Kills the server cannot see: the consumer was between two calls (it
    # had read its last reply). Only there can an item be lost, read by a
    # client killed before it could report it.
    unseen = consumer_kills - put_back - cancelled_gets
    if args.cpython:
        unseen = 0  # CPython's server says nothing: no loss can be explained

    print()
    print("chaos soak (%s server): %.0f s, %d workers, %d SIGKILLs (%s), %s%s"
          % ("CPython's" if args.cpython else "mpmanager's", args.seconds, args.workers, kills,
             ", ".join("%s %d" % kv for kv in sorted(kills_by_role.items())),
             "TCP" if args.tcp else "unix socket",
             ", --release-on-disconnect" if args.release_on_disconnect else ""))
    print("  items put (confirmed)      %d" % len(put_done))
    print("  items got                  %d (+%d still queued)" % (len(got), len(remaining)))
    print("  got twice                  %d" % dup)
    print("  consumer kills             %d: %d while blocked in get (cancelled, nothing taken), "
          "%d with a reply unread (item put back), %d between calls"
          % (consumer_kills, cancelled_gets, put_back, unseen))
    print("  lost                       %d%s" % (len(lost), "  " + ", ".join(lost[:10]) if lost else ""))
    if lost:
        print("                             (read off the socket by a consumer killed before it "
              "reported them: at most the %d kills between calls)" % unseen)
    print("  put by a killed producer   %d (in the queue or got, never confirmed)" % len(unconfirmed - set(phantom)))
    print("  never put                  %d" % len(phantom))
    print("  RLock free afterwards      %s" % rl_ok)
    print("  Condition free afterwards  %s" % c_ok)
    print("  counter                    %d (increments confirmed %d; a locker killed after "
          "its write and before its report adds one)" % (count, increments))
    stuck = len(progress) > 2 and progress[-1] == progress[-2]
    print("  lockers                    %s" % (
        "STUCK: no increment in the last 10 s (a lock held by a dead client)" if stuck
        else "progressing (%d increments in the last 10 s)" % (progress[-1] - progress[-2])
        if len(progress) > 1 else "?"))
    print("  server RSS                 %s KiB after warm-up, %d KiB at the end"
          % (rss_warm, rss_end))
    print("  server WARN lines          %d" % warnings)
    print("  server log                 %s" % log.name)
    ok = (len(lost) <= max(unseen, 0) and not dup and not phantom and rl_ok and c_ok and not stuck
          and increments <= count <= increments + kills_by_role.get("locker", 0))
    print("RESULT: %s" % ("OK" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
