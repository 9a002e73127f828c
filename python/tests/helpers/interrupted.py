"""Waits for a lock another process holds; Ctrl-C (SIGINT) must end the
wait with KeyboardInterrupt at once: interrupted.py DB [sync | async].
Prints `waiting` first, then `interrupted held=...`, then holds on until
its stdin closes."""

from __future__ import annotations

import asyncio
import sys

import dblaunch

lock = dblaunch.lock(sys.argv[1], "write")
how = sys.argv[2] if len(sys.argv) > 2 else "sync"
print("waiting", flush=True)
try:
    if how == "async":
        asyncio.run(lock.acquire_async())
    else:
        lock.acquire()
except KeyboardInterrupt:
    print(f"interrupted held={lock.held}", flush=True)
    sys.stdin.read()
else:
    print("granted", flush=True)
