# Scenario 7 — run over TCP (127.0.0.1, port chosen by the server): the
# proxy-docs basics, nested proxies whose tokens carry a tuple address, a
# second client connect()ing to m.address, and a spawn child that connects
# on its own.
import multiprocessing


def child_connects(address, results):
    # a fresh client in another process, as in "Using a remote manager"
    mgr = connect_client(address)
    own = mgr.list(['from child'])
    results.append(own)          # a proxy created by another client
    results.append(own[:])
    d = mgr.dict(child=True)
    print('child sees', d, own)


def main(m):
    section('address')
    print(type(m.address).__name__, m.address[0], isinstance(m.address[1], int), m.address[1] > 0)

    section('basics over TCP')
    l = m.list([i * i for i in range(10)])
    print(l, l[4], l[2:5])
    print(l._token.typeid, l._token.address == m.address)
    a = m.list()
    b = m.dict(x=1)
    a.append(b)
    print(a, a[0], a[0]._token.address == m.address, type(a[0]._token.address).__name__)
    a[0]['y'] = 2
    print(b)

    section('second client in the same process')
    m2 = connect_client(m.address)
    l2 = m2.list([1, 2])
    a.append(l2)
    print(a[1], a[1]._token.address == m.address)
    ns = m2.Namespace(v=1)
    ns.v += 1
    print(ns)

    section('spawn child that connects by itself')
    results = m.list()
    ctx = multiprocessing.get_context('spawn')
    p = ctx.Process(target=child_connects, args=(m.address, results))
    p.start()
    p.join(60)
    print('exitcode', p.exitcode)
    print(len(results), results[1])
    print(results[0], results[0][:])
    results[0].append('from parent')
    print(results[0])
