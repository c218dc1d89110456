# CPython's own manager tests of the synchronisation types
# (Lib/test/_test_multiprocessing.py), run unmodified against `mpmanager
# serve` by crates/cli/tests/integration/serve_locks.rs:
#
#   python cpython_sync_tests.py ADDRESS KEY
#
# * the manager flavour of _TestLock, _TestSemaphore, _TestCondition and
#   _TestBarrier: `multiprocessing.Manager()` is replaced by a SyncManager
#   connect()ed to ADDRESS (the Barrier tests' helpers Event and Queue come
#   from a CPython manager: this run is about the synchronisation types);
# * TestSyncManagerTypes.test_lock/test_rlock/test_semaphore/
#   test_bounded_semaphore/test_condition/test_barrier, with a manager
#   class that connects instead of starting a server.
#
# _TestBarrier.test_action is left out: its action is a Python callable
# that a Rust server cannot run; instead the refusal is checked.
import sys
import unittest
import multiprocessing
from multiprocessing.managers import SyncManager, RemoteError

ADDRESS, KEY = sys.argv[1], sys.argv[2].encode()
multiprocessing.current_process().authkey = KEY
multiprocessing.set_start_method('fork', force=True)
_aux = []


def Manager():
    if not _aux:
        aux = SyncManager(authkey=KEY)
        aux.start()
        _aux.append(aux)
    m = SyncManager(address=ADDRESS, authkey=KEY)
    m.connect()
    m.Event = _aux[0].Event
    m.Queue = _aux[0].Queue
    m.shutdown = lambda: None
    m.join = lambda *a: None
    return m


class ConnectingManager(SyncManager):
    def __init__(self):
        super().__init__(address=ADDRESS, authkey=KEY)

    def start(self):
        self.connect()

    def shutdown(self):
        pass


def main():
    multiprocessing.Manager = Manager
    import test._test_multiprocessing as tm
    g = {'__name__': 'cpython_sync_tests'}
    try:
        tm.install_tests_in_module_dict(g, 'fork', only_type='manager')
    except TypeError:  # 3.8-3.10: no only_type
        tm.install_tests_in_module_dict(g, 'fork')
    tm.TestSyncManagerTypes.manager_class = ConnectingManager
    suite = unittest.TestSuite()
    for name in ['WithManagerTestLock', 'WithManagerTestSemaphore',
                 'WithManagerTestCondition', 'WithManagerTestBarrier']:
        for t in unittest.defaultTestLoader.loadTestsFromTestCase(g[name]):
            if t._testMethodName != 'test_action':
                suite.addTest(t)
    for name in ['test_lock', 'test_rlock', 'test_semaphore',
                 'test_bounded_semaphore', 'test_condition', 'test_barrier']:
        suite.addTest(tm.TestSyncManagerTypes(name))
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    m = Manager()
    try:
        m.Barrier(2, action=print)
        print('action accepted')
    except RemoteError as e:
        ok = 'cannot run a Barrier action' in str(e)
        print('action refused' if ok else 'action: unexpected error %s' % e)
    for aux in _aux:
        aux.shutdown()
    print('run', result.testsRun, 'failures', len(result.failures),
          'errors', len(result.errors), 'skipped', len(result.skipped))
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == '__main__':
    main()
