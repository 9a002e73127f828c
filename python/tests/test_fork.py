"""A forked child (os.fork, multiprocessing's fork) never keeps its
parent's lock: not after the parent releases, not after it dies."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest
from conftest import Processes, expect_line, holders, read_line

import dblaunch


def _children(procs: Processes, how: str) -> tuple[object, int]:
    parent = procs.python("forker.py", "app.db", how)
    line = read_line(parent)
    # The child's copy of the lock object says it holds nothing.
    assert line.startswith("child "), line
    assert line.endswith(" held=False"), line
    child = int(line.split()[1])
    expect_line(parent, "held")
    return parent, child


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("how", ["fork", "multiprocessing"])
def test_the_child_does_not_keep_the_lock_after_the_parent_releases(
    work: Path, procs: Processes, how: str
) -> None:
    parent, child = _children(procs, how)
    try:
        assert [h["pid"] for h in holders("app.db")] == [parent.pid]  # type: ignore[attr-defined]
        parent.stdin.write("release\n")  # type: ignore[attr-defined]
        parent.stdin.flush()  # type: ignore[attr-defined]
        expect_line(parent, "released")  # type: ignore[arg-type]
        os.kill(child, 0)  # the child lives on
        with dblaunch.lock("app.db", "write", timeout=10) as held:
            assert held.held
    finally:
        _kill(child)


@pytest.mark.parametrize("how", ["fork", "multiprocessing"])
def test_the_child_does_not_keep_the_lock_after_the_parent_dies(
    work: Path, procs: Processes, how: str
) -> None:
    parent, child = _children(procs, how)
    try:
        os.kill(parent.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        parent.wait(60)  # type: ignore[attr-defined]
        os.kill(child, 0)  # the child lives on
        with dblaunch.lock("app.db", "write", timeout=10) as held:
            assert held.held
    finally:
        _kill(child)


def test_an_executed_program_does_not_inherit_the_lock(work: Path, procs: Processes) -> None:
    lock = dblaunch.lock("app.db", "write").acquire()
    # close_fds=False: only close-on-exec keeps the lock's descriptors out.
    program = procs.start(["cat"], close_fds=False)
    lock.release()
    other = procs.python("holder.py", "app.db", "write", "other")
    expect_line(other, "held")
    assert program.poll() is None
    assert procs.finish(other) == 0
