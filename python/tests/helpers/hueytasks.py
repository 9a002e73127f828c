"""Huey tasks that write one SQLite file the way teams do: no busy timeout,
journal_mode DELETE, BEGIN IMMEDIATE, ~50 ms of work, COMMIT; with
USE_DBLAUNCH=1, inside dblaunch.lock(APP_DB, "write")."""

from __future__ import annotations

import os
import sqlite3
import time

from huey import SqliteHuey

import dblaunch

APP_DB = os.environ["APP_DB"]
USE_DBLAUNCH = os.environ.get("USE_DBLAUNCH") == "1"

huey = SqliteHuey(filename=os.environ["HUEY_QUEUE"])


def write_row(source: str, n: int) -> str:
    """One write; "ok", or the error SQLite gave."""
    try:
        if USE_DBLAUNCH:
            with dblaunch.lock(APP_DB, "write"):
                _write(source, n)
        else:
            _write(source, n)
    except sqlite3.OperationalError as e:
        return f"error: {e}"
    return "ok"


def _write(source: str, n: int) -> None:
    con = sqlite3.connect(APP_DB, timeout=0, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=DELETE")
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO rows (source, n) VALUES (?, ?)", (source, n))
        time.sleep(0.05)
        con.execute("COMMIT")
    finally:
        con.close()


@huey.task()  # type: ignore[untyped-decorator]
def job(n: int) -> str:
    return write_row("huey", n)
