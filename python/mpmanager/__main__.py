"""``python -m mpmanager script.py [args...]`` runs an unmodified program
with :func:`mpmanager.install` in effect: its ``multiprocessing.Manager()``,
``SyncManager().start()`` and ``BaseManager`` servers are mpmanager's.

``python -m mpmanager -m module [args...]`` does the same for a module, as
``python -m module`` would run it.

``python -m mpmanager --strict script.py`` fails instead of falling back to
CPython's server for managers that need Python code in the server.
``python -m mpmanager --version`` prints the package and binary versions.
"""

import os
import runpy
import subprocess
import sys

import mpmanager

USAGE = ("usage: python -m mpmanager [--strict] (SCRIPT | -m MODULE) [ARGS...] "
         "| --version")


def main(argv):
    strict = False
    module = None
    while argv and argv[0].startswith("-"):
        opt = argv.pop(0)
        if opt == "--strict":
            strict = True
        elif opt == "-m":
            if not argv:
                print(USAGE, file=sys.stderr)
                return 2
            module = argv.pop(0)
            break
        elif opt == "--version":
            binary = mpmanager.binary_path()
            out = subprocess.run([binary, "--version"], stdout=subprocess.PIPE,
                                 universal_newlines=True).stdout.strip()
            print("mpmanager (Python package) %s; %s: %s"
                  % (mpmanager.__version__, binary, out))
            return 0
        elif opt in ("-h", "--help"):
            print(USAGE)
            print(__doc__)
            return 0
        else:
            print(USAGE, file=sys.stderr)
            return 2
    if module is not None:
        mpmanager.install(strict=strict)
        sys.argv = [module] + list(argv)
        sys.path[0] = os.getcwd()
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    mpmanager.install(strict=strict)
    script = argv[0]
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
