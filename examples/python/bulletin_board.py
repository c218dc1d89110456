# A Python lesson's bulletin-board program (the address ('', 55555) replaced by the default, so
# that the test binds no public port).
from multiprocessing.managers import SyncManager
from multiprocessing import Process
def process1(ns):
    print(ns.item)
    ns.item = "educative"
def process2(ns):
    print(ns.item)
    ns.item = "educative is awesome !"
if __name__ == '__main__':
    # create a namespace
    manager = SyncManager()
    manager.start()
    shared_vars = manager.Namespace() # manager.Namespace()
    shared_vars.item = "empty"
    # create the first process
    p1 = Process(target=process1, args=(shared_vars,))
    p1.start()
    p1.join()
    # create the second process
    p2 = Process(target=process2, args=(shared_vars,))
    p2.start()
    p2.join()
    print(shared_vars.item)
