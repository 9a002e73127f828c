"""Synchronous use: re-entry per thread, WouldDeadlock, several databases,
a program run by `dblaunch exec --read`, Ctrl-C, and bad input refused
before anything is queued."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import Processes, expect_line, holders, read_line, wait_until, wait_waiters, waiters

import dblaunch


def test_re_entry_per_thread(work: Path) -> None:
    with dblaunch.lock("app.db", "write") as outer:
        assert outer.databases == [(str(work / "app.db"), "write")]
        # The same thread: a covering mode is granted at once.
        with dblaunch.lock("app.db", "write", timeout=0), dblaunch.lock("app.db", "read", timeout=0):
            pass
        # Another thread is another owner: it queues like another process.
        errors: list[BaseException] = []

        def other() -> None:
            try:
                dblaunch.lock("app.db", "read", timeout=0).acquire()
            except BaseException as e:
                errors.append(e)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(60)
        assert len(errors) == 1
        assert isinstance(errors[0], dblaunch.Busy)
        assert f"(pid {os.getpid()})" in str(errors[0])
    assert holders("app.db") == []


def test_read_then_write_is_would_deadlock_at_once(work: Path) -> None:
    with dblaunch.lock("app.db", "read"):
        started = time.monotonic()
        with pytest.raises(dblaunch.WouldDeadlock) as caught:
            dblaunch.lock("app.db", "write").acquire()
        assert time.monotonic() - started < 5
        assert isinstance(caught.value, RuntimeError)
        assert caught.value.database == str(work / "app.db")
        # Nor in a set of several: nothing of it is taken.
        with pytest.raises(dblaunch.WouldDeadlock):
            dblaunch.lock(["b.db", "app.db"], "write").acquire()
        assert [h["mode"] for h in holders("app.db")] == ["read"]
        assert holders("b.db") == []


def test_several_databases_all_or_none(work: Path, procs: Processes) -> None:
    holder = procs.python("holder.py", "b.db", "write")
    expect_line(holder, "held")
    with pytest.raises(dblaunch.Busy):
        dblaunch.lock({"a.db": "write", "b.db": "read"}, timeout=0.2).acquire()
    assert holders("a.db") == []
    assert waiters("a.db") == waiters("b.db") == []
    assert procs.finish(holder) == 0
    lock = dblaunch.lock([work / "a.db", "b.db"], "write")
    lock.acquire()
    assert lock.held
    assert sorted(lock.databases) == [(str(work / "a.db"), "write"), (str(work / "b.db"), "write")]
    with pytest.raises(RuntimeError, match="already held"):
        lock.acquire()
    lock.release()
    assert not lock.held
    with pytest.raises(RuntimeError, match="not held"):
        lock.release()
    # Released, the object can be acquired again.
    with lock:
        assert lock.held


def test_a_program_run_by_exec_read_reads_at_once_and_cannot_write(
    work: Path, procs: Processes, dblaunch_exe: str
) -> None:
    run = procs.start(
        [
            dblaunch_exe,
            "exec",
            "--read",
            "app.db",
            "--",
            sys.executable,
            "-u",
            str(Path(__file__).parent / "helpers" / "nested.py"),
            "app.db",
        ]
    )
    expect_line(run, "read at once")
    expect_line(run, "write: WouldDeadlock")
    assert "holds it for reading" in read_line(run)
    assert procs.finish(run) == 0


@pytest.mark.parametrize("how", ["sync", "async"])
def test_ctrl_c_ends_a_wait_with_keyboard_interrupt(work: Path, procs: Processes, how: str) -> None:
    holder = procs.python("holder.py", "app.db", "write")
    expect_line(holder, "held")
    waiter = procs.python("interrupted.py", "app.db", how)
    expect_line(waiter, "waiting")
    wait_waiters("app.db", 1)
    sent = time.monotonic()
    os.kill(waiter.pid, signal.SIGINT)
    expect_line(waiter, "interrupted held=False")
    # It left the queue (an asyncio wait's thread leaves it just after the
    # task is cancelled): the holder's release goes to nobody.
    wait_until(lambda: not waiters("app.db"), "the queue left", 5)
    assert time.monotonic() - sent < 5
    assert procs.finish(holder) == 0
    assert holders("app.db") == []
    assert procs.finish(waiter) == 0


def test_bad_input_is_a_value_error_before_anything_is_queued(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (work / "data").mkdir()
    (work / "dblaunch.toml").write_text('[databases]\nletters = "data/letters.duckdb"\n')
    monkeypatch.setenv("DBLAUNCH_FILE", str(work / "dblaunch.toml"))
    # A manifest name resolves.
    with dblaunch.lock("letters", "write") as held:
        assert held.databases == [(str(work / "data" / "letters.duckdb"), "write")]
    # A typo is told, with the name it is close to.
    with pytest.raises(ValueError, match="did you mean `letters`"):
        dblaunch.lock("leters", "write").acquire()
    with pytest.raises(ValueError, match="character device"):
        dblaunch.lock("/dev/null", "read").acquire()
    with pytest.raises(ValueError, match="does not exist"):
        dblaunch.lock("missing/app.db", "write").acquire()
    with pytest.raises(ValueError, match="not a mode"):
        dblaunch.lock("app.db", "rw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="give the mode"):
        dblaunch.lock("app.db")
    with pytest.raises(ValueError, match="not both"):
        dblaunch.lock({"app.db": "read"}, "write")
    with pytest.raises(ValueError, match="no database"):
        dblaunch.lock([], "write")
    with pytest.raises(ValueError, match="empty"):
        dblaunch.lock("", "write")
    with pytest.raises(ValueError, match="timeout"):
        dblaunch.lock("app.db", "write", timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        dblaunch.lock("app.db", "write", timeout=float("nan"))
    with pytest.raises(ValueError, match="both read and written"):
        dblaunch.lock({"app.db": "read", "./app.db": "write"}).acquire()
    with pytest.raises(TypeError):
        dblaunch.lock(42, "write")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name is empty"):
        dblaunch.lock("app.db", "write", name=" ")

    async def in_async() -> None:
        with pytest.raises(ValueError, match="did you mean"):
            await dblaunch.lock("leters", "write").acquire_async()

    asyncio.run(in_async())
    # Nothing was queued or left held anywhere.
    for db in ("letters", "app.db"):
        assert holders(db) == []
        assert waiters(db) == []
    assert not (work / "missing").exists()


def test_status_of_the_manifest(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (work / "dblaunch.toml").write_text('[databases]\nmain = "main.db"\nlogs = "logs.db"\n')
    with dblaunch.lock("main", "read"):
        doc = dblaunch.status()
        paths = sorted(d["path"] for d in doc["databases"])
        assert paths == [str(work / "logs.db"), str(work / "main.db")]
        (main,) = [d for d in doc["databases"] if d["path"].endswith("main.db")]
        assert main["holders"][0]["pid"] == os.getpid()
    monkeypatch.chdir("/")
    with pytest.raises(ValueError, match="no manifest"):
        dblaunch.status()
