"""A long-running DuckDB reader that locks per request, as a web service
would: duck_reader.py DB. Serves requests (open read-only, count, close)
until its stdin closes, then prints a JSON summary: requests served, the
errors met, the counts seen. Prints `count N` after each request."""

from __future__ import annotations

import json
import os
import sys
import threading

import duckdb

import dblaunch

db = sys.argv[1]
stop = threading.Event()


def watch_stdin() -> None:
    sys.stdin.read()
    stop.set()


threading.Thread(target=watch_stdin, daemon=True).start()

served = 0
errors: list[str] = []
counts: list[int] = []
while not stop.is_set():
    try:
        with dblaunch.lock(db, "read", timeout=60):
            con = duckdb.connect(db, read_only=True)
            try:
                counts.append(con.execute("SELECT count(*) FROM items").fetchone()[0])  # type: ignore[index]
            finally:
                con.close()
        served += 1
        print(f"count {counts[-1]}", flush=True)
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
        print(f"error {e}", flush=True)
# One more, after every writer the test ran: it must see them all.
with dblaunch.lock(db, "read", timeout=60):
    con = duckdb.connect(db, read_only=True)
    final = con.execute("SELECT count(*) FROM items").fetchone()[0]  # type: ignore[index]
    con.close()
summary = {"pid": os.getpid(), "served": served, "errors": errors, "counts": counts, "final": final}
print(json.dumps(summary), flush=True)
