"""Clients killed at the wrong moment (SIGKILL), against a running manager
server: nothing may be lost and nothing may stay stuck.

    python faults.py ADDRESS KEY ROUNDS POLICY

ADDRESS is a unix socket path or host:port of a server started with the
objects named below; POLICY is 1 if it runs with --release-on-disconnect.
Each scenario kills a real client process (its calls on their own
connections, as CPython's proxies make them) while it is blocked in a call
or holds something, then checks with live clients that no item was taken,
no notification or permit was eaten, and every primitive is usable. Prints
one line per scenario and ends with 'FAULTS OK' (exit 0), or raises.
"""
import multiprocessing as mp
import os
import queue
import select
import signal
import sys
import threading
import time
from multiprocessing.managers import (AcquirerProxy, BarrierProxy,
                                      ConditionProxy, EventProxy, SyncManager)

OBJECTS = {
    "get_q": None, "get_q1": None, "get_jq": None,
    "get_rl": AcquirerProxy, "get_l": AcquirerProxy, "get_s": AcquirerProxy,
    "get_c": ConditionProxy, "get_b": BarrierProxy, "get_e": EventProxy,
}
for _name, _proxy in OBJECTS.items():
    SyncManager.register(_name, proxytype=_proxy) if _proxy else SyncManager.register(_name)

def child(address, key, kind, ready_fd):
    """What a killed client runs (in a forked process, as a pool worker
    would): connect, take the object, say 'ready', then block (or hold)
    until killed."""
    mp.current_process().authkey = key
    m = SyncManager(address=parse_address(address), authkey=key)
    m.connect()

    def ready():
        os.write(ready_fd, b"r")

    if kind == "get":
        q = m.get_q()
        ready()
        q.get()
    elif kind == "get20":
        started = threading.Barrier(21)

        def consumer():
            q = m.get_q()  # each thread has its own connection
            started.wait()
            q.get()

        for _ in range(20):
            threading.Thread(target=consumer, daemon=True).start()
        started.wait()
        ready()
    elif kind == "put":
        q = m.get_q1()
        ready()
        q.put("B")
    elif kind == "join":
        q = m.get_jq()
        ready()
        q.join()
    elif kind == "rlock":
        r = m.get_rl()
        r.acquire()
        r.acquire()
        ready()
    elif kind == "lock":
        m.get_l().acquire()
        ready()
    elif kind == "cond":
        c = m.get_c()
        c.acquire()
        ready()
        c.wait()
    elif kind == "sem":
        s = m.get_s()
        ready()
        s.acquire()
    elif kind == "barrier":
        b = m.get_b()
        ready()
        b.wait()
    elif kind == "event":
        e = m.get_e()
        ready()
        e.wait()
    time.sleep(1000)


# Blocking calls need this long to reach the server after 'ready'.
SETTLE = 0.15
FORK = mp.get_context("fork")


def parse_address(a):
    if ":" in a and not a.startswith("/"):
        host, port = a.rsplit(":", 1)
        return (host, int(port))
    return a


class Faults:
    def __init__(self, address, key, rounds, policy):
        self.address = address
        self.key = key.encode()
        self.rounds = rounds
        self.policy = policy
        mp.current_process().authkey = self.key
        self.m = SyncManager(address=parse_address(address), authkey=self.key)
        self.m.connect()

    def kill_while(self, kind):
        """Starts a client doing `kind`, waits until it blocks, SIGKILLs it."""
        r, w = os.pipe()
        p = FORK.Process(target=child, args=(self.address, self.key, kind, w), daemon=True)
        p.start()
        os.close(w)
        try:
            ready = select.select([r], [], [], 30)[0] and os.read(r, 1)
        finally:
            os.close(r)
        if ready != b"r":
            p.kill()
            p.join()
            raise AssertionError("the %s client did not start (exit code %s)" % (kind, p.exitcode))
        time.sleep(SETTLE)
        os.kill(p.pid, signal.SIGKILL)
        p.join()

    def scenario(self, name, fn):
        t0 = time.monotonic()
        for i in range(self.rounds):
            try:
                fn()
            except Exception as e:
                raise AssertionError("%s, round %d: %s: %s" % (name, i + 1, type(e).__name__, e))
        print("%-22s %3d rounds ok  (%.1f s)" % (name, self.rounds, time.monotonic() - t0),
              flush=True)

    # -- the scenarios ----------------------------------------------------

    def get_then_put(self):
        q = self.m.get_q()
        self.kill_while("get")
        q.put(("item", 1))
        got = q.get(timeout=5)
        assert got == ("item", 1), got
        assert q.qsize() == 0

    def twenty_consumers(self):
        q = self.m.get_q()
        self.kill_while("get20")
        for i in range(20):
            q.put(i)
        got = sorted(q.get(timeout=5) for _ in range(20))
        assert got == list(range(20)), "items lost: %s" % sorted(set(range(20)) - set(got))

    def blocked_put(self):
        q = self.m.get_q1()
        q.put("A")
        self.kill_while("put")
        assert q.get(timeout=5) == "A"
        try:
            x = q.get(timeout=0.3)
        except queue.Empty:
            pass
        else:
            raise AssertionError("a dead client's blocked put added %r" % (x,))

    def join_freed(self):
        q = self.m.get_jq()
        q.put("task")
        self.kill_while("join")
        assert q.get(timeout=5) == "task"
        q.task_done()
        q.join()

    def rlock_held(self):
        r = self.m.get_rl()
        self.kill_while("rlock")
        assert r.acquire(timeout=5), "RLock still held by a dead client"
        r.release()

    def lock_held(self):
        lock = self.m.get_l()
        self.kill_while("lock")
        got = lock.acquire(timeout=1 if self.policy else 0.2)
        if self.policy:
            assert got, "Lock still held by a dead client under --release-on-disconnect"
        else:
            assert not got, "Lock released without --release-on-disconnect"
            lock.release()  # CPython lets anyone release a Lock
            assert lock.acquire(timeout=1)
        lock.release()

    def condition_wait(self):
        c = self.m.get_c()
        self.kill_while("cond")
        assert c.acquire(timeout=5), "Condition locked after its waiter died"
        c.notify()
        c.release()
        # The dead waiter took no notification and did not re-take the lock.
        assert c.acquire(timeout=5), "a dead waiter re-took the Condition's lock"
        c.release()
        # A live waiter gets the next notification.
        result = []
        ready = threading.Event()

        def live():
            lc = self.m.get_c()
            lc.acquire()
            ready.set()
            result.append(lc.wait(5))
            lc.release()

        t = threading.Thread(target=live)
        t.start()
        ready.wait(5)
        time.sleep(0.1)
        assert c.acquire(timeout=5)
        c.notify()
        c.release()
        t.join(10)
        assert result == [True], "live waiter: %r" % (result,)

    def semaphore_acquire(self):
        s = self.m.get_s()
        self.kill_while("sem")
        s.release()
        assert s.acquire(timeout=5), "the permit went to a dead waiter"

    def barrier_wait(self):
        b = self.m.get_b()
        self.kill_while("barrier")
        try:
            b.wait(5)
        except threading.BrokenBarrierError:
            pass
        else:
            raise AssertionError("a live party passed with a dead one counted")
        b.reset()
        # Usable again: two live parties pass together.
        results = []

        def party():
            results.append(self.m.get_b().wait(5))

        ts = [threading.Thread(target=party) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        assert sorted(results) == [0, 1], results

    def event_wait(self):
        e = self.m.get_e()
        self.kill_while("event")
        e.set()
        assert e.wait(1)
        e.clear()

    def run(self):
        for name, fn in [
            ("queue get", self.get_then_put),
            ("20 consumers", self.twenty_consumers),
            ("blocked put", self.blocked_put),
            ("join", self.join_freed),
            ("RLock held", self.rlock_held),
            ("Lock held", self.lock_held),
            ("Condition.wait", self.condition_wait),
            ("Semaphore.acquire", self.semaphore_acquire),
            ("Barrier.wait", self.barrier_wait),
            ("Event.wait", self.event_wait),
        ]:
            self.scenario(name, fn)
        print("FAULTS OK", flush=True)


if __name__ == "__main__":
    address, key, rounds, policy = sys.argv[1:5]
    Faults(address, key, int(rounds), policy == "1").run()
