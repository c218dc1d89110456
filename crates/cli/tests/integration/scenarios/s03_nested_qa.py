# Scenario 3 — seed 003 (the Q&A about nested mutable values): the two
# programs of the question and the answer's full example, with its exact
# before/after output (modulo addresses).
import multiprocessing


def f_scale(ns):
    ns.x *= 10
    ns.y *= 10


def f_append(ns):
    ns.x.append(10)
    ns.y.append(10)


def f_reassign(ns):
    tmp = ns.x     # retrieve the shared value
    tmp.append(10)
    ns.x = tmp     # set the shared value


def f(ns, ls, di):
    ns.x += 1
    ns.y[0] += 1
    ns_z = ns.z
    ns_z[0] += 1
    ns.z = ns_z

    ls[0] += 1
    ls[1][0] += 1  # unmanaged, not assigned back
    ls_2 = ls[2]   # unmanaged...
    ls_2[0] += 1
    ls[2] = ls_2   # ... but assigned back
    ls[3][0] += 1  # managed, direct manipulation

    di[0] += 1
    di[1][0] += 1  # unmanaged, not assigned back
    di_2 = di[2]   # unmanaged...
    di_2[0] += 1
    di[2] = di_2   # ... but assigned back
    di[3][0] += 1  # managed, direct manipulation


def main(manager):
    for method in ('fork', 'spawn'):
        ctx = multiprocessing.get_context(method)
        section('question, program 1 (%s)' % method)
        ns = manager.Namespace()
        ns.x = 1
        ns.y = 2
        print('before', ns)
        p = ctx.Process(target=f_scale, args=(ns,))
        p.start()
        p.join()
        print('after', ns)

        section('question, program 2 (%s)' % method)
        ns = manager.Namespace()
        ns.x = []
        ns.y = []
        print('before', ns)
        p = ctx.Process(target=f_append, args=(ns,))
        p.start()
        p.join()
        print('after', ns)

        section('third answer: reassign (%s)' % method)
        p = ctx.Process(target=f_reassign, args=(ns,))
        p.start()
        p.join()
        print('after', ns)

        section('answer example (%s)' % method)
        ns = manager.Namespace()
        ns.x = 1
        ns.y = [1]
        ns.z = [1]
        ls = manager.list([1, [1], [1], manager.list([1])])
        di = manager.dict({0: 1, 1: [1], 2: [1], 3: manager.list([1])})

        print('before', ns, ls, ls[2], di, di[2], sep='\n')
        p = ctx.Process(target=f, args=(ns, ls, di))
        p.start()
        p.join()
        print('after', ns, ls, ls[2], di, di[2], sep='\n')
        print('exitcode', p.exitcode)
        print('ls[3][:]', ls[3][:], 'di[3][:]', di[3][:])
