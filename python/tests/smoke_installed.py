"""Checks a pip-installed mpmanager (run by .ci/run from outside the repo,
with the venv's python): the package comes from site-packages, the binary
from the wheel, and a Manager works end to end."""
import os
import sys
import sysconfig

assert "MPMANAGER_BIN" not in os.environ, "unset MPMANAGER_BIN for this check"
import mpmanager

assert "site-packages" in mpmanager.__file__, mpmanager.__file__
binary = mpmanager.binary_path()
assert os.path.dirname(binary) == sysconfig.get_path("scripts"), binary

with mpmanager.Manager() as m:
    q = m.Queue()
    d = m.dict()
    q.put({"x": [1, 2]})
    d.update(q.get(timeout=10))
    assert d.copy() == {"x": [1, 2]}, d.copy()
    exe = os.path.realpath("/proc/%d/exe" % m._process.pid)
    assert exe == os.path.realpath(binary), (exe, binary)
print("smoke ok: %s with %s on Python %s" % (mpmanager.__file__, binary, sys.version.split()[0]))
