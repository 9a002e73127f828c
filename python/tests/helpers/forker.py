"""Takes the write lock, then forks a child that outlives the lock:
forker.py DB HOW (fork | multiprocessing). The child prints `child PID`
and lives until its stdin (inherited) closes. The parent prints `held`,
then releases when a line arrives on stdin (`release`), or keeps holding
until it is killed (`hold`)."""

from __future__ import annotations

import multiprocessing
import os
import sys

import dblaunch


def main() -> None:
    db, how = sys.argv[1], sys.argv[2]
    lock = dblaunch.lock(db, "write").acquire()
    ready_r, ready_w = os.pipe()
    if how == "fork":
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            try:
                os.write(ready_w, f"{os.getpid()} held={lock.held}\n".encode())
                # stdin is shared with the parent: block on a pipe of our own.
                block_r, _block_w = os.pipe()
                os.read(block_r, 1)
            finally:
                os._exit(0)
    else:
        ctx = multiprocessing.get_context("fork")
        proc = ctx.Process(target=_mp_child, args=(ready_w, lock), daemon=False)
        proc.start()
    os.close(ready_w)
    with os.fdopen(ready_r) as ready:
        print(f"child {ready.readline().strip()}", flush=True)
    print("held", flush=True)
    command = sys.stdin.readline().strip()
    if command == "release":
        lock.release()
        print("released", flush=True)
    sys.stdin.readline()
    os._exit(0)


def _mp_child(ready_w: int, lock: dblaunch.Lock) -> None:
    os.write(ready_w, f"{os.getpid()} held={lock.held}\n".encode())
    block_r, _block_w = os.pipe()
    os.read(block_r, 1)


if __name__ == "__main__":
    main()
