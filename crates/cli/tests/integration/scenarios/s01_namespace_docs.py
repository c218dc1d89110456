# Scenario 1 — the Namespace docs example (seeds 000/001) and the rest of
# what a user can do with a namespace proxy: hasattr, del, AttributeError.


def main(m):
    section('docs example')
    Global = m.Namespace()
    Global.x = 10
    Global.y = 'hello'
    Global._z = 12.3    # this is an attribute of the proxy
    print(Global)
    print(str(Global))
    print(repr(Global))
    print('Global._z', Global._z)
    print('x, y', Global.x, Global.y)
    print('getvalue', Global._getvalue())
    print('getvalue type', type(Global._getvalue()).__name__)

    section('hasattr / getattr')
    print('hasattr x', hasattr(Global, 'x'))
    print('hasattr nosuch', hasattr(Global, 'nosuch'))
    print('hasattr _z', hasattr(Global, '_z'))
    print('hasattr _nosuch', hasattr(Global, '_nosuch'))
    attempt('Global.nosuch', lambda: Global.nosuch)
    attempt('getattr default', getattr, Global, 'nosuch', 'dflt')

    section('del')
    del Global.x
    print(Global)
    attempt('del Global.x again', delattr, Global, 'x')
    attempt('Global.x after del', lambda: Global.x)
    del Global._z
    attempt('Global._z after del', lambda: Global._z)
    attempt('del Global._z again', delattr, Global, '_z')

    section('values of several types, repr sorted by "name=value" strings')
    ns = m.Namespace()
    print(ns)
    ns.b = [1, 2]
    ns.a = {'k': (1, 2.5)}
    ns.a_ = None
    ns.B = 'B'
    ns.aa = b'\x00'
    ns.n = -0.0
    print(ns)
    ns.b = ns.b + [3]
    print(ns.b, ns)

    section('namespace created with keywords (create kwds)')
    ns2 = m.Namespace(job='Builder', name='Bob')
    print(ns2)
    print(ns2.job, ns2.name)

    section('namespace inside containers')
    l = m.list([Global, ns2])
    print(l[1])
    print(l[1].name)
    l[1].name = 'Wendy'
    print(ns2)
    d = m.dict(ns=ns2)
    print(d['ns'])
