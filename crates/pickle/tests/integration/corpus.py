# The interop corpus for mpmanager-pickle, run by tests/integration/cpython_corpus.rs in
# every installed CPython.
#
#   corpus.py dump    -> one line per (value, protocol, pickler):
#                        name \t protocol \t pickle-hex \t repr-hex \t flags
#   corpus.py check   <- lines "name \t protocol \t pickle-hex" (pickles written
#                        by mpmanager); loads each with pickle.loads and the
#                        pure-Python pickle._loads, compares with the original
#                        value and runs its identity check; prints
#                        "ok <n>" or the failures.
import array
import datetime
import decimal
import math
import pickle
import sys
from multiprocessing.reduction import ForkingPickler
import multiprocessing.managers as mm


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y


def corpus():
    """(name, value, check, flags): check is an expression on the loaded
    value `x` that must be true; flags: 'norepr' = CPython's repr shows an
    address, 'fp' = also pickle with ForkingPickler."""
    items = []

    def add(name, value, check="True", flags=""):
        items.append((name, value, check, flags))

    for i in [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, 2**31, -2**31, -2**31 - 1,
              2**63 - 1, 2**63, -2**63, -2**63 - 1, 2**64, 2**1000, -2**1000]:
        add("int %d" % i if abs(i) < 2**100 else "int 2**1000 sign %d" % (i > 0), i)
    for f in [0.1, 1e16, 1e-5, float("inf"), float("-inf"), float("nan"), -0.0, 5e-324,
              1.7976931348623157e308, 123456789.125, 1.5, 100.0]:
        add("float %r" % f, f)
    add("complex", 1 + 2j)
    add("complex neg zero", complex(-0.0, -1.0))
    add("True", True)
    add("False", False)
    add("None", None)
    for s in ["", "hello", "it's", "both ' and \"", "tab\tnl\nret\r\\", "h\u00e9llo w\u00f6rld",
              "\u65e5\u672c\u8a9e", "astral \U0001F600\U0001D11E", "nonprint \x00\x07\x7f\x85\xa0\u200b\u2028\ufeff",
              "surrogates \udc80\ud800x", "private \ue000", "a" * 300]:
        add("str %r" % s[:30], s)
    add("bytes empty", b"")
    add("bytes all", bytes(range(256)))
    add("bytes quote", b"it's")
    add("bytes both quotes", b"'\"")
    add("bytearray", bytearray(b"abc\x00"))
    add("bytearray empty", bytearray())
    add("bytes large", bytes(range(256)) * 300)
    add("tuple empty", ())
    add("tuple 1", (1,))
    add("tuple 2", (1, "a"))
    add("tuple 5", (1, 2, 3, 4, 5))
    add("list empty", [])
    add("list nested", [[], [[]], [1, [2, [3]]]])
    add("list big", list(range(2500)))
    add("dict empty", {})
    add("dict", {"a": 1, 2: [3, (4,)], (1, 2): None})
    add("dict numeric keys", {1: "a", 2.5: "b", True: "c"})
    add("dict big", {str(i): i for i in range(1500)})
    add("set empty", set())
    add("set", {1, 2, 3})
    add("frozenset empty", frozenset())
    add("frozenset", frozenset({"a"}))
    add("slice", slice(1, 10, 2))
    add("slice none", slice(None))
    rl = [1]
    rl.append(rl)
    add("self list", rl, "x[1] is x")
    rd = {}
    rd["self"] = rd
    add("self dict", rd, "x['self'] is x")
    shared = [1, 2]
    add("shared", [shared, shared, (shared,)], "x[0] is x[1] and x[2][0] is x[0]")
    tl = []
    t = (tl,)
    tl.append(t)
    add("tuple cycle", t, "x[0][0] is x")
    add("datetime", datetime.datetime(2020, 1, 2, 3, 4, 5, 6), flags="fp")
    add("date", datetime.date(2020, 1, 2))
    add("timedelta", datetime.timedelta(days=1, seconds=5))
    add("decimal", decimal.Decimal("1.5"))
    add("array i", array.array("i", [1, 2, 3]), flags="fp")
    add("array d", array.array("d", [1.5, -2.0]), flags="fp")
    add("exception", KeyError("x"))
    add("exception 2 args", ValueError("bad", 2))
    add("user class", Point(1, "a"), "type(x) is Point and vars(x) == {'x': 1, 'y': 'a'}", "norepr")
    add("token", mm.Token("list", ("127.0.0.1", 5000), "abc"), flags="fp")
    add("mixed", {"when": datetime.date(2020, 1, 2), "pts": [Point(0, 0)], "n": -2**70},
        "type(x['pts'][0]) is Point", "norepr")
    return items


def same(a, b, seen=None):
    """Deep equality that also handles NaN, -0.0, cycles and objects
    without __eq__."""
    if seen is None:
        seen = set()
    if type(a) is not type(b):
        return False
    key = (id(a), id(b))
    if key in seen:
        return True
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        seen.add(key)
        return len(a) == len(b) and all(same(p, q, seen) for p, q in zip(a, b))
    if isinstance(a, dict):
        seen.add(key)
        return list(a) == list(b) and all(same(a[k], b[k], seen) for k in a)
    if isinstance(a, BaseException):
        return a.args == b.args
    if isinstance(a, mm.Token):
        return (a.typeid, a.address, a.id) == (b.typeid, b.address, b.id)
    if isinstance(a, Point):
        return same(vars(a), vars(b), seen)
    return a == b


def main():
    items = corpus()
    if sys.argv[1] == "dump":
        out = []
        for name, value, check, flags in items:
            r = "" if "norepr" in flags else repr(value)
            for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
                picklers = [("pickle", pickle.dumps)]
                if "fp" in flags:
                    picklers.append(("fp", lambda v, p: bytes(ForkingPickler.dumps(v, p))))
                for which, dumps in picklers:
                    data = dumps(value, proto)
                    out.append("\t".join([name, str(proto), which, data.hex(),
                                          r.encode("utf-8", "surrogatepass").hex(), flags]))
        sys.stdout.write("\n".join(out) + "\n")
    elif sys.argv[1] == "check":
        by_name = {name: (value, check, flags) for name, value, check, flags in items}
        failures = []
        n = 0
        for line in sys.stdin.read().splitlines():
            name, proto, data = line.split("\t")
            value, check, flags = by_name[name]
            data = bytes.fromhex(data)
            for loads in (pickle.loads, pickle._loads):
                n += 1
                try:
                    x = loads(data)
                except Exception as e:
                    failures.append("%s proto %s %s: load failed: %r" % (name, proto, loads.__name__, e))
                    continue
                if not same(x, value):
                    failures.append("%s proto %s %s: loaded %r != %r" % (name, proto, loads.__name__, x, value))
                elif not eval(check, {"x": x, "Point": Point}):
                    failures.append("%s proto %s %s: check failed: %s" % (name, proto, loads.__name__, check))
                elif "norepr" not in flags and repr(x) != repr(value):
                    failures.append("%s proto %s: repr %r != %r" % (name, proto, repr(x), repr(value)))
        if failures:
            print("\n".join(failures))
        else:
            print("ok %d" % n)


main()
