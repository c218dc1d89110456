# Scenario 2 — the Namespace "bulletin board" across processes (seed 002),
# with fork and spawn children, and the `_item` underscore caveat.
import multiprocessing


def process1(ns):
    print(ns.item)
    ns.item = "educative"


def process2(ns):
    print(ns.item)
    ns.item = "educative is awesome !"


def underscore_child(ns):
    try:
        print('child sees ns._item =', ns._item)
    except AttributeError as e:
        print('child AttributeError:', e)
        raise SystemExit(3)


def underscore_child_uncaught(ns):
    # as in the seed: the AttributeError is not caught (traceback on stderr)
    print(ns._item)


def other_names(ns, inbox):
    ns.from_child = inbox.pop(0)
    del ns.item
    ns.counter += 1


def run(ctx, target, *args):
    p = ctx.Process(target=target, args=args)
    p.start()
    p.join(60)
    return p.exitcode


def main(m):
    for method in ('fork', 'spawn'):
        ctx = multiprocessing.get_context(method)
        section('bulletin board, %s' % method)
        shared_vars = m.Namespace()
        shared_vars.item = "empty"
        print('exit', run(ctx, process1, shared_vars))
        print('exit', run(ctx, process2, shared_vars))
        print(shared_vars.item)
        print(shared_vars)

        section('underscore attribute, %s' % method)
        shared_vars._item = "empty"
        print('parent sees', shared_vars._item, shared_vars)
        print('exit', run(ctx, underscore_child, shared_vars))
        print('exit', run(ctx, underscore_child_uncaught, shared_vars))

        section('more traffic from a %s child' % method)
        inbox = m.list([('tuple', 1, [2.5])])
        shared_vars.counter = 41
        print('exit', run(ctx, other_names, shared_vars, inbox))
        print('inbox after', inbox)
        print(shared_vars)
        print('hasattr item', hasattr(shared_vars, 'item'))
