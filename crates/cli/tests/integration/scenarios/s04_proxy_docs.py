# Scenario 4 — the "Proxy Objects" section of the docs (seeds 001/004).


def main(manager):
    section('proxy basics')
    l = manager.list([i*i for i in range(10)])
    print(l)
    print(repr(l))
    print(l[4])
    print(l[2:5])
    print(l[-1], l[::3], l[::-2], l[100:])
    print(len(l), 16 in l, 17 in l, bool(l), bool(manager.list()))

    section('nesting')
    a = manager.list()
    b = manager.list()
    a.append(b)         # referent of a now contains referent of b
    print(a, b)
    b.append('hello')
    print(a[0], b)
    print(repr(a[0]))
    print(type(a[0]).__name__, a[0]._token.typeid)

    l_outer = manager.list([manager.dict() for i in range(2)])
    d_first_inner = l_outer[0]
    d_first_inner['a'] = 1
    d_first_inner['b'] = 2
    l_outer[1]['c'] = 3
    l_outer[1]['z'] = 26
    print(l_outer[0])
    print(l_outer[1])
    print(l_outer)

    d = manager.dict()
    d['list'] = manager.list([1, 2])
    d['list'].append(3)
    print(d['list'], len(d['list']))
    d['dict'] = manager.dict(k='v')
    d['dict']['k2'] = 'v2'
    print(d['dict'], d['dict'].copy())

    section('reassign to propagate')
    # create a list proxy and append a mutable object (a dictionary)
    lproxy = manager.list()
    lproxy.append({})
    # now mutate the dictionary
    d = lproxy[0]
    d['a'] = 1
    d['b'] = 2
    print('not yet synced:', lproxy)
    # at this point, the changes to d are not yet synced, but by
    # updating the dictionary, the proxy is notified of the change
    lproxy[0] = d
    print('synced:', lproxy)

    section('comparisons')
    print(manager.list([1, 2, 3]) == [1, 2, 3])
    print(manager.list([1, 2, 3]) == manager.list([1, 2, 3]))
    x = manager.list([1, 2, 3])
    print(x == x, x[:] == [1, 2, 3], x._getvalue() == [1, 2, 3])

    section('_callmethod')
    l = manager.list(range(10))
    print(l._callmethod('__len__'))
    print(l._callmethod('__getitem__', (slice(2, 7),)))  # equivalent to l[2:7]
    attempt("l._callmethod('__getitem__', (20,))", l._callmethod, '__getitem__', (20,))
    attempt("l._callmethod('index', (5,))", l._callmethod, 'index', (5,))
    attempt("l._callmethod('index', (5, 2))", l._callmethod, 'index', (5, 2))
    attempt("l._callmethod('nosuch')", l._callmethod, 'nosuch')
    attempt("l._callmethod('__str__')", l._callmethod, '__str__')
    attempt("l._callmethod('__repr__')", l._callmethod, '__repr__')
    attempt("l._callmethod('#GETVALUE')", l._callmethod, '#GETVALUE')
    attempt("l._callmethod('count', (), {'value': 1})", l._callmethod, 'count', (), {'value': 1})
    attempt("l._callmethod('append', (1, 2))", l._callmethod, 'append', (1, 2))
    attempt("l._callmethod('sort', (), {'reverse': True})", l._callmethod, 'sort', (), {'reverse': True})
    print(l)

    section('_getvalue')
    v = l._getvalue()
    print(type(v).__name__, v)
    v.append('local only')
    print(l)
    dd = manager.dict({'a': [1]})
    g = dd._getvalue()
    print(type(g).__name__, g)
    ns = manager.Namespace(a=1)
    print(type(ns._getvalue()).__name__, ns._getvalue())
    val = manager.Value('d', 2.5)
    print(type(val._getvalue()).__name__, val._getvalue().value)
    arr = manager.Array('i', [1, 2, 3])
    print(type(arr._getvalue()).__name__, arr._getvalue())

    section('str() fallback when the server cannot repr')
    huge = manager.list([10 ** 5000])
    print(str(huge))
    print(huge[0] == 10 ** 5000)
    ok = manager.list([10 ** 4299])
    print(len(str(ok)))
