# ---------------------------------------------------------------------------
# mpmanager acceptance-scenario prelude (prepended to every scenario by
# crates/cli/tests/integration/seed_scenarios.rs).
#
#   python scenario.py KIND [ADDRESS [KEY]]
#
#   KIND     'cpython'   -> SyncManager(address, authkey).start(): CPython's own
#                           manager server, the reference;
#            'mpmanager' -> SyncManager(address, authkey).connect() to an
#                           already running `mpmanager serve`.
#   ADDRESS  'unix:/path', 'tcp:HOST:PORT' (or '/path', 'HOST:PORT').
#            Default for cpython: a fresh unix path in a temporary directory.
#   KEY      the authkey as a UTF-8 string (the same string the server gets
#            in MPMANAGER_AUTHKEY); the key bytes are its UTF-8 encoding.
#
# A scenario defines `main(m)` (and any helpers, at module level so that
# spawn children can import them); the harness appends
# `if __name__ == '__main__': _run(main)`.  Everything that starts managers
# or processes must stay inside main(): spawn children re-import this file
# as __mp_main__.
#
# Output is compared between the two servers after replacing every
# `0x[0-9a-f]+` with `0x…` and the server address with `<address>`, so
# scenarios should print what a user would see, and nothing that legitimately
# differs between servers (idents, exposed-set order, traceback file names).
# ---------------------------------------------------------------------------
import gc
import multiprocessing
import os
import sys
import tempfile
from multiprocessing.managers import SyncManager, RemoteError

try:
    sys.stdout.reconfigure(line_buffering=True)
except Exception:  # pragma: no cover
    pass

KIND = sys.argv[1] if len(sys.argv) > 1 else 'cpython'
ADDRESS_SPEC = sys.argv[2] if len(sys.argv) > 2 else ''
KEY = (sys.argv[3] if len(sys.argv) > 3 else 'mpmanager-scenario-key').encode('utf-8')


def _parse_address(spec):
    if not spec:
        return os.path.join(tempfile.mkdtemp(prefix='mpm-ref-'), 'sock')
    if spec.startswith('unix:'):
        return spec[len('unix:'):]
    if spec.startswith('tcp:'):
        spec = spec[len('tcp:'):]
    elif spec.startswith('/'):
        return spec
    host, port = spec.rsplit(':', 1)
    return (host, int(port))


def describe(exc):
    """One line naming an exception the way a user reads it."""
    if isinstance(exc, RemoteError):
        # The text is a server-side traceback (file names, line numbers,
        # exposed sets in arbitrary order): compare only the type of the
        # exception on its last "Type: message" line.
        import re
        names = re.findall(r'^([A-Za-z_][\w.]*)(?::|$)', str(exc), re.M)
        names = [n for n in names if n != 'Traceback']
        return 'RemoteError: ' + (names[-1] if names else '?')
    text = str(exc)
    return type(exc).__name__ + (': ' + text if text else '')


def attempt(label, fn, *args, **kwds):
    """Print `label -> repr(result)` or `label !! ExcType: message`."""
    try:
        result = fn(*args, **kwds)
    except BaseException as e:  # StopIteration, SystemExit... too
        print(label, '!!', describe(e))
        return None
    print(label, '->', repr(result))
    return result


def section(title):
    print()
    print('==', title)


def nobjects(m):
    """number_of_objects() as the server reports it (id_to_refcount size)."""
    gc.collect()
    return m._number_of_objects()


def connect_client(address):
    """A further client: a manager connect()ed to `address` (e.g. m.address).

    Its class is the scenario's CLIENT_MANAGER (default SyncManager)."""
    mgr = globals().get('CLIENT_MANAGER', SyncManager)(address=address, authkey=KEY)
    mgr.connect()
    return mgr


def _run(main):
    # A scenario may set REFERENCE_MANAGER (the class started for 'cpython',
    # with its callables registered) and CLIENT_MANAGER (the class that
    # connect()s); both default to SyncManager.
    reference_class = globals().get('REFERENCE_MANAGER', SyncManager)
    # docs/PROTOCOL.md §2.6: proxies unpickled in this process and in its
    # children authenticate with current_process().authkey, so it must be
    # the manager's key.
    multiprocessing.current_process().authkey = KEY
    address = _parse_address(ADDRESS_SPEC)
    if KIND == 'cpython':
        m = reference_class(address=address, authkey=KEY)
        m.start()
    elif KIND == 'mpmanager':
        m = connect_client(address)
    else:
        raise SystemExit('unknown server kind %r' % KIND)
    try:
        main(m)
    finally:
        gc.collect()
        if KIND == 'cpython':
            m.shutdown()
    sys.stdout.flush()

# ------------------------------- scenario ----------------------------------
