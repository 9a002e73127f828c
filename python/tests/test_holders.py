"""Who holds is visible (status names the Python program with its own pid
and name), a timeout names it, and its death hands over at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Processes, expect_line, holders, wait_waiters, waiters

import dblaunch


@pytest.mark.parametrize(
    ("name", "env", "shown"),
    [
        (None, {}, "holder.py"),
        ("nightly-import", {}, "nightly-import"),
        (None, {"DBLAUNCH_PROGRAM": "from-env"}, "from-env"),
    ],
)
def test_status_names_the_python_holder(
    work: Path, procs: Processes, dblaunch_exe: str, name: str, env: dict[str, str], shown: str
) -> None:
    args = ["app.db", "write"] + ([name] if name else [])
    holder = procs.python("holder.py", *args, env=env)
    expect_line(holder, "held")
    out = subprocess.run(
        [dblaunch_exe, "status", "--json", "app.db"], capture_output=True, text=True, check=True, timeout=60
    )
    (entry,) = json.loads(out.stdout)["databases"]
    assert entry["path"] == str(work / "app.db")
    (h,) = entry["holders"]
    assert (h["pid"], h["program"], h["mode"]) == (holder.pid, shown, "write")
    assert entry["waiters"] == []
    # The module's status is the same document.
    assert dblaunch.status("app.db") == json.loads(out.stdout)
    assert procs.finish(holder) == 0
    assert holders("app.db") == []


@pytest.mark.parametrize("timeout", [0, 0.3])
def test_timeout_raises_busy_naming_the_holder(work: Path, procs: Processes, timeout: float) -> None:
    holder = procs.python("holder.py", "app.db", "write", "the-holder")
    expect_line(holder, "held")
    started = time.monotonic()
    with pytest.raises(dblaunch.Busy) as caught:
        dblaunch.lock("app.db", "read", timeout=timeout).acquire()
    waited = time.monotonic() - started
    e = caught.value
    assert isinstance(e, TimeoutError)
    assert isinstance(e, dblaunch.Error)
    assert f"the-holder (pid {holder.pid}) holds it for write" in str(e)
    assert e.holders[0]["pid"] == holder.pid
    assert e.holders[0]["program"] == "the-holder"
    assert e.holders[0]["kind"] == "program"
    assert e.holders[0]["holding"] is True
    assert e.database == str(work / "app.db")
    assert e.mode == "read"
    assert e.timeout == timeout
    assert waited >= timeout
    # Nothing left queued.
    assert waiters("app.db") == []
    assert procs.finish(holder) == 0


def test_a_killed_python_holder_hands_over_at_once(work: Path, procs: Processes) -> None:
    holder = procs.python("holder.py", "app.db", "write")
    expect_line(holder, "held")
    waiter = procs.python("holder.py", "app.db", "write", "next")
    wait_waiters("app.db", 1)
    killed = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)
    expect_line(waiter, "held")
    handed_over = time.monotonic() - killed
    assert handed_over < 5, f"the hand-over took {handed_over:.2f} s"
    (h,) = holders("app.db")
    assert (h["pid"], h["program"]) == (waiter.pid, "next")
    assert holder.wait(60) == -signal.SIGKILL
    assert procs.finish(waiter) == 0


def test_sigkill_while_waiting_leaves_the_queue(work: Path, procs: Processes) -> None:
    holder = procs.python("holder.py", "app.db", "write")
    expect_line(holder, "held")
    doomed = procs.python("holder.py", "app.db", "write")
    wait_waiters("app.db", 1)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(60)
    assert procs.finish(holder) == 0
    # The dead waiter is skipped: the next lock is granted at once.
    with dblaunch.lock("app.db", "write", timeout=10) as held:
        assert held.held
