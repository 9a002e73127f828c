"""Holds a database until its stdin closes: holder.py DB MODE [NAME].
Prints `held` once it holds."""

from __future__ import annotations

import sys

import dblaunch

db, mode = sys.argv[1], sys.argv[2]
name = sys.argv[3] if len(sys.argv) > 3 else None
with dblaunch.lock(db, mode, name=name):  # type: ignore[arg-type]
    print("held", flush=True)
    sys.stdin.read()
print("released", flush=True)
