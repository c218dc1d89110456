# Writes the fuzzer's seed corpus: CPython pickles of manager-like messages
# and tricky values at every protocol. Usage (from crates/pickle/fuzz):
#   python3 make_seeds.py corpus/decode && cargo +nightly fuzz run decode
import datetime, decimal, os, pickle, sys
from multiprocessing.managers import Token

out = sys.argv[1] if len(sys.argv) > 1 else "corpus/decode"
os.makedirs(out, exist_ok=True)
values = [
    ('7f1c829a8a00', '__setitem__', ('a', 1), {}),
    ('#RETURN', None),
    [1, [2, (3,)], {'a': b'x'}],
    {1, 2.5, 's'},
    frozenset({-1}),
    datetime.datetime(2020, 1, 2),
    decimal.Decimal('1.5'),
    Token('list', ('127.0.0.1', 5), 'ab'),
    KeyError('x'),
    2 ** 100,
    '\udc80x',
    bytearray(b'ab'),
    slice(1, None, 2),
    1 + 2j,
]
rec = [1]
rec.append(rec)
values.append(rec)
n = 0
for v in values:
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        with open(os.path.join(out, "seed%03d" % n), "wb") as f:
            f.write(pickle.dumps(v, proto))
        n += 1
print("%d seeds in %s" % (n, out))
