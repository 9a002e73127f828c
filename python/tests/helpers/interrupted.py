"""Waits for a lock another process holds; Ctrl-C (SIGINT) must end the
wait with KeyboardInterrupt at once. Prints `waiting` first, then
`interrupted` and whether the lock is held."""

from __future__ import annotations

import sys

import dblaunch

lock = dblaunch.lock(sys.argv[1], "write")
print("waiting", flush=True)
try:
    lock.acquire()
except KeyboardInterrupt:
    print(f"interrupted held={lock.held}", flush=True)
    sys.stdin.read()
else:
    print("granted", flush=True)
