"""Runs the manager flavour of CPython's own multiprocessing test suite
(``test._test_multiprocessing``: the ``WithManagerTest*`` classes and
``TestSyncManagerTypes``) with ``mpmanager.install(strict=True)`` in effect,
so that every ``multiprocessing.Manager()`` / ``SyncManager().start()`` of
the suite runs mpmanager's Rust server.

    MPMANAGER_BIN=target/release/mpmanager PYTHONPATH=python \\
        python3 python/tests/run_cpython_manager_tests.py [-v] [-k PATTERN]

The last line printed is a summary:
``SUMMARY python=3.12 run=N passed=P failures=F errors=E skipped=S
excluded=X mpmanager_servers=M``; the exit status is 0 only if no test
failed and at least one mpmanager server was started.

EXCLUDED lists the tests that are not run, each with its reason: they need
Python code inside the server process, which a Rust server cannot run, or
they test something that is not the manager server.
"""

import argparse
import os
import sys
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import mpmanager  # noqa: E402

PY_CODE = "needs Python code inside the server process"

# "Class.method" (or "Class" for a whole class) -> why it is not run.
EXCLUDED = {
    # _TestPool (manager flavour) creates multiprocessing.pool.Pool objects
    # in the server: a pool of Python worker processes running Python
    # callables. mpmanager refuses the Pool typeid with a clear error.
    "WithManagerTestPool": PY_CODE + " (multiprocessing.pool.Pool)",
    # MyManager registers Python classes (FooBar), a generator function and
    # a Python iterator type; its server is CPython's BaseManager anyway.
    "WithManagerTestMyManager": PY_CODE + " (registered Python classes and generators)",
    # Barrier(action=...) runs a Python callable in the server when the
    # barrier trips; mpmanager refuses action= with a clear error.
    "WithManagerTestBarrier.test_action": PY_CODE + " (Barrier action)",
    "TestSyncManagerTypes.test_pool": PY_CODE + " (multiprocessing.pool.Pool)",
}


def build_suite(start_method, pattern=None):
    import test._test_multiprocessing as T

    ns = {"__name__": "cpython_manager_suite"}
    try:
        T.install_tests_in_module_dict(ns, start_method, only_type="manager")
    except TypeError:  # 3.8 - 3.10: no only_type
        T.install_tests_in_module_dict(ns, start_method)
    classes = [ns[k] for k in sorted(ns) if k.startswith("WithManager")]
    if hasattr(T, "TestSyncManagerTypes"):
        classes.append(T.TestSyncManagerTypes)

    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = ["*%s*" % pattern]
    suite = unittest.TestSuite()
    excluded = []
    for cls in classes:
        reason = EXCLUDED.get(cls.__name__)
        names = loader.getTestCaseNames(cls)
        if reason is not None:
            excluded += ["%s.%s" % (cls.__name__, n) for n in names]
            continue
        for name in names:
            why = EXCLUDED.get("%s.%s" % (cls.__name__, name))
            if why is not None:
                excluded.append("%s.%s" % (cls.__name__, name))
                continue
            suite.addTest(cls(name))
    return ns, suite, excluded


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--start-method", default="fork")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("-k", dest="pattern")
    args = ap.parse_args()

    # strict=False: a manager that needs Python code in its server falls
    # back to CPython's server with a FallbackWarning; every one is recorded
    # below and fails the run unless its test class is excluded.
    mpmanager.install(strict=False)
    fallbacks = []
    show = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, mpmanager.FallbackWarning):
            fallbacks.append(str(message))
        return show(message, category, filename, lineno, file, line)

    warnings.showwarning = record
    warnings.simplefilter("always", mpmanager.FallbackWarning)
    started = [0]
    original = mpmanager._spawn_server

    def counting_spawn(*a, **kw):
        started[0] += 1
        return original(*a, **kw)

    mpmanager._spawn_server = counting_spawn

    ns, suite, excluded = build_suite(args.start_method, args.pattern)
    ns["setUpModule"]()
    try:
        runner = unittest.TextTestRunner(verbosity=2 if args.verbose else 1)
        result = runner.run(suite)
    finally:
        ns["tearDownModule"]()

    for name in excluded:
        print("EXCLUDED %s: %s" % (name, EXCLUDED.get(name) or EXCLUDED.get(name.split(".")[0])))
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped) - len(result.expectedFailures)
    print(
        "SUMMARY python=%d.%d run=%d passed=%d failures=%d errors=%d skipped=%d "
        "excluded=%d mpmanager_servers=%d"
        % (sys.version_info[0], sys.version_info[1], result.testsRun, passed,
           len(result.failures), len(result.errors), len(result.skipped),
           len(excluded), started[0]))
    for f in fallbacks:
        print("FALLBACK to CPython's server: %s" % f)
    ok = result.wasSuccessful() and started[0] > 0 and not fallbacks
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
