"""One queue for everyone: Python processes (with and without asyncio),
threads of one Python process and `dblaunch exec` commands take turns
first come, first served; a writer is alone; adjacent readers hold
together."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import events
from checker import grant_order, matches, violations
from conftest import HELPERS, Processes, expect_line, wait_waiters

import dblaunch


def exec_participant(procs: Processes, exe: str, db: str, mode: str, tag: str, log: Path, *extra: str):  # type: ignore[no-untyped-def]
    return procs.start(
        [
            exe,
            "exec",
            f"--{mode}",
            db,
            "--",
            sys.executable,
            "-u",
            str(HELPERS / "logger.py"),
            tag,
            mode,
            str(log),
            *extra,
        ]
    )


def thread_participant(
    db: str, mode: str, tag: str, log: Path, together: list[str], errors: list[BaseException]
) -> threading.Thread:
    def run() -> None:
        try:
            with dblaunch.lock(db, mode, timeout=120):  # type: ignore[arg-type]
                events.work(log, tag, mode, 0.05, together)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, name=tag, daemon=True)
    thread.start()
    return thread


def test_fifo_and_exclusion_across_processes_threads_and_exec(
    work: Path, procs: Processes, dblaunch_exe: str
) -> None:
    db, log = "shared.db", work / "events.log"
    errors: list[BaseException] = []
    readers = "R1,R2,R3"
    holder = exec_participant(procs, dblaunch_exe, db, "write", "H", log, "--hold")
    expect_line(holder, "held")

    # Each joins the queue once the one before it is seen queued.
    started = []
    started.append(procs.python("participant.py", db, "write", "W1", str(log)))
    wait_waiters(db, 1)
    threads = [thread_participant(db, "read", "R1", log, readers.split(","), errors)]
    wait_waiters(db, 2)
    started.append(exec_participant(procs, dblaunch_exe, db, "read", "R2", log, "--together", readers))
    wait_waiters(db, 3)
    started.append(procs.python("participant.py", db, "read", "R3", str(log), "--together", readers))
    wait_waiters(db, 4)
    threads.append(thread_participant(db, "write", "W2", log, [], errors))
    wait_waiters(db, 5)
    started.append(exec_participant(procs, dblaunch_exe, db, "write", "W3", log))
    wait_waiters(db, 6)
    started.append(procs.python("participant.py", db, "read", "R4", str(log), "--asyncio"))
    wait_waiters(db, 7)
    started.append(procs.python("participant.py", db, "write", "W4", str(log), "--asyncio"))
    queue = wait_waiters(db, 8)
    assert [w["mode"] for w in queue] == ["write", "read", "read", "read", "write", "write", "read", "write"]

    assert procs.finish(holder) == 0
    for proc in started:
        assert procs.finish(proc) == 0
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert errors == []

    log_events = events.events(log)
    assert violations(log_events) == []
    order = grant_order(log_events)
    expected = [["H"], ["W1"], ["R1", "R2", "R3"], ["W2"], ["W3"], ["R4"], ["W4"]]
    assert matches(order, expected), f"granted in the order {order}, queued as {expected}"


def test_threads_of_one_process_exclude_each_other(work: Path) -> None:
    log = work / "events.log"
    errors: list[BaseException] = []
    threads = [thread_participant("t.db", "write", f"T{i}", log, [], errors) for i in range(8)]
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert errors == []
    assert violations(events.events(log)) == []
    assert len(grant_order(events.events(log))) == 8


def test_the_checker_sees_overlaps_and_disorder() -> None:
    overlap = [
        ("grant", "A", "write"),
        ("grant", "B", "read"),
        ("release", "A", "write"),
        ("release", "B", "read"),
    ]
    assert violations(overlap) != []
    assert violations([("grant", "A", "read"), ("grant", "B", "read"), ("release", "B", "read")]) != []
    assert violations([("grant", "A", "read"), ("stranded", "A", "-"), ("release", "A", "read")]) != []
    fine = [
        ("grant", "A", "read"),
        ("grant", "B", "read"),
        ("release", "A", "read"),
        ("release", "B", "read"),
    ]
    assert violations(fine) == []
    assert matches(["A", "C", "B"], [["A"], ["B", "C"]])
    assert not matches(["B", "A", "C"], [["A"], ["B", "C"]])
    assert not matches(["A", "B"], [["A"], ["B", "C"]])
