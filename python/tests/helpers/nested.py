"""Run by `dblaunch exec --read DB -- python nested.py DB`: reads at once
(the exec holds it for this process), and cannot write."""

from __future__ import annotations

import sys

import dblaunch

db = sys.argv[1]
with dblaunch.lock(db, "read", timeout=0):
    print("read at once", flush=True)
try:
    dblaunch.lock(db, "write").acquire()
except dblaunch.WouldDeadlock as e:
    print("write: WouldDeadlock" if isinstance(e, RuntimeError) else "not a RuntimeError", flush=True)
    print(e, flush=True)
else:
    print("write: granted", flush=True)
