"""mpmanager: CPython's multiprocessing manager server, in Rust.

A drop-in replacement for the server process of
:mod:`multiprocessing.managers`: the proxies, the wire and the behaviour are
CPython's own; the process that owns the shared objects is the ``mpmanager``
binary (no global interpreter lock, no code executed from a pickle).

Use it directly::

    from mpmanager import Manager
    with Manager() as m:
        d = m.dict()
        q = m.Queue()

or make every ``multiprocessing.Manager()`` and ``SyncManager().start()`` of
the process use it::

    import mpmanager
    mpmanager.install()

The server runs no Python code, so typeids whose objects are Python code
(a registered Python class or callable that builds new objects, ``Pool``, a
``Barrier`` action, an ``initializer``) cannot live in it; see
:class:`UnsupportedRegistration`. A registered callable that returns *one*
shared built-in object, like the documentation's
``register('get_queue', callable=lambda: queue)``, is supported: the object
(type and current contents) moves into the server when it starts.
"""

import os
import queue as _queue_mod
import select
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import warnings

from multiprocessing import connection as _connection
from multiprocessing import queues as _mp_queues
from multiprocessing import managers as _mm
from multiprocessing import util
from multiprocessing.context import ProcessError

__all__ = [
    "BaseManager",
    "BinaryNotFound",
    "FallbackWarning",
    "Manager",
    "Server",
    "ServerProcess",
    "ServerStartError",
    "SyncManager",
    "UnsupportedRegistration",
    "binary_path",
    "install",
    "installed",
    "uninstall",
]

__version__ = "0.1.0"

#: Seconds :meth:`SyncManager.start` waits for the server to report its
#: address (``MPMANAGER_START_TIMEOUT`` overrides it).
START_TIMEOUT = float(os.environ.get("MPMANAGER_START_TIMEOUT", "30"))

_SERIALIZERS = ("pickle", "xmlrpclib")


# multiprocessing.Queue(0) has maxsize SEM_VALUE_MAX (2**31 - 1 on Linux):
# treat anything that large as unbounded.
_SEM_VALUE_MAX_FLOOR = 2 ** 30

# The fill plan of a multiprocessing.Queue: forward its items continuously.
_FORWARD = "forward"


class BinaryNotFound(ProcessError):
    """The ``mpmanager`` executable could not be found."""


class ServerStartError(ProcessError, OSError):
    """The ``mpmanager`` server did not start (it exited, or did not report
    its address in time). It is an :class:`OSError` too, with the
    ``errno`` of the failure where there is one (``EADDRINUSE`` for an
    address in use), so code written for CPython's manager, which raises
    ``OSError`` there, catches it."""


class UnsupportedRegistration(TypeError):
    """A registered typeid needs Python code inside the server process,
    which mpmanager's server (a Rust program) cannot run."""


# ---------------------------------------------------------------------------
# Finding the binary
# ---------------------------------------------------------------------------


def binary_path():
    """The path of the ``mpmanager`` executable the package runs.

    In order: the ``MPMANAGER_BIN`` environment variable; the one installed
    with this package (the wheel puts it in the environment's scripts
    directory); ``mpmanager`` on ``PATH``. Raises :class:`BinaryNotFound`.
    """
    env = os.environ.get("MPMANAGER_BIN")
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return env
        raise BinaryNotFound(
            "MPMANAGER_BIN=%r is not an executable file" % env
        )
    candidates = []
    for scheme_dir in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        if scheme_dir:
            candidates.append(os.path.join(scheme_dir, "mpmanager"))
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    found = shutil.which("mpmanager")
    if found:
        _check_path_binary(found)
        return found
    raise BinaryNotFound(
        "the mpmanager server executable was not found (looked at "
        "MPMANAGER_BIN, %s and PATH); install the package with "
        "'pip install ./python' from a checkout of the mpmanager repository "
        "(the wheel ships it; the package is on no package index) or build it with "
        "'cargo build --release -p mpmanager-cli' and set "
        "MPMANAGER_BIN=target/release/mpmanager" % ", ".join(candidates)
    )


_checked_binaries = {}


def _check_path_binary(path):
    """An ``mpmanager`` found on ``PATH`` (not this package's) is used only
    if it is this package's version: another build could speak another
    dialect of the command line."""
    if path in _checked_binaries:
        version = _checked_binaries[path]
    else:
        try:
            out = subprocess.run([path, "--version"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, timeout=10,
                                 universal_newlines=True).stdout
        except (OSError, subprocess.SubprocessError) as e:
            out = "(cannot run it: %s)" % e
        version = out.strip()
        _checked_binaries[path] = version
    if version.split()[-1:] != [__version__]:
        raise BinaryNotFound(
            "this package's mpmanager server executable is missing, and the one "
            "on PATH (%s) is %r, not mpmanager %s; reinstall the package, or set "
            "MPMANAGER_BIN=%s to use that one anyway" % (path, version, __version__, path))


# ---------------------------------------------------------------------------
# Which registrations the server can host
# ---------------------------------------------------------------------------

# The typeids the server knows by name. A registration of one of these
# names is hosted when its callable is CPython's own for that name (or None).
_BUILTIN_TYPEIDS = (
    "Queue", "JoinableQueue", "Event", "Lock", "RLock", "Semaphore",
    "BoundedSemaphore", "Condition", "Barrier", "Pool", "list", "dict",
    "Value", "Array", "Namespace", "Iterator", "AsyncResult", "set",
)


def _builtin_callables():
    reg = _mm.SyncManager._registry
    return {t: reg[t][0] for t in _BUILTIN_TYPEIDS if t in reg}


def _threading_kinds():
    import threading as th

    kinds = [
        (type(th.Lock()), "Lock"),
        (type(th.RLock()), "RLock"),
        (th.Event, "Event"),
        (th.BoundedSemaphore, "BoundedSemaphore"),  # before its base class
        (th.Semaphore, "Semaphore"),
        (th.Condition, "Condition"),
        (th.Barrier, "Barrier"),
    ]
    return kinds


def _shared_object_spec(typeid, obj):
    """``(TYPE, fill)`` for ``--object typeid=TYPE`` holding ``obj``, where
    ``fill`` is a list of ``(method, args)`` calls that copy ``obj``'s
    contents into the server's object; or raises UnsupportedRegistration.

    A ``multiprocessing.Queue`` gets ``fill = _FORWARD``: a thread of the
    starting process moves every item put into it (by any process) into
    the server's queue (see :func:`_forward_queue`)."""
    t = type(obj)
    if isinstance(obj, _mp_queues.Queue):
        maxsize = getattr(obj, "_maxsize", 0)
        if maxsize >= _SEM_VALUE_MAX_FLOOR:
            maxsize = 0
        return ("Queue:%d" % maxsize if maxsize > 0 else "Queue"), _FORWARD
    if t is _queue_mod.Queue:
        with obj.mutex:
            items = list(obj.queue)
        kind = "Queue:%d" % obj.maxsize if obj.maxsize > 0 else "Queue"
        return kind, [("put", (item,)) for item in items]
    if t is list:
        return "list", ([("extend", (list(obj),))] if obj else [])
    if t is dict:
        return "dict", ([("update", (dict(obj),))] if obj else [])
    if t is set:
        return "set", ([("update", (set(obj),))] if obj else [])
    if t is _mm.Namespace:
        return "Namespace", [
            ("__setattr__", (k, v)) for k, v in vars(obj).items()
        ]
    for cls, name in _threading_kinds():
        if isinstance(obj, cls) and type(obj) is cls:
            if name == "Event":
                return name, ([("set", ())] if obj.is_set() else [])
            if name in ("Semaphore", "BoundedSemaphore"):
                value = obj._value
                initial = getattr(obj, "_initial_value", value)
                return "%s:%d" % (name, initial), [("acquire", ())] * (initial - value)
            if name == "Barrier":
                if obj._action is not None:
                    break
                return "Barrier:%d" % obj.parties, []
            if name in ("Lock", "RLock", "Condition"):
                locked = obj.locked() if hasattr(obj, "locked") else not _try_release_probe(obj)
                if locked:
                    raise UnsupportedRegistration(
                        "register(%r): the %s is held; a held lock cannot be "
                        "moved into mpmanager's server" % (typeid, name)
                    )
                return name, []
            return name, []
    raise UnsupportedRegistration(
        "register(%r, callable=...): the callable returned a %s.%s, and "
        "mpmanager's server (a Rust program) cannot run Python code; it can "
        "host one shared built-in object per such typeid (queue.Queue, list, "
        "dict, set, Namespace, Lock, RLock, Semaphore, BoundedSemaphore, "
        "Condition, Event, Barrier without action). Use "
        "multiprocessing.managers.BaseManager for Python types."
        % (typeid, t.__module__, t.__qualname__)
    )


def _try_release_probe(lock):
    """True if ``lock`` is free (acquires and releases it once)."""
    if lock.acquire(False):
        lock.release()
        return True
    return False


def _plan(manager_cls):
    """The ``--object`` arguments and fill calls the registry of
    ``manager_cls`` needs, or raises UnsupportedRegistration."""
    builtin = _builtin_callables()
    objects = []
    for typeid, (func, _exposed, _m2t, _proxytype) in manager_cls._registry.items():
        if func is None:
            continue  # client-side registration only (connect() pattern)
        if typeid in builtin and func is builtin[typeid]:
            continue  # served by name
        if typeid in builtin and typeid in ("Pool", "AsyncResult", "Iterator"):
            continue
        why = None
        if isinstance(func, type):
            why = "a class (%s.%s): its objects would be Python objects" % (
                func.__module__, func.__qualname__)
        else:
            try:
                first = func()
                second = func()
            except TypeError as e:
                why = "a callable that cannot be called without arguments (%s)" % e
            else:
                if first is not second:
                    why = ("a callable that builds a new object on every call; "
                           "only callables returning one shared object (like "
                           "lambda: queue) can be hosted")
                else:
                    kind, fill = _shared_object_spec(typeid, first)
                    objects.append((typeid, kind, fill, first))
                    continue
        raise UnsupportedRegistration(
            "%s.register(%r, ...): the callable is %s, and mpmanager's server "
            "(a Rust program) runs no Python code. Use "
            "multiprocessing.managers.BaseManager for this manager, or "
            "register a Rust type." % (manager_cls.__name__, typeid, why)
        )
    return objects


# ---------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------


def _address_arg(address):
    """The ``--address`` argument for a CPython manager address."""
    if address is None:
        return "unix:" + _connection.arbitrary_address("AF_UNIX")
    if isinstance(address, tuple):
        if len(address) != 2:
            raise ValueError("address must be (host, port): %r" % (address,))
        host, port = address
        if host == "":
            host = "0.0.0.0"
        else:
            try:
                socket.inet_pton(socket.AF_INET6, host)
                return "[%s]:%d" % (host, port)
            except OSError:
                pass
            host = socket.gethostbyname(host)
        return "%s:%d" % (host, port)
    if isinstance(address, str):
        if address.startswith("\0"):
            name = address[1:].encode("utf-8", "surrogateescape")
            return "unix:@" + "".join(
                chr(b) if 0x21 <= b < 0x7F and b != 0x5C else
                ("\\\\" if b == 0x5C else "\\x%02x" % b) for b in name)
        if address.startswith("\\\\"):
            raise ValueError("named pipes are Windows-only: %r" % address)
        return "unix:" + address
    raise TypeError("address type of %r unrecognized" % (address,))


def _python_address(line):
    """A CPython address from the line ``mpmanager serve --print-address``
    prints."""
    if line.startswith("unix:@"):
        out = bytearray()
        s = line[len("unix:@"):]
        i = 0
        while i < len(s):
            if s[i] == "\\" and s[i + 1:i + 2] == "\\":
                out.append(0x5C)
                i += 2
            elif s[i] == "\\" and s[i + 1:i + 2] == "x":
                out.append(int(s[i + 2:i + 4], 16))
                i += 4
            else:
                out += s[i].encode()
                i += 1
        return "\0" + out.decode("utf-8", "surrogateescape")
    if line.startswith("unix:"):
        return line[len("unix:"):]
    host, _, port = line.rpartition(":")
    if host.startswith("["):
        host = host[1:-1]
    return (host, int(port))


# ---------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------


class ServerProcess(object):
    """The ``mpmanager serve`` process behind a started manager, with the
    ``multiprocessing.Process`` methods a manager uses: ``is_alive``,
    ``join``, ``terminate``, ``kill``, ``exitcode``, ``pid``."""

    def __init__(self, popen, name):
        self._popen = popen
        self._owner_pid = os.getpid()
        self.name = name

    @property
    def pid(self):
        return self._popen.pid

    @property
    def exitcode(self):
        if os.getpid() != self._owner_pid:
            return None
        return self._popen.poll()

    def is_alive(self):
        if os.getpid() != self._owner_pid:
            # A forked child does not own the server (as with CPython's
            # manager process, which is the parent's child).
            return False
        return self._popen.poll() is None

    def join(self, timeout=None):
        if os.getpid() != self._owner_pid:
            return
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def terminate(self):
        if self.is_alive():
            self._popen.terminate()

    def kill(self):
        if self.is_alive():
            self._popen.kill()

    def __repr__(self):
        code = self.exitcode
        status = "started" if code is None else "stopped exitcode=%s" % code
        return "<mpmanager.ServerProcess name=%r pid=%s %s>" % (
            self.name, self.pid, status)


def _spawn_server(address, authkey, serializer, objects, foreground=False,
                  release_on_disconnect=False):
    """Starts ``mpmanager serve``; returns ``(popen, python_address)``."""
    binary = binary_path()
    cmd = [
        binary, "serve", "--quiet", "--print-address",
        "--address", _address_arg(address),
        "--log-level", os.environ.get("MPMANAGER_LOG", "warn"),
    ]
    if serializer != "pickle":
        cmd += ["--serializer", serializer]
    if release_on_disconnect:
        cmd += ["--release-on-disconnect"]
    for typeid, kind, _fill, _obj in objects:
        cmd += ["--object", "%s=%s" % (typeid, kind)]
    if not foreground:
        cmd += ["--ignore-sigint"]
    if not bytes(authkey):
        # An empty key given explicitly (authkey=b''), as CPython allows.
        cmd += ["--allow-empty-authkey"]
    # The server stops when this process is gone, however it dies: it
    # watches the read end of a pipe whose write end only this process
    # (and children it forks) holds, and checks that its parent is still
    # this process (for forked children that outlive it).
    cmd += ["--parent-pid", str(os.getpid())]
    alive_r, alive_w = os.pipe()
    cmd += ["--parent-fd", str(alive_r)]
    r, w = os.pipe()
    try:
        cmd += ["--authkey-file", "/dev/fd/%d" % r]
        try:
            popen = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                pass_fds=(r, alive_r), close_fds=True,
                start_new_session=not foreground)
        except OSError as e:
            os.close(alive_w)
            raise ServerStartError("cannot run %s: %s" % (binary, e)) from e
        finally:
            os.close(alive_r)
        # Closed with the Popen object (or when the program exits).
        popen._mpmanager_alive = os.fdopen(alive_w, "wb", buffering=0)
        os.close(r)
        r = -1
        view = memoryview(bytes(authkey))
        try:
            while view:
                n = os.write(w, view)
                view = view[n:]
        except BrokenPipeError:
            pass  # the server already exited: reported below
    finally:
        if r >= 0:
            os.close(r)
        os.close(w)

    deadline = time.monotonic() + START_TIMEOUT
    out = popen.stdout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            popen.kill()
            popen.wait()
            out.close()
            raise ServerStartError(
                "the mpmanager server (%s) did not report its address within "
                "%.0f s" % (binary, START_TIMEOUT))
        ready, _, _ = select.select([out], [], [], min(left, 0.5))
        if not ready:
            continue
        chunk = os.read(out.fileno(), 4096)
        if not chunk:
            code = popen.wait()
            out.close()
            raise ServerStartError(
                "the mpmanager server exited with status %s before listening "
                "on %s (its error message is on stderr above)"
                % (code, _address_arg(address)))
        line += chunk
    out.close()
    if line.startswith(b"error errno="):
        # The server could not listen, and says why (then exits).
        code = popen.wait()
        err = int(line.split(b"=", 1)[1])
        raise ServerStartError(
            err, "%s: the mpmanager server exited with status %s: it cannot "
            "listen on %s" % (os.strerror(err), code, _address_arg(address)))
    return popen, _python_address(line.decode().strip())


def _oneshot(address, authkey, serializer, op, args):
    """A public operation (``create``, ``decref`` …) on its own connection,
    as CPython's manager sends them."""
    _Listener, Client = _mm.listener_client[serializer]
    conn = Client(address, authkey=authkey)
    try:
        return _mm.dispatch(conn, None, op, args, {})
    finally:
        conn.close()


def _open_object(address, authkey, serializer, typeid):
    """A served connection and the ident of named object ``typeid``."""
    ident, _exposed = _oneshot(address, authkey, serializer, "create", (typeid,))
    _Listener, Client = _mm.listener_client[serializer]
    conn = Client(address, authkey=authkey)
    _mm.dispatch(conn, None, "accept_connection", ("mpmanager-fill",))
    return conn, ident


def _call(conn, ident, method, args):
    conn.send((ident, method, args, {}))
    kind, result = conn.recv()
    if kind != "#RETURN":
        raise _mm.convert_to_error(kind, result)
    return result


def _forward_queue(source, address, authkey, serializer, typeid):
    """Moves every item of multiprocessing.Queue ``source`` into the
    server's queue ``typeid``, until the server goes away."""
    try:
        conn, _ident = _open_object(address, authkey, serializer, typeid)
    except (OSError, EOFError):
        return
    try:
        while True:
            item = source.get()
            _call(conn, _ident, "put", (item,))
    except (OSError, EOFError, ValueError):
        pass  # the server or the queue was closed
    finally:
        conn.close()


def _fill_objects(address, authkey, serializer, objects):
    """Copies the contents of named shared objects into the server, and
    starts the forwarding threads of multiprocessing.Queues."""
    for typeid, _kind, fill, source in objects:
        if fill == _FORWARD:
            t = threading.Thread(
                target=_forward_queue, name="mpmanager-forward-%s" % typeid,
                args=(source, address, authkey, serializer, typeid),
                daemon=True)
            t.start()
            continue
        if not fill:
            continue
        conn, ident = _open_object(address, authkey, serializer, typeid)
        try:
            for method, args in fill:
                _call(conn, ident, method, args)
        finally:
            conn.close()
        _oneshot(address, authkey, serializer, "decref", (ident,))


def _finalize_manager(process, address, authkey, state, _Client,
                      shutdown_timeout):
    """Shuts the server down: CPython's ``BaseManager._finalize_manager``
    for an mpmanager server process."""
    if process.is_alive():
        util.info("sending shutdown message to manager")
        try:
            conn = _Client(address, authkey=authkey)
            try:
                _mm.dispatch(conn, None, "shutdown")
            finally:
                conn.close()
        except Exception:
            pass
        process.join(timeout=shutdown_timeout)
        if process.is_alive():
            util.info("manager still alive; terminating it")
            process.terminate()
            process.join(timeout=shutdown_timeout)
            if process.is_alive():
                util.info("manager still alive after terminate")
                process.kill()
                process.join()
    state.value = _mm.State.SHUTDOWN
    try:
        del _mm.BaseProxy._address_to_local[address]
    except KeyError:
        pass


def _check_initial(manager):
    if manager._state.value != _mm.State.INITIAL:
        if manager._state.value == _mm.State.STARTED:
            raise ProcessError("Already started server")
        elif manager._state.value == _mm.State.SHUTDOWN:
            raise ProcessError("Manager has shut down")
        else:
            raise ProcessError(
                "Unknown state {!r}".format(manager._state.value))


def _launch(manager, objects, foreground):
    """Starts ``mpmanager serve`` for ``manager`` with the named objects
    ``objects`` (a :func:`_plan`) filled in; ``(popen, address)``."""
    popen, address = _spawn_server(
        manager._address, manager._authkey, manager._serializer, objects,
        foreground=foreground,
        release_on_disconnect=getattr(
            manager, "_mpmanager_release_on_disconnect", False))
    try:
        _fill_objects(address, manager._authkey, manager._serializer, objects)
    except BaseException:
        popen.kill()
        popen.wait()
        raise
    return popen, address


def _start(self, initializer=None, initargs=(), *, _objects=None):
    """Starts an ``mpmanager serve`` process for this manager (CPython's
    ``BaseManager.start``, with the Rust server)."""
    _check_initial(self)
    if initializer is not None:
        if not callable(initializer):
            raise TypeError("initializer must be a callable")
        raise UnsupportedRegistration(
            "start(initializer=...): the initializer would run Python code in "
            "the server process, and mpmanager's server is a Rust program")
    if self._serializer not in _SERIALIZERS:
        raise ValueError("unknown serializer %r" % self._serializer)
    objects = _plan(type(self)) if _objects is None else _objects
    popen, address = _launch(self, objects, foreground=False)
    process = ServerProcess(popen, type(self).__name__ + "-mpmanager")
    self._process = process
    self._address = address
    self._state.value = _mm.State.STARTED
    self.shutdown = util.Finalize(
        self, _finalize_manager,
        args=(process, address, self._authkey, self._state, self._Client,
              getattr(self, "_shutdown_timeout", 1.0)),
        exitpriority=0)


class Server(object):
    """What ``get_server()`` returns: the address is bound as soon as it is
    made; :meth:`serve_forever` runs until a client calls ``shutdown`` or
    the program is interrupted, then exits the program (as CPython's)."""

    def __init__(self, manager, objects=None):
        if objects is None:
            objects = _plan(type(manager))
        self._popen, self.address = _launch(manager, objects, foreground=True)

    @property
    def listener(self):
        """The listening side: ``close()`` stops the server process and
        frees its address (CPython's tests call ``srvr.listener.close()``)."""
        return _ServerListener(self._popen, self.address)

    def serve_forever(self):
        try:
            try:
                self._popen.wait()
            except (KeyboardInterrupt, SystemExit):
                pass
        finally:
            if self._popen.poll() is None:
                self._popen.terminate()
                try:
                    self._popen.wait(5)
                except subprocess.TimeoutExpired:
                    self._popen.kill()
                    self._popen.wait()
            sys.exit(0)


class _ServerListener(object):
    def __init__(self, popen, address):
        self._popen = popen
        self.address = address

    def close(self):
        if self._popen.poll() is None:
            self._popen.terminate()
            self._popen.wait()


def _get_server(self, *, _objects=None):
    """A :class:`Server` running this manager's registry in mpmanager."""
    _check_initial(self)
    return Server(self, _objects)


class BaseManager(_mm.BaseManager):
    """CPython's :class:`multiprocessing.managers.BaseManager` whose server
    is mpmanager's. Register built-in typeids, or named shared objects::

        import queue
        q = queue.Queue()
        class QueueManager(mpmanager.BaseManager): pass
        QueueManager.register('get_queue', callable=lambda: q)

    At ``start()`` / ``get_server()`` each registered callable is called
    twice (in this process) to check that it returns one and the same
    object; that object's type and current contents move into the server,
    and a ``multiprocessing.Queue`` keeps being forwarded by a thread of
    this process. Registering a Python class, or a callable that builds a
    new object on each call, raises :class:`UnsupportedRegistration` there;
    clients (``connect()``) can register anything."""

    start = _start
    get_server = _get_server


class SyncManager(_mm.SyncManager):
    """CPython's :class:`multiprocessing.managers.SyncManager` whose server
    is mpmanager's: ``Queue``, ``Lock``, ``dict``, ``list``, ``Namespace``
    … behave as with CPython's server. ``Pool`` is refused by the server (a
    pool runs Python code)."""

    start = _start
    get_server = _get_server


def Manager(*, address=None, authkey=None, serializer="pickle",
            shutdown_timeout=1.0, release_on_disconnect=False):
    """Like :func:`multiprocessing.Manager`: a started :class:`SyncManager`
    whose server is mpmanager's.

    A client process that dies never loses a queue item nor leaves an
    ``RLock`` or a ``Condition`` locked. With ``release_on_disconnect=True``
    the server also releases the plain ``Lock`` objects and the semaphore permits a
    dead client acquired and did not release (off by default: CPython lets
    one process release a ``Lock`` that another acquired)."""
    kwargs = {}
    if sys.version_info >= (3, 11) or shutdown_timeout != 1.0:
        kwargs["shutdown_timeout"] = shutdown_timeout
    m = SyncManager(address=address, authkey=authkey, serializer=serializer,
                    **kwargs)
    m._mpmanager_release_on_disconnect = bool(release_on_disconnect)
    m.start()
    return m


# ---------------------------------------------------------------------------
# install()
# ---------------------------------------------------------------------------

_installed = {}
_install_lock = threading.Lock()


class FallbackWarning(UserWarning):
    """install(strict=False) ran a manager on CPython's own server because
    its registry needs Python code in the server."""


def _hosting_plan(manager, initializer=None):
    """``(objects, None)`` with the :func:`_plan` of ``manager`` if
    mpmanager's server can run it, else ``(None, why_not)``."""
    if type(manager)._Server is not _mm.Server:
        return None, "it has its own server class (%s)" % type(manager)._Server.__name__
    if initializer is not None:
        return None, "start() was given an initializer (Python code for the server)"
    if manager._serializer not in _SERIALIZERS:
        return None, "unknown serializer %r" % manager._serializer
    try:
        return _plan(type(manager)), None
    except UnsupportedRegistration as e:
        return None, str(e)


def install(strict=False):
    """Makes ``multiprocessing.Manager()``, ``SyncManager().start()`` and
    ``start()`` / ``get_server()`` of every ``BaseManager`` subclass use
    mpmanager's server for the rest of the process.

    A manager that needs Python code in the server (a registered Python
    class, an ``initializer``, a custom server class such as
    ``SharedMemoryManager``'s) raises :class:`UnsupportedRegistration` when
    ``strict`` is true; otherwise it runs CPython's own server, with a
    :class:`FallbackWarning` naming the reason.

    Calling it again only updates ``strict``. :func:`uninstall` undoes it.
    """
    with _install_lock:
        binary_path()  # fail now, clearly, if the binary is missing
        if not _installed:
            _installed["start"] = _mm.BaseManager.start
            _installed["get_server"] = _mm.BaseManager.get_server
        _installed["strict"] = bool(strict)
        cpython_start = _installed["start"]
        cpython_get_server = _installed["get_server"]

        def start(self, initializer=None, initargs=()):
            objects, why = _hosting_plan(self, initializer)
            if why is None:
                return _start(self, initializer, initargs, _objects=objects)
            if not _installed.get("strict", False):
                warnings.warn(
                    "%s runs on CPython's manager server: %s"
                    % (type(self).__name__, why), FallbackWarning, 2)
                return cpython_start(self, initializer, initargs)
            return _start(self, initializer, initargs)  # raises the reason

        def get_server(self):
            objects, why = _hosting_plan(self)
            if why is None:
                return _get_server(self, _objects=objects)
            if not _installed.get("strict", False):
                warnings.warn(
                    "%s runs on CPython's manager server: %s"
                    % (type(self).__name__, why), FallbackWarning, 2)
                return cpython_get_server(self)
            return _get_server(self)  # raises the reason

        start.__doc__ = _start.__doc__
        get_server.__doc__ = _get_server.__doc__
        _mm.BaseManager.start = start
        _mm.BaseManager.get_server = get_server


def uninstall():
    """Undoes :func:`install`."""
    with _install_lock:
        if not _installed:
            return
        _mm.BaseManager.start = _installed["start"]
        _mm.BaseManager.get_server = _installed["get_server"]
        _installed.clear()


def installed():
    """True while :func:`install` is in effect."""
    return bool(_installed)
