# Scenario 6 — values of many types stored in a managed list and dict and
# read back: the server-side repr (str(proxy)) and the client-side round
# trip must both agree with CPython's server.
import datetime
import decimal
import fractions
import collections


class Point:
    """A user class with the default object repr."""
    def __init__(self, x, y):
        self.x = x
        self.y = y


class Money:
    """A user class with its own __repr__ and __eq__ (only used client-side)."""
    def __init__(self, cents):
        self.cents = cents

    def __repr__(self):
        return 'Money(%d)' % self.cents

    def __eq__(self, other):
        return isinstance(other, Money) and other.cents == self.cents


def values():
    nan = float('nan')
    cyclic = [1]
    cyclic.append(cyclic)
    cyclic_dict = {'k': 1}
    cyclic_dict['self'] = cyclic_dict
    shared = [1, 2]
    return [
        ('None', None), ('True', True), ('False', False),
        ('0', 0), ('-1', -1), ('255', 255), ('256', 256), ('-256', -256),
        ('2**31-1', 2 ** 31 - 1), ('2**31', 2 ** 31), ('-2**31', -2 ** 31), ('-2**31-1', -2 ** 31 - 1),
        ('2**63-1', 2 ** 63 - 1), ('2**63', 2 ** 63), ('-2**63', -2 ** 63), ('-2**63-1', -2 ** 63 - 1),
        ('2**64', 2 ** 64), ('10**30', 10 ** 30), ('-(10**30)', -(10 ** 30)), ('2**1000', 2 ** 1000),
        ('0.0', 0.0), ('-0.0', -0.0), ('1.0', 1.0), ('0.1', 0.1), ('1/3', 1 / 3),
        ('1e15', 1e15), ('1e16', 1e16), ('1e-4', 1e-4), ('1e-5', 1e-5), ('123456789012345678.0', 123456789012345678.0),
        ('5e-324', 5e-324), ('max float', 1.7976931348623157e308), ('inf', float('inf')), ('-inf', float('-inf')),
        ('nan', nan), ('1.5e300*1e10', 1.5e300 * 1e10),
        ('1j', 1j), ('1+2j', 1 + 2j), ('complex(-0.0,-0.0)', complex(-0.0, -0.0)), ('complex(nan, inf)', complex(nan, float('inf'))),
        ("''", ''), ("'hello'", 'hello'), ("it's", "it's"), ('say "hi"', 'say "hi"'), ('both quotes', '\'"'),
        ('escapes', '\t\n\r\\\x00\x07\x1b\x7f'), ('latin-1', 'caf\xe9 \xa0 \xad \xff'),
        ('bmp', '\u0100\u20ac\u200b\u2028\ufeff\uffff'), ('cjk', '\u65e5\u672c'),
        ('astral', '\U0001f600\U00010000\U000e0001\U0010ffff'), ('lone surrogate', '\ud800'),
        ('unassigned', '\u0378'), ('combining', 'e\u0301'),
        ("b''", b''), ('bytes', b'\x00\x7f\x80\xff abc'), ('bytes quotes', b'\'"'), ("bytes '", b"it's"),
        ('bytearray', bytearray(b'ab\x00')), ('empty bytearray', bytearray()),
        ('()', ()), ('(1,)', (1,)), ('(1, (2, 3))', (1, (2, 3))),
        ('[]', []), ('{}', {}), ('set()', set()), ('{3, 1, 2}', {3, 1, 2}), ('{100, 1, 33}', {100, 1, 33}),
        ('frozenset()', frozenset()), ('frozenset({1, 2})', frozenset({1, 2})), ('{(1, 2)}', {(1, 2)}),
        ('nested', {'a': [1, {'b': (2, 3)}], 'c': {4: None}, 5: [[], [[]]]}),
        ('shared', [shared, shared]),
        ('list containing itself', cyclic), ('dict containing itself', cyclic_dict),
        ('range', range(1, 10, 2)), ('slice', slice(1, None, -1)), ('Ellipsis', ...),
        ('datetime', datetime.datetime(2024, 2, 29, 23, 59, 58, 123456)),
        ('datetime tz', datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)),
        ('date', datetime.date(1999, 12, 31)), ('time', datetime.time(12, 30)),
        ('timedelta', datetime.timedelta(days=-1, seconds=5, microseconds=7)),
        ('Decimal', decimal.Decimal('1.10')), ('Decimal nan', decimal.Decimal('NaN')), ('Decimal -0', decimal.Decimal('-0')),
        ('Fraction', fractions.Fraction(1, 3)),
        ('OrderedDict', collections.OrderedDict([('b', 1), ('a', 2)])),
        ('defaultdict', collections.defaultdict(list, {'k': [1]})),
        ('Point', Point(1, 2)),
        ('type', int), ('function', len),
    ]


def main(m):
    # Server-side reprs (str(proxy)) and client-side reprs of the copies
    # read back go on separate lines: the harness tolerates a server line
    # that matches another CPython version's server (e.g. the OrderedDict
    # repr changed in 3.12), and the client line is always this version's.
    section('through a list: "server" = str(proxy), "client" = repr(proxy[0])')
    for label, v in values():
        try:
            single = m.list([v])
        except Exception as e:
            print('%-24s server !! %s' % (label, describe(e)))
            print('%-24s client -' % label)
            continue
        try:
            back = single[0]
            back_repr = repr(back)
        except BaseException as e:
            back_repr = '!! ' + describe(e)
        print('%-24s server %s' % (label, str(single)))
        print('%-24s client %s' % (label, back_repr))
        del single

    section('through a dict value')
    for label, v in values():
        d = m.dict()
        try:
            d['v'] = v
        except Exception as e:
            print('%-24s !! %s' % (label, describe(e)))
            continue
        print('%-24s %s' % (label, str(d)))
        del d

    section('hashable values as dict keys')
    d = m.dict()
    for label, v in values():
        try:
            hash(v)
        except TypeError:
            continue
        if isinstance(v, (Point, type)) or v is len:
            continue
        try:
            d[v] = label
        except BaseException as e:
            print('%-24s !! %s' % (label, describe(e)))
    print(d)
    print(len(d), sorted(d.values()))
    print('d[1.0]', d[1.0], '| d[True]', d[True], '| d[0]', d[0], '| d[-0.0]', d[-0.0])
    attempt("d[float('nan')]", lambda: d[float('nan')])
    print("(1, (2, 3)) in d", (1, (2, 3)) in d, "| frozenset({2, 1}) in d", frozenset({2, 1}) in d)
    print("'1' in d", '1' in d, "| b'' in d", b'' in d, "| '' in d", '' in d)

    section('Python equality inside the server')
    l = m.list([1, 1.0, True, '1', b'1', 0, -0.0, False, float('nan'), (1,), [1], 2 ** 64])
    print(l)
    print('count(1)', l.count(1), '| count(0.0)', l.count(0.0), '| count(nan)', l.count(float('nan')))
    print('index(True)', l.index(True), '| index(False)', l.index(False), '| index(2.0**64)', l.index(2.0 ** 64))
    print('index([1])', l.index([1]), '| index((1.0,))', l.index((1.0,)), '| "1" in l', '1' in l, '| 2 in l', 2 in l)
    l.remove(1.0)
    print(l)
    l2 = m.list([3, 1.5, 2, True, -7])
    l2.sort()
    print(l2)
    l2.sort(reverse=True)
    print(l2)
    l3 = m.list(['b', 'a', 'B', '\xe9', '\U0001f600', ''])
    l3.sort()
    print(l3)
    l4 = m.list([(2, 'a'), (1, 'b'), (1, 'a'), (1,)])
    l4.sort()
    print(l4)
    attempt('sort [1, None]', m.list([1, None]).sort)
    attempt('sort [b"a", "a"]', m.list([b'a', 'a']).sort)

    section('user classes')
    l = m.list()
    attempt('l.append(Point(3, 4))', l.append, Point(3, 4))
    print(str(l))
    attempt('l[0].x, l[0].y', lambda: (l[0].x, l[0].y))
    attempt('type(l[0]).__name__', lambda: type(l[0]).__name__)
    attempt('l.append(Money(250))', l.append, Money(250))
    attempt('l[-1]', lambda: l[-1])
    attempt('l[-1] == Money(250)', lambda: l[-1] == Money(250))
    ns = m.Namespace()
    attempt('ns.p = Point(5, 6)', setattr, ns, 'p', Point(5, 6))
    attempt('ns.p.x, ns.p.y', lambda: (ns.p.x, ns.p.y))

    section('lists that contain themselves')
    c = m.list([1])
    c.append(c)
    print(c)
    print(c[1][0], len(c[1][1]))
    x = [0]
    x.append(x)
    c2 = m.list(x)
    print(c2)
    print(c2[1])
