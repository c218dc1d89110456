# Scenario 10 — Queue, JoinableQueue and Event through unmodified CPython
# clients (crates/cli/tests/integration/serve_queue.rs): the behaviours CPython's
# _TestQueue / _TestEvent / TestSyncManagerTypes rely on, timeouts, the real
# exception classes (`except queue.Empty`), two client processes sharing a
# queue, named queues (`register('get_queue')`, `--object q=Queue:2`), and a
# queue carrying a proxy to a list.
#
# For 'cpython' the reference server is ServerManager (SyncManager plus the
# typeids `get_queue` and `q` backed by callables); for 'mpmanager' the
# harness starts `mpmanager serve --object get_queue=Queue --object q=Queue:2`.
import queue
import threading
import time
from multiprocessing.managers import SyncManager

_QUEUES = {}


def _named(name, maxsize):
    if name not in _QUEUES:
        _QUEUES[name] = queue.Queue(maxsize)
    return _QUEUES[name]


def _get_queue():
    return _named('get_queue', 0)


def _q():
    return _named('q', 2)


class ServerManager(SyncManager):
    pass


ServerManager.register('get_queue', callable=_get_queue)
ServerManager.register('q', callable=_q)


class ClientManager(SyncManager):
    pass


ClientManager.register('get_queue')
ClientManager.register('q')

REFERENCE_MANAGER = ServerManager
CLIENT_MANAGER = ClientManager


def timed(fn, *args, **kwds):
    """(result or exception type name, seconds)."""
    start = time.monotonic()
    try:
        result = fn(*args, **kwds)
    except Exception as e:
        result = type(e).__name__
    return result, time.monotonic() - start


def consumer(jq, done):
    # A second client process: take items until the queue stays empty.
    while True:
        try:
            item = jq.get(timeout=2)
        except queue.Empty:
            break
        done.append(item * 10)
        jq.task_done()


def producer(q, n):
    for i in range(n):
        q.put(('item', i))


def setter(e, delay):
    time.sleep(delay)
    e.set()


def main(m):
    import multiprocessing
    ctx = multiprocessing.get_context('spawn')

    section('Queue basics (_TestQueue)')
    q = m.Queue(maxsize=6)
    print(str(q))
    q.put(1)
    q.put(2, True)
    q.put(3, True, None)
    q.put(4, False)
    q.put(5, False, None)
    q.put_nowait(6)
    print(q.qsize(), q.full(), q.empty())
    attempt('q.put(7, False)', q.put, 7, False)
    attempt('q.put_nowait(7)', q.put_nowait, 7)
    result, took = timed(q.put, 7, False, 30)
    print('put(7, False, 30):', result, took < 5)
    print([q.get(True, None), q.get(True), q.get(timeout=1), q.get_nowait(),
           q.get(False), q.get(block=False, timeout=None)])
    print(q.qsize(), q.full(), q.empty())
    attempt('q.get(False)', q.get, False)
    attempt('q.get_nowait()', q.get_nowait)
    result, took = timed(q.get, False, 30)
    print('get(False, 30):', result, took < 5)
    q2 = m.Queue(2)  # TestSyncManagerTypes.test_queue
    q2.put(1)
    q2.put(2)
    print(q2.qsize(), q2.full(), q2.get(), q2.get(), q2.empty())
    attempt('m.Queue(1, 2)', m.Queue, 1, 2)
    attempt("q.put(1, bogus=1)", q.put, 1, bogus=1)

    section('timeouts')
    result, took = timed(q.get, True, 0.2)
    print('get(True, 0.2):', result, took >= 0.19, took < 10)
    result, took = timed(q.get, timeout=0)
    print('get(timeout=0):', result, took < 5)
    for i in range(6):
        q.put(i)
    result, took = timed(q.put, 'x', timeout=0.2)
    print('put(timeout=0.2):', result, took >= 0.19, took < 10)
    attempt('q.get(timeout=-1)', q.get, timeout=-1)
    attempt('q.put(0, timeout=-1)', q.put, 0, timeout=-1)
    attempt("q.get(True, 'x')", q.get, True, 'x')
    attempt('q.get(False, -1)', q.get, False, -1)
    unbounded = m.Queue()
    attempt('unbounded.put(0, timeout=-1)', unbounded.put, 0, timeout=-1)

    section('real exception classes')
    try:
        unbounded.get_nowait()
        unbounded.get_nowait()
    except queue.Empty as e:
        print('except queue.Empty:', type(e) is queue.Empty, e.args)
    while not q.full():
        q.put(None)
    try:
        q.put_nowait('x')
    except queue.Full as e:
        print('except queue.Full:', type(e) is queue.Full, e.args)
    try:
        q._getvalue()
    except Exception as e:
        print('_getvalue:', describe(e), 'Unserializable message' in str(e),
              "cannot pickle '_thread.lock' object" in str(e))

    section('JoinableQueue with a consumer process')
    jq = m.JoinableQueue()
    jq.join()  # nothing to wait for
    done = m.list()
    for i in range(10):
        jq.put(i)
    p = ctx.Process(target=consumer, args=(jq, done))
    p.start()
    jq.join()
    print('joined', sorted(done))
    p.join(60)
    print('consumer exitcode', p.exitcode)
    attempt('jq.task_done()', jq.task_done)

    section('two client processes')
    shared = m.Queue()
    p = ctx.Process(target=producer, args=(shared, 50))
    p.start()
    got = [shared.get(timeout=60) for _ in range(50)]
    p.join(60)
    print('exitcode', p.exitcode, 'got', len(got), 'in order', got == [('item', i) for i in range(50)])
    # A get blocked in this client's thread does not hold up other calls.
    blocked = m.Queue()
    other = m.list()
    box = []
    t = threading.Thread(target=lambda: box.append(blocked.get(timeout=60)))
    t.start()
    time.sleep(0.2)
    for i in range(20):
        other.append(i)
    print('while blocked:', len(other), blocked.qsize(), t.is_alive())
    blocked.put('wake')
    t.join(60)
    print('woken with', box)

    section('Event (_TestEvent)')
    e = m.Event()
    print(str(e).startswith('<threading.Event'), repr(e).split(' object')[0])
    print(e.is_set())
    result, took = timed(e.wait, 0.0)
    print('wait(0.0):', result, took < 5)
    result, took = timed(e.wait, 0.2)
    print('wait(0.2):', result, took >= 0.19, took < 10)
    e.set()
    print(e.is_set(), e.wait(), e.wait(0.2), e.wait(-1))
    e.clear()
    print(e.is_set(), e.wait(0.001), e.wait(-1))
    attempt("e.wait('x')", e.wait, 'x')
    p = ctx.Process(target=setter, args=(e, 0.3))
    p.start()
    result, took = timed(e.wait, 60)
    print('wait(60) woken by a child:', result, took < 50)
    p.join(60)
    print('exitcode', p.exitcode, e.is_set())
    try:
        e._getvalue()
    except Exception as ex:
        print('_getvalue:', describe(ex))

    section('named queues')
    gq = m.get_queue()
    c2 = connect_client(m.address)
    gq2 = c2.get_queue()
    print(repr(gq).split(' object')[0], gq._token.id == gq2._token.id)
    gq.put('hello')
    print(repr(gq2.get()), gq2.empty())
    nq = m.q()
    nq.put('a')
    c2.q().put('b')
    print(nq.qsize(), nq.full())
    attempt("nq.put_nowait('c')", nq.put_nowait, 'c')
    print(c2.q().get(), nq.get(), nq.empty())

    section('a queue holding a proxy to a list')
    lst = m.list([1])
    carrier = m.Queue()
    carrier.put(lst)
    back = carrier.get()
    back.append(2)
    print(type(back).__name__, lst[:], back[:])
    carrier.put(m.list(['temp']))  # the client drops its own proxy at once
    gc.collect()
    time.sleep(0.2)
    kept = carrier.get()
    kept.append('more')
    print(type(kept).__name__, kept[:])
    carrier.put([m.dict(a=1), 'plain'])
    inner, plain = carrier.get()
    print(type(inner).__name__, inner.copy(), plain)

    section('shutdown (3.13+)')
    import sys
    if sys.version_info < (3, 13):
        print('skipped before 3.13')
        return
    sq = m.Queue()
    sq.put(1)
    sq.shutdown()
    attempt('sq.put(2)', sq.put, 2)
    print(sq.get())
    attempt('sq.get()', sq.get)
    attempt('sq.get_nowait()', sq.get_nowait)
    try:
        sq.get()
    except queue.ShutDown as ex:
        print('except queue.ShutDown:', type(ex) is queue.ShutDown)
    waiting = m.Queue()
    box = []
    t = threading.Thread(target=lambda: box.append(timed(waiting.get)[0]))
    t.start()
    time.sleep(0.2)
    waiting.shutdown()
    t.join(60)
    print('blocked get released with', box)
    ij = m.JoinableQueue()
    for i in range(3):
        ij.put(i)
    ij.shutdown(immediate=True)
    ij.join()
    print('immediate: qsize', ij.qsize(), 'join returned')
    attempt('ij.get()', ij.get)
