# A stand-in for `mpmanager serve`, built from CPython's own manager server,
# used only to test the acceptance harness itself:
#
#   MPMANAGER_SCENARIOS_SERVER="python3 crates/cli/tests/integration/scenarios/fake_serve.py" \
#       cargo test -p mpmanager-cli --test integration seed_scenarios::
#
# Command line and behaviour are what the harness expects of the real
# server: `serve --address unix:PATH|HOST:PORT [--object NAME=TYPEID]…`,
# the authkey in MPMANAGER_AUTHKEY (UTF-8), and a line
# `serving on <address>` on stderr once it accepts connections.
import multiprocessing
import os
import queue
import sys
from multiprocessing.managers import SyncManager

args = sys.argv[1:]
assert args and args[0] == 'serve', args
if '--help' in args:
    print(__doc__ or 'fake mpmanager serve')
    raise SystemExit(0)
address = None
singletons = []
i = 1
while i < len(args):
    if args[i] == '--address':
        address = args[i + 1]
        i += 2
    elif args[i] == '--object':
        singletons.append(args[i + 1].split('=', 1))
        i += 2
    else:
        raise SystemExit('fake_serve: unknown argument %r' % args[i])
if address.startswith('unix:'):
    address = address[5:]
else:
    host, port = address.rsplit(':', 1)
    address = (host, int(port))
key = os.environ['MPMANAGER_AUTHKEY'].encode('utf-8')
multiprocessing.current_process().authkey = key


class Manager(SyncManager):
    pass


_objects = {}
for name, typeid in singletons:
    assert typeid == 'Queue', typeid
    _objects[name] = queue.Queue()
    Manager.register(name, callable=lambda name=name: _objects[name])

server = Manager(address=address, authkey=key).get_server()
a = server.address
shown = '%s:%d' % a if isinstance(a, tuple) else 'unix:%s' % a
print('mpmanager: serving on', shown, file=sys.stderr, flush=True)
server.serve_forever()
