# Benchmark corpus shared by benches/codec.rs and benches/compare.rs:
# realistic manager messages and large containers, pickled by CPython at
# protocol 4 (what 3.8-3.13 send). Prints "name \t hex" lines.
# With "time N": also times CPython's C pickle.loads/dumps on each and prints
# "name \t hex \t loads_ns \t dumps_ns" (best of 5 runs of N-scaled loops).
import pickle, sys, time
from multiprocessing.managers import Token

DICT_EXPOSED = ('__contains__', '__delitem__', '__getitem__', '__iter__', '__len__',
                '__setitem__', 'clear', 'copy', 'get', 'items', 'keys', 'pop', 'popitem',
                'setdefault', 'update', 'values', '__iter__')
corpus = [
    ("request_setitem", ('7f1c829a8a00', '__setitem__', ('a', 1), {})),
    ("reply_return_none", ('#RETURN', None)),
    ("reply_create_dict", ('#RETURN', ('7f1c829a8a00', DICT_EXPOSED))),
    ("reply_proxy", ('#PROXY', (('__next__', 'send', 'throw', 'close'),
                                Token('Iterator', ('127.0.0.1', 50011), '7f1c82a1c1d0')))),
    ("list_100k_ints", list(range(100000))),
    ("list_10k_records", [(i, str(i), i * 0.5, None, b'x') for i in range(10000)]),
    ("dict_10k_str", {('key%d' % i): [i, 'v' * 10] for i in range(10000)}),
]

def best_ns(fn, arg):
    n = 1
    while True:
        t = time.perf_counter_ns()
        for _ in range(n):
            fn(arg)
        dt = time.perf_counter_ns() - t
        if dt > 20_000_000:
            break
        n *= 2
    best = dt / n
    for _ in range(4):
        t = time.perf_counter_ns()
        for _ in range(n):
            fn(arg)
        best = min(best, (time.perf_counter_ns() - t) / n)
    return best

for name, value in corpus:
    data = pickle.dumps(value, protocol=4)
    fields = [name, data.hex()]
    if len(sys.argv) > 1 and sys.argv[1] == "time":
        fields.append("%.1f" % best_ns(pickle.loads, data))
        fields.append("%.1f" % best_ns(lambda v: pickle.dumps(v, protocol=4), value))
    print("\t".join(fields))
