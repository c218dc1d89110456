"""Tests of the mpmanager Python package against the real Rust server.

    MPMANAGER_BIN=target/release/mpmanager PYTHONPATH=python \\
        python3 -m unittest python/tests/test_package.py
"""

import multiprocessing
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings
from multiprocessing import managers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import mpmanager  # noqa: E402


def _child_appends(lst, value):
    lst.append(value)


def _child_uses_namespace(ns):
    ns.seen = ns.x + 1


class ManagerTest(unittest.TestCase):
    def test_manager_is_a_syncmanager_backed_by_the_rust_binary(self):
        with mpmanager.Manager() as m:
            self.assertIsInstance(m, managers.SyncManager)
            self.assertIsInstance(m._process, mpmanager.ServerProcess)
            # The process really is the mpmanager binary.
            with open("/proc/%d/cmdline" % m._process.pid, "rb") as f:
                argv = f.read().split(b"\0")
            self.assertEqual(os.path.realpath(os.fsdecode(argv[0])),
                             os.path.realpath(mpmanager.binary_path()))
            d = m.dict()
            d["a"] = [1, 2]
            self.assertEqual(d.copy(), {"a": [1, 2]})
            self.assertEqual(m._number_of_objects(), 1)
        self.assertFalse(m._process.is_alive())
        self.assertEqual(m._process.exitcode, 0)

    def test_busy_port_raises_oserror_eaddrinuse_like_cpython(self):
        import errno
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            with self.assertRaises(OSError) as cm:
                mpmanager.Manager(address=s.getsockname(), authkey=b"k")
        self.assertIsInstance(cm.exception, mpmanager.ServerStartError)
        self.assertEqual(cm.exception.errno, errno.EADDRINUSE)

    def test_release_on_disconnect_frees_a_dead_clients_lock(self):
        with mpmanager.Manager(release_on_disconnect=True) as m:
            lock = m.Lock()
            ctx = multiprocessing.get_context("fork")
            ready = ctx.Event()

            def hold(lock, ready):
                lock.acquire()
                ready.set()
                time.sleep(60)

            p = ctx.Process(target=hold, args=(lock, ready))
            p.start()
            self.assertTrue(ready.wait(30))
            os.kill(p.pid, signal.SIGKILL)
            p.join()
            self.assertTrue(lock.acquire(timeout=10))

    def test_default_address_is_a_unix_socket_like_cpython(self):
        m = mpmanager.Manager()
        try:
            self.assertIsInstance(m.address, str)
            self.assertTrue(os.path.exists(m.address), m.address)
        finally:
            m.shutdown()
        self.assertFalse(os.path.exists(m.address))

    def test_tcp_address_and_authkey(self):
        m = mpmanager.SyncManager(address=("127.0.0.1", 0), authkey=b"k3y")
        m.start()
        try:
            host, port = m.address
            self.assertEqual(host, "127.0.0.1")
            self.assertGreater(port, 0)
            other = managers.SyncManager(address=m.address, authkey=b"k3y")
            other.connect()
            ns = other.Namespace(x=1)
            self.assertEqual(ns.x, 1)
            bad = managers.SyncManager(address=m.address, authkey=b"wrong")
            with self.assertRaises(multiprocessing.AuthenticationError):
                bad.connect()
        finally:
            m.shutdown()

    def test_explicit_empty_authkey_works_as_with_cpython(self):
        # authkey=b'' is explicit in the program: the package asks the
        # binary for it (--allow-empty-authkey), as CPython's server
        # accepts it.
        m = mpmanager.SyncManager(address=("127.0.0.1", 0), authkey=b"")
        m.start()
        try:
            other = managers.SyncManager(address=m.address, authkey=b"")
            other.connect()
            self.assertEqual(other.list([1, 2])[:], [1, 2])
        finally:
            m.shutdown()

    def test_state_errors_match_cpython(self):
        m = mpmanager.SyncManager()
        m.start()
        with self.assertRaisesRegex(multiprocessing.ProcessError, "Already started"):
            m.start()
        m.shutdown()
        with self.assertRaisesRegex(multiprocessing.ProcessError, "has shut down"):
            m.start()
        m.join()
        self.assertIsNone(m._process)

    def test_proxies_work_in_forked_and_spawned_children(self):
        with mpmanager.Manager() as m:
            lst = m.list()
            ns = m.Namespace(x=41)
            for method in ("fork", "spawn"):
                ctx = multiprocessing.get_context(method)
                p = ctx.Process(target=_child_appends, args=(lst, method))
                p.start()
                p.join()
                self.assertEqual(p.exitcode, 0)
                p = ctx.Process(target=_child_uses_namespace, args=(ns,))
                p.start()
                p.join()
            self.assertEqual(list(lst), ["fork", "spawn"])
            self.assertEqual(ns.seen, 42)

    def test_forked_child_does_not_shut_the_server_down(self):
        with mpmanager.Manager() as m:
            d = m.dict()
            pid = os.fork()
            if pid == 0:
                # The child exits normally (running its finalizers).
                d["child"] = True
                os._exit(0)
            os.waitpid(pid, 0)
            self.assertTrue(m._process.is_alive())
            self.assertEqual(d["child"], True)

    def test_finalizer_terminates_a_server_that_does_not_stop(self):
        # The shutdown message cannot reach the server (wrong address), so
        # the finalizer waits shutdown_timeout, then terminates it, as
        # CPython's _finalize_manager does.
        m = mpmanager.SyncManager()
        m.start()
        proc = m._process
        t0 = time.monotonic()
        mpmanager._finalize_manager(
            proc, ("127.0.0.1", 1), b"x", m._state, m._Client, 0.2)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertFalse(proc.is_alive())
        self.assertEqual(proc.exitcode, 0)  # SIGTERM is a clean stop

    def test_sigint_to_the_parent_group_does_not_stop_the_server(self):
        with mpmanager.Manager() as m:
            os.kill(m._process.pid, signal.SIGINT)
            time.sleep(0.2)
            self.assertTrue(m._process.is_alive())
            self.assertEqual(m.list([1])[0], 1)

    def test_server_stops_when_its_program_is_killed(self):
        code = (
            "import os, signal, sys, mpmanager\n"
            "m = mpmanager.Manager()\n"
            "print(m._process.pid, flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
        out = subprocess.run([sys.executable, "-c", code], env=env,
                             stdout=subprocess.PIPE, timeout=60).stdout
        pid = int(out.split()[0])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            self.fail("the server outlived the killed program by 10 s")

    def test_missing_binary_is_a_clear_error(self):
        old = os.environ.get("MPMANAGER_BIN")
        os.environ["MPMANAGER_BIN"] = "/nonexistent/mpmanager"
        try:
            with self.assertRaisesRegex(mpmanager.BinaryNotFound, "not an executable"):
                mpmanager.Manager()
        finally:
            os.environ["MPMANAGER_BIN"] = old

    def test_server_that_cannot_bind_is_a_clear_error_not_a_hang(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        try:
            m = mpmanager.SyncManager(address=s.getsockname(), authkey=b"x")
            t0 = time.monotonic()
            with self.assertRaisesRegex(mpmanager.ServerStartError, "exited with status"):
                m.start()
            self.assertLess(time.monotonic() - t0, 20)
        finally:
            s.close()

    def test_server_that_never_reports_its_address_times_out(self):
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "mpmanager")
            with open(fake, "w") as f:
                f.write("#!/bin/sh\nexec sleep 60\n")
            os.chmod(fake, 0o755)
            old_bin, old_timeout = os.environ.get("MPMANAGER_BIN"), mpmanager.START_TIMEOUT
            os.environ["MPMANAGER_BIN"] = fake
            mpmanager.START_TIMEOUT = 0.5
            try:
                with self.assertRaisesRegex(mpmanager.ServerStartError, "did not report"):
                    mpmanager.Manager()
            finally:
                os.environ["MPMANAGER_BIN"] = old_bin
                mpmanager.START_TIMEOUT = old_timeout

    def test_pool_is_refused_with_a_reason(self):
        with mpmanager.Manager() as m:
            with self.assertRaises(Exception) as cm:
                m.Pool(2)
            self.assertIn("Pool", str(cm.exception))

    def test_initializer_is_refused(self):
        m = mpmanager.SyncManager()
        with self.assertRaisesRegex(mpmanager.UnsupportedRegistration, "initializer"):
            m.start(initializer=print)


class ReadmeTest(unittest.TestCase):
    def test_readme_python_quick_start_runs_as_written(self):
        readme = os.path.join(HERE, "..", "..", "README.md")
        with open(readme, encoding="utf-8") as f:
            text = f.read()
        start = text.index("**As a drop-in replacement**")
        block = text[text.index("```python\n", start) + 10:]
        block = block[:block.index("```")]
        env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
        out = subprocess.run([sys.executable, "-c", block], env=env,
                             stdout=subprocess.PIPE, timeout=60,
                             universal_newlines=True)
        self.assertEqual(out.returncode, 0)
        self.assertEqual(out.stdout, "{'x': [1, 2]}\n")


class Maths(object):
    def add(self, a, b):
        return a + b


class RegistrationTest(unittest.TestCase):
    def test_python_class_is_refused_with_a_reason(self):
        class MathsManager(mpmanager.BaseManager):
            pass

        MathsManager.register("Maths", Maths)
        with self.assertRaisesRegex(mpmanager.UnsupportedRegistration,
                                    "'Maths'.*a class.*runs no Python code"):
            MathsManager().start()

    def test_callable_building_new_objects_is_refused(self):
        class M(mpmanager.BaseManager):
            pass

        M.register("fresh", callable=lambda: {})
        with self.assertRaisesRegex(mpmanager.UnsupportedRegistration, "new object"):
            M().start()

    def test_get_queue_pattern_moves_the_queue_and_its_items(self):
        q = queue.Queue(maxsize=5)
        q.put("first")
        shared = {"k": 1}

        class QueueManager(mpmanager.BaseManager):
            pass

        QueueManager.register("get_queue", callable=lambda: q)
        QueueManager.register("get_dict", callable=lambda: shared,
                              proxytype=managers.DictProxy)
        m = QueueManager(address=("127.0.0.1", 0), authkey=b"abracadabra")
        m.start()
        try:
            class Client(managers.BaseManager):
                pass

            Client.register("get_queue")
            Client.register("get_dict", proxytype=managers.DictProxy)
            c = Client(address=m.address, authkey=b"abracadabra")
            c.connect()
            cq = c.get_queue()
            self.assertEqual(cq.get(timeout=5), "first")
            cq.put("from client")
            self.assertEqual(m.get_queue().get(timeout=5), "from client")
            for i in range(5):
                cq.put(i)
            with self.assertRaises(queue.Full):
                cq.put("over", timeout=0.05)
            self.assertEqual(c.get_dict()["k"], 1)
        finally:
            m.shutdown()

    def test_get_server_serve_forever_until_shutdown(self):
        q = queue.Queue()

        class QueueManager(mpmanager.BaseManager):
            pass

        QueueManager.register("get_queue", callable=lambda: q)
        srv = QueueManager(address=("127.0.0.1", 0), authkey=b"a").get_server()
        host, port = srv.address
        done = []

        def serve():
            try:
                srv.serve_forever()
            except SystemExit as e:
                done.append(e.code)

        t = threading.Thread(target=serve)
        t.start()

        class Client(managers.BaseManager):
            pass

        Client.register("get_queue")
        c = Client(address=(host, port), authkey=b"a")
        c.connect()
        c.get_queue().put(1)
        self.assertEqual(c.get_queue().get(), 1)
        conn = multiprocessing.connection.Client((host, port), authkey=b"a")
        managers.dispatch(conn, None, "shutdown")
        conn.close()
        t.join(10)
        self.assertEqual(done, [0])


class PublicApiTest(unittest.TestCase):
    def test_all_lists_every_public_name(self):
        for name in mpmanager.__all__:
            self.assertTrue(hasattr(mpmanager, name), name)
        public = {n for n, v in vars(mpmanager).items()
                  if not n.startswith("_") and isinstance(v, type)
                  and v.__module__ == "mpmanager"}
        self.assertEqual(public - set(mpmanager.__all__), set())


class CommandLineTest(unittest.TestCase):
    def test_dash_m_runs_a_module_with_mpmanagers_server(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "mpm_dash_m_mod.py"), "w") as f:
                f.write("import sys, multiprocessing\n"
                        "if __name__ == '__main__':\n"
                        "    with multiprocessing.Manager() as m:\n"
                        "        print(sys.argv[1:], type(m._process).__name__)\n")
            out = subprocess.run(
                [sys.executable, "-m", "mpmanager", "-m", "mpm_dash_m_mod", "a", "b"],
                cwd=d, stdout=subprocess.PIPE, universal_newlines=True, timeout=120,
                env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        self.assertEqual(out.returncode, 0)
        self.assertEqual(out.stdout.strip(), "['a', 'b'] ServerProcess")

    def test_an_mpmanager_of_another_version_on_path_is_refused(self):
        import sysconfig
        own = [os.path.join(p, "mpmanager") for p in
               (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)) if p]
        if any(os.path.exists(p) for p in own):
            self.skipTest("this environment has the package's own binary")
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "mpmanager")
            with open(fake, "w") as f:
                f.write("#!/bin/sh\necho mpmanager 9.9.9\n")
            os.chmod(fake, 0o755)
            env = dict(os.environ, PATH=d + os.pathsep + os.environ.get("PATH", ""))
            env.pop("MPMANAGER_BIN", None)
            env["PYTHONPATH"] = os.pathsep.join(sys.path)
            out = subprocess.run(
                [sys.executable, "-c", "import mpmanager; mpmanager.binary_path()"],
                stderr=subprocess.PIPE, universal_newlines=True, env=env, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("BinaryNotFound", out.stderr)
        self.assertIn("9.9.9", out.stderr)


class InstallTest(unittest.TestCase):
    def tearDown(self):
        mpmanager.uninstall()

    def test_install_makes_multiprocessing_manager_use_the_rust_server(self):
        mpmanager.install()
        self.assertTrue(mpmanager.installed())
        m = multiprocessing.Manager()
        try:
            self.assertIsInstance(m._process, mpmanager.ServerProcess)
            q = m.Queue()
            q.put(1)
            self.assertEqual(q.get(), 1)
        finally:
            m.shutdown()
        m = managers.SyncManager()
        m.start()
        try:
            self.assertIsInstance(m._process, mpmanager.ServerProcess)
        finally:
            m.shutdown()
        mpmanager.uninstall()
        self.assertFalse(mpmanager.installed())
        m = multiprocessing.Manager()
        try:
            self.assertNotIsInstance(m._process, mpmanager.ServerProcess)
        finally:
            m.shutdown()

    def test_python_classes_fall_back_with_a_warning_or_fail_when_strict(self):
        class MathsManager(managers.BaseManager):
            pass

        MathsManager.register("Maths", Maths)
        mpmanager.install()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            m = MathsManager()
            m.start()
        try:
            self.assertEqual(m.Maths().add(4, 3), 7)
            self.assertNotIsInstance(m._process, mpmanager.ServerProcess)
            self.assertTrue(any(issubclass(x.category, mpmanager.FallbackWarning)
                                for x in w))
        finally:
            m.shutdown()
        mpmanager.install(strict=True)
        with self.assertRaises(mpmanager.UnsupportedRegistration):
            MathsManager().start()


if __name__ == "__main__":
    unittest.main()
