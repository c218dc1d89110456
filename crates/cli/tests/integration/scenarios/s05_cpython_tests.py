# Scenario 5 — ports of CPython's own manager tests
# (Lib/test/_test_multiprocessing.py: _TestContainers and the
# list/dict/Value/Array/Namespace parts of TestSyncManagerTypes), printing
# results instead of asserting, plus the error transport of docs/PROTOCOL.md §7.1
# and number_of_objects bookkeeping.
import multiprocessing
import sys


# --- TestSyncManagerTypes workers (run in child processes) ---------------

def _test_list(obj):
    print('child list', obj[0], obj.count(5), obj.index(5))
    obj.sort()
    obj.reverse()
    for x in obj:
        print('child iter', x)
    print('child len', len(obj), 'pop', obj.pop(0))


def _test_dict(obj):
    print('child dict', len(obj), obj['foo'], obj.get('foo'))
    print('child items', list(obj.items()), list(obj.keys()), list(obj.values()))
    print('child copy', obj.copy())
    print('child popitem', obj.popitem())


def _test_value(obj):
    print('child value', obj.value, obj.get())
    obj.set(2)


def _test_array(obj):
    print('child array', obj[0], obj[1], len(obj), list(obj))


def _test_namespace(obj):
    print('child namespace', obj.x, obj.y)


def run_worker(ctx, worker, obj):
    p = ctx.Process(target=worker, args=(obj,))
    p.daemon = True
    p.start()
    p.join(60)
    print('exitcode', p.exitcode)


def test_list(self):
    a = self.list(list(range(10)))
    print(a[:])
    b = self.list()
    print(b[:])
    b.extend(list(range(5)))
    print(b[:])
    print(b[2], b[2:10])
    b *= 2
    print(b[:])
    print(b + [5, 6])
    print(a[:])
    d = [a, b]
    e = self.list(d)
    print([element[:] for element in e])
    f = self.list([a])
    a.append('hello')
    print(f[0][:])


def test_list_iter(self):
    a = self.list(list(range(10)))
    it = iter(a)
    print(list(it))
    print(list(it))  # exhausted
    it = iter(a)
    a[0] = 100
    print(next(it))


def test_list_proxy_in_list(self):
    a = self.list([self.list(range(3)) for _i in range(3)])
    print([inner[:] for inner in a])
    a[0][-1] = 55
    print(a[0][:])
    for i in range(1, 3):
        print(a[i][:])
    print(a[1].pop())
    print(len(a[1]))
    for i in range(0, 3, 2):
        print(len(a[i]))
    del a
    b = self.list()
    b.append(b)
    print(b, len(b[0]), b[0][0])
    del b
    print('no deadlock')


def test_dict(self):
    d = self.dict()
    indices = list(range(65, 70))
    for i in indices:
        d[i] = chr(i)
    print(d.copy())
    print(d.keys(), d.values(), d.items())
    print(sorted(d.keys()), sorted(d.values()), sorted(d.items()))


def test_dict_iter(self):
    d = self.dict()
    indices = list(range(65, 70))
    for i in indices:
        d[i] = chr(i)
    it = iter(d)
    print(type(it).__name__)
    print(list(it))
    print(list(it))  # exhausted
    it = iter(d)
    d.clear()
    attempt('next(it) after clear', next, it)
    d[1] = 1
    it = iter(d)
    print(next(it))
    d[2] = 2
    attempt('next(it) after insert', next, it)
    attempt('next(it) again', next, it)
    it = iter(d)
    print(next(it), next(it))
    attempt('next(it) at end', next, it)


def test_dict_proxy_nested(self):
    pets = self.dict(ferrets=2, hamsters=4)
    supplies = self.dict(water=10, feed=3)
    d = self.dict(pets=pets, supplies=supplies)
    print(supplies['water'], d['supplies']['water'])
    d['supplies']['blankets'] = 5
    print(supplies['blankets'], d['supplies']['blankets'])
    d['supplies']['water'] = 7
    print(supplies['water'], d['supplies']['water'])
    del pets
    del supplies
    print(d['pets']['ferrets'])
    d['supplies']['blankets'] = 11
    print(d['supplies']['blankets'])
    pets = d['pets']
    supplies = d['supplies']
    supplies['water'] = 7
    print(supplies['water'], d['supplies']['water'])
    d.clear()
    print(len(d), supplies['water'], pets['hamsters'])
    l = self.list([pets, supplies])
    l[0]['marmots'] = 1
    print(pets['marmots'], l[0]['marmots'])
    del pets
    del supplies
    print(l[0]['marmots'])
    outer = self.list([[88, 99], l])
    print(type(outer[0]).__name__, outer[0])
    print(outer[-1][-1]['feed'])
    print(outer[-1][-1])


def test_namespace(self):
    n = self.Namespace()
    n.name = 'Bob'
    n.job = 'Builder'
    n._hidden = 'hidden'
    print((n.name, n.job))
    del n.job
    print(str(n))
    print(hasattr(n, 'name'), hasattr(n, 'job'))


def errors(m):
    l = m.list([1, 2, 3])
    attempt('l[3]', lambda: l[3])
    attempt('l[-4]', lambda: l[-4])
    attempt("l['a']", lambda: l['a'])
    attempt('l.index(7)', l.index, 7)
    attempt('l.remove(7)', l.remove, 7)
    attempt("l.pop(10)", l.pop, 10)
    attempt("m.list().pop()", m.list().pop)
    attempt('l[5] = 0', l.__setitem__, 5, 0)
    attempt('del l[5]', l.__delitem__, 5)
    attempt("l.insert(100, 'end')", l.insert, 100, 'end')
    attempt("l.index(1, 1)", l.index, 1, 1)
    attempt("l.index(2, -2)", l.index, 2, -2)
    print(l)
    attempt("l.sort() mixed", m.list([1, 'a']).sort)
    attempt("l * -1", lambda: l * -1)
    attempt("3 * l", lambda: 3 * l)
    attempt("l + (1,)", lambda: l + (1,))
    attempt("reversed(l)", lambda: list(reversed(l)))
    d = m.dict({'a': 1})
    attempt("d['zz']", lambda: d['zz'])
    attempt("d[('t', 1)]", lambda: d[('t', 1)])
    attempt("d[1.5]", lambda: d[1.5])
    attempt("del d['zz']", d.__delitem__, 'zz')
    attempt("d.pop('zz')", d.pop, 'zz')
    attempt("d.pop('zz', 'dflt')", d.pop, 'zz', 'dflt')
    attempt("d.get('zz')", d.get, 'zz')
    attempt("d.setdefault('s', [])", d.setdefault, 's', [])
    attempt("d.update({'u': 2}, v=3)", d.update, {'u': 2}, v=3)
    attempt("d.update([('w', 4)])", d.update, [('w', 4)])
    print(d)
    attempt("m.dict().popitem()", m.dict().popitem)
    attempt("d[[1]] (unhashable)", lambda: d[[1]])
    it = iter(m.dict())
    attempt('next(iter(empty dict))', next, it)
    ns = m.Namespace()
    attempt('ns.missing', lambda: ns.missing)
    a = m.Array('i', [1, 2])
    attempt('a[2]', lambda: a[2])
    attempt("a[0] = 'x'", a.__setitem__, 0, 'x')
    attempt("a[0] = 2**40", a.__setitem__, 0, 2 ** 40)
    attempt("a[0:1]", lambda: a[0:1])
    attempt("m.Array('q', [1, 2.5])", m.Array, 'q', [1, 2.5])
    v = m.Value('i', 'text')
    attempt("Value('i', 'text').value", lambda: v.value)
    print(v)


def refcounts(m):
    n0 = nobjects(m)
    a = m.list([1])
    b = m.dict()
    print('after creating 2:', nobjects(m) - n0)
    del a, b
    print('after deleting 2:', nobjects(m) - n0)
    inner = m.list(['inner'])
    outer = m.list([inner])
    print('outer + inner:', nobjects(m) - n0)
    del inner
    # inner now only lives inside outer (server stash, gh-103136): not counted
    print('after del inner:', nobjects(m) - n0)
    x = outer[0]
    print('after reading outer[0]:', nobjects(m) - n0, x)
    del x
    print('after del x:', nobjects(m) - n0)
    print('outer[0][:] still works:', outer[0][:])
    del outer
    print('after del outer:', nobjects(m) - n0)
    c = m.list()
    c.append(c)
    print('self-containing list:', nobjects(m) - n0)
    del c
    print('after del self-containing:', nobjects(m) - n0)
    for i in range(5):
        t = m.list([i])
    print('after 5 temporaries:', nobjects(m) - n0)
    del t
    print('after del last temporary:', nobjects(m) - n0)


def main(m):
    for test in (test_list, test_list_iter, test_list_proxy_in_list, test_dict,
                 test_dict_iter, test_dict_proxy_nested, test_namespace):
        section('_TestContainers.' + test.__name__)
        test(m)

    for method in ('fork', 'spawn'):
        ctx = multiprocessing.get_context(method)
        section('TestSyncManagerTypes.test_list (%s)' % method)
        o = m.list()
        o.append(5)
        run_worker(ctx, _test_list, o)
        print(bool(o), len(o))

        section('TestSyncManagerTypes.test_dict (%s)' % method)
        o = m.dict()
        o['foo'] = 5
        run_worker(ctx, _test_dict, o)
        print(bool(o), len(o))

        section('TestSyncManagerTypes.test_value (%s)' % method)
        o = m.Value('i', 1)
        run_worker(ctx, _test_value, o)
        print(o.value, o.get(), o)

        section('TestSyncManagerTypes.test_array (%s)' % method)
        o = m.Array('i', [0, 1])
        run_worker(ctx, _test_array, o)
        print(o, len(o), o[0:2])

        section('TestSyncManagerTypes.test_namespace (%s)' % method)
        o = m.Namespace()
        o.x = 0
        o.y = 1
        run_worker(ctx, _test_namespace, o)
        print(o)

    section('errors (PROTOCOL 7.1)')
    errors(m)

    section('number_of_objects')
    refcounts(m)
