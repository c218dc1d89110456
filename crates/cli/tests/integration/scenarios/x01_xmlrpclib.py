# CPython clients with serializer='xmlrpclib' (as CPython's
# _TestRemoteManager) against a server using the same serializer.
#
#   python3 x01_xmlrpclib.py cpython KEYHEX          # starts CPython's server
#   python3 x01_xmlrpclib.py connect HOST PORT KEYHEX  # an mpmanager serve
#
# Prints one line per step; the output must be identical for both servers.
import sys
import xmlrpc.client as xmlrpclib
from multiprocessing.connection import Client
from multiprocessing.managers import (BaseManager, DictProxy, IteratorProxy,
                                      ListProxy, Namespace, NamespaceProxy,
                                      RemoteError)

shared_list = []


auto_list = []


def get_shared():
    return shared_list


def get_auto():
    return auto_list


class RM(BaseManager):
    pass


RM.register('list', list, proxytype=ListProxy)
RM.register('dict', dict, proxytype=DictProxy)
RM.register('Namespace', Namespace, proxytype=NamespaceProxy)
RM.register('Iterator', proxytype=IteratorProxy, create_method=False)
RM.register('shared', get_shared, proxytype=ListProxy)
RM.register('shared_auto', get_auto)  # AutoProxy, like 'get_queue'


def show(v):
    if isinstance(v, xmlrpclib.Binary):
        return 'Binary(%r)' % (v.data,)
    if isinstance(v, xmlrpclib.DateTime):
        return 'DateTime(%r)' % (v.value,)
    if isinstance(v, list):
        return '[' + ', '.join(show(x) for x in v) + ']'
    if isinstance(v, dict):
        return '{' + ', '.join('%r: %s' % (k, show(x)) for k, x in v.items()) + '}'
    return repr(v)


def last_line(text):
    line = text.strip().splitlines()[-1]
    # expat's positions for syntax errors are not reproduced: type only.
    if line.startswith('xml.parsers.expat.ExpatError') and 'invalid token' not in line:
        line = line.split(':')[0]
    return line


def step(label, f):
    try:
        r = f()
        print('%s -> %s' % (label, show(r)))
    except RemoteError as e:
        print('%s !! RemoteError %s' % (label, last_line(e.args[0])))
    except Exception as e:
        print('%s !! %s: %s' % (label, type(e).__name__, e))


def items(p):
    # Slices cannot be marshalled: read item by item.
    return [p[i] for i in range(len(p))]


def raw(address, key, msgs):
    """Sends raw payloads on one served connection; the reply kinds and
    the last line of texts."""
    c = Client(address, authkey=key)
    out = []
    try:
        for m in msgs:
            c.send_bytes(m)
            (kind, payload), = xmlrpclib.loads(c.recv_bytes().decode())[0]
            if isinstance(payload, str) and kind in ('#TRACEBACK', '#UNSERIALIZABLE'):
                payload = last_line(payload)
            else:
                payload = show(payload)
            out.append('%s %s' % (kind, payload))
    finally:
        c.close()
    return out


def dumps(obj):
    return xmlrpclib.dumps((obj,), None, None, None, 1).encode('utf-8')


def run(m, address, key):
    l = m.list([1, 'a', None, True, 2.25, 'caf\xe9 \u4e2d\U0001f600', b'hi\xe5', b'', (1, (2,))])
    step('list slice', lambda: items(l))
    step('list len', lambda: len(l))
    step('append big int', lambda: l.append(2 ** 40))
    step('append limits', lambda: (l.append(2 ** 31 - 1), l.append(-2 ** 31), items(l)[-2:])[2])
    step('floats', lambda: (l.extend([float('inf'), float('-inf'), -0.0, 1e16, 0.1]), items(l)[-5:])[1])
    step('index error', lambda: l[100])
    step('newlines', lambda: (l.append('a\r\nb\rc\td'), l[-1])[1])
    step('escapes', lambda: (l.append('<&>]]> "q"'), l[-1])[1])
    step('nul char', lambda: l.append('a\x00b'))
    step('surrogate', lambda: l.append('\ud800'))
    step('sort mixed', lambda: l.sort())
    step('count', lambda: l.count(1))
    step('str', lambda: str(m.list([1, 'x', None])))
    big = m.list(['x' * 200000, list(range(2000)), {'k%d' % i: i for i in range(500)}])
    step('large', lambda: (len(big[0]), big[1][-1], len(big[2]), big[2]['k499']))

    d = m.dict({'a': 1, 'b': [1, {'c': None}]})
    step('dict copy', lambda: d.copy())
    step('dict binary', lambda: (d.__setitem__('bin', b'\x00\xff' * 40), d['bin'])[1])
    step('dict datetime', lambda: (d.__setitem__('dt', xmlrpclib.DateTime('20240229T12:34:56')), d['dt'])[1])
    step('dict get', lambda: d.get('missing'))
    step('dict missing', lambda: d['missing'])
    step('dict contains', lambda: ('a' in d, 'zz' in d))
    step('dict len', lambda: len(d))
    step('dict keys', lambda: d.keys())
    step('dict values', lambda: d.values())
    step('dict items', lambda: d.items())
    step('dict pop', lambda: d.pop('a'))
    step('dict iter', lambda: list(iter(d)))
    step('dict markup key', lambda: (d.__setitem__('<k&>', 'v'), d['<k&>'])[1])
    step('dict copy 2', lambda: d.copy())
    step('dict int key', lambda: d.__setitem__(1, 2))
    step('dict copy int key', lambda: d.copy())
    step('dict del int key', lambda: d.__delitem__(1))

    ns = m.Namespace()
    step('ns set', lambda: (setattr(ns, 'x', 1), setattr(ns, 'y', 'text'))[0])
    step('ns get', lambda: (ns.x, ns.y))
    step('ns str', lambda: str(ns))
    step('ns missing', lambda: ns.zz)
    step('ns getvalue', lambda: ns._getvalue())

    s1 = m.shared()
    s2 = m.shared()
    step('shared', lambda: (s1.append('one'), s2.append(b'two'), items(s1))[2])
    a = m.shared_auto()
    step('auto', lambda: (a.append(3), a.count('one'), len(m.shared()))[1:])
    step('number_of_objects', lambda: m._number_of_objects())

    ident = l._id
    step('raw', lambda: raw(address, key, [
        dumps([None, 'accept_connection', ['raw'], {}]),
        dumps([ident, 'append', [1], {}]).replace(b'<int>1</int>', b'<i8>1099511627776</i8>'),
        dumps([ident, '__getitem__', [-1], {}]),
        dumps([ident, 'pop', [], {}]),
        dumps([ident, '__len__', [], {}]),
        b'<params><param><value><strin',
        b'\xff',
        b'<params><param><value><foo/></value></param></params>',
        b'',
        dumps([ident, '__getitem__', [0]]),
        dumps([ident, 'no_such_method', [], {}]),
        dumps(['nosuchident', '__len__', [], {}]),
        dumps([ident, '__len__', [], {}]),
    ]))
    step('raw one-shot', lambda: raw(address, key, [dumps([None, 'bogus', [], {}])]))


def main():
    if sys.argv[1] == 'cpython':
        key = bytes.fromhex(sys.argv[2])
        m = RM(address=('127.0.0.1', 0), authkey=key, serializer='xmlrpclib')
        m.start()
        try:
            run(m, m.address, key)
        finally:
            m.shutdown()
    else:
        host, port, key = sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4])
        m = RM(address=(host, port), authkey=key, serializer='xmlrpclib')
        m.connect()
        run(m, (host, port), key)


main()
