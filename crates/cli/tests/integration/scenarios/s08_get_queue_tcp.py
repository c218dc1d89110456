# Scenario 8 — "Using a remote manager" (seed 001), over TCP: a server
# exposing one shared queue as the typeid `get_queue`, and several clients
# (in this process and in a spawn child) that connect() to it.
#
# For 'cpython' the reference server is QueueManager with
# register('get_queue', callable=...) started by this script; for
# 'mpmanager' the server must provide the typeid itself (the harness starts
# it with `--object get_queue=Queue`).
import multiprocessing
import queue as queue_module
from multiprocessing.managers import BaseManager

_QUEUE = None


def _get_queue():
    global _QUEUE
    if _QUEUE is None:
        _QUEUE = queue_module.Queue()
    return _QUEUE


class ServerQueueManager(BaseManager):
    pass


ServerQueueManager.register('get_queue', callable=_get_queue)


class QueueManager(BaseManager):
    pass


QueueManager.register('get_queue')

REFERENCE_MANAGER = ServerQueueManager
CLIENT_MANAGER = QueueManager


def worker(address):
    mgr = connect_client(address)
    q = mgr.get_queue()
    q.put('local hello')
    print('child got', q.get())


def main(m):
    address = m.address
    # One client can access the server as follows:
    c1 = connect_client(address)
    queue = c1.get_queue()
    queue.put('hello')
    # Another client can also use it:
    c2 = connect_client(address)
    queue2 = c2.get_queue()
    print(repr(queue2.get()))
    print(repr(queue2).split(' object')[0])
    print(queue._token.id == queue2._token.id, queue._token.typeid)
    print(queue.qsize(), queue.empty())
    attempt('queue2.get_nowait()', queue2.get_nowait)
    attempt('queue2.get(timeout=0.05)', queue2.get, timeout=0.05)
    for v in (None, True, 2.25, 'caf\xe9', b'hi\xe5', ('t', [1])):
        queue.put(v)
    print([queue2.get() for _ in range(6)])

    ctx = multiprocessing.get_context('spawn')
    queue.put('to child')
    p = ctx.Process(target=worker, args=(address,))
    p.start()
    p.join(60)
    print('exitcode', p.exitcode)
    print(repr(queue.get()))
    print(queue.qsize())
