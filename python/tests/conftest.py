"""Shared fixtures: the installed package and command, a working directory
per test, processes that never outlive their test, and waits that are
always bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

import dblaunch

HELPERS = Path(__file__).resolve().parent / "helpers"
sys.path.insert(0, str(HELPERS))
# Every wait of the suite ends by then, whatever the load.
DEADLINE = 60.0


def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Polls `condition` (an observable state: a file, a status document)
    until it is truthy; fails after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


async def until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """As `wait_until`, polling on the event loop: no executor thread comes
    and goes (the thread-counting tests count them)."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


def read_line(proc: subprocess.Popen[str], timeout: float = DEADLINE) -> str:
    """The next line `proc` prints, waited for at most `timeout` seconds."""
    lines: queue.Queue[Optional[str]] = proc.lines  # type: ignore[attr-defined]
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"pid {proc.pid} printed nothing within {timeout} s") from None
    if line is None:
        raise AssertionError(f"pid {proc.pid} ended (status {proc.poll()}) before printing")
    return line


def _read_lines(stream: Any, lines: queue.Queue[Optional[str]]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def expect_line(proc: subprocess.Popen[str], expected: str) -> None:
    line = read_line(proc)
    assert line == expected, f"pid {proc.pid} printed {line!r}, expected {expected!r}"


class Processes:
    """Starts processes in their own process groups and kills every group
    at the end of the test: nothing the suite starts outlives it."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.started: list[subprocess.Popen[str]] = []

    def start(
        self, argv: list[str], env: Optional[dict[str, str]] = None, lines: bool = True, **kw: Any
    ) -> subprocess.Popen[str]:
        """Starts `argv`; with `lines`, its output is read line by line
        (`read_line`) by a thread of the test."""
        proc = subprocess.Popen(
            argv,
            cwd=kw.pop("cwd", self.cwd),
            env={**self.env, **(env or {})},
            stdin=kw.pop("stdin", subprocess.PIPE),
            stdout=kw.pop("stdout", subprocess.PIPE),
            stderr=kw.pop("stderr", None),
            text=True,
            start_new_session=True,
            **kw,
        )
        self.started.append(proc)
        if lines and proc.stdout is not None:
            output: queue.Queue[Optional[str]] = queue.Queue()
            proc.lines = output  # type: ignore[attr-defined]
            threading.Thread(target=_read_lines, args=(proc.stdout, output), daemon=True).start()
        return proc

    def python(self, script: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
        return self.start([sys.executable, "-u", str(HELPERS / script), *args], **kw)

    def finish(self, proc: subprocess.Popen[str], timeout: float = DEADLINE) -> int:
        """Closes `proc`'s stdin (its cue to go on) and waits for it."""
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        return proc.wait(timeout)

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.stdin is not None:
                proc.stdin.close()
            # Children of the group that outlived their leader.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def dblaunch_exe() -> str:
    """The installed `dblaunch`: the native executable, on PATH beside the
    interpreter, from the same wheel as the module."""
    exe = shutil.which("dblaunch", path=os.path.dirname(sys.executable))
    assert exe is not None, "the wheel did not install the dblaunch command"
    with open(exe, "rb") as f:
        assert f.read(4) == b"\x7fELF", f"{exe} is not the native executable"
    assert "site-packages" in dblaunch.__file__, f"testing {dblaunch.__file__}, not the installed package"
    return exe


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, and an environment without dblaunch's
    variables (no manifest, no backend, no program name)."""
    for var in ("DBLAUNCH_FILE", "DBLAUNCH_BACKEND", "DBLAUNCH_PROGRAM", "DBLAUNCH_LEASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def procs(work: Path, dblaunch_exe: str) -> Iterator[Processes]:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(HELPERS)
    processes = Processes(work, env)
    try:
        yield processes
    finally:
        processes.kill_all()


def status(db: str) -> dict[str, Any]:
    """The status document of one database."""
    doc = dblaunch.status(db)
    (entry,) = doc["databases"]
    assert isinstance(entry, dict)
    return entry


def holders(db: str) -> list[dict[str, Any]]:
    return list(status(db)["holders"])


def waiters(db: str) -> list[dict[str, Any]]:
    return list(status(db)["waiters"])


def wait_waiters(db: str, n: int) -> list[dict[str, Any]]:
    """Waits until `db` has exactly `n` waiters, and returns them."""

    def check() -> Optional[tuple[list[dict[str, Any]]]]:
        found = waiters(db)
        return (found,) if len(found) == n else None

    found: tuple[list[dict[str, Any]]] = wait_until(check, f"{n} waiter(s) of {db}")
    return found[0]


def thread_count() -> int:
    """Threads of this process, native ones included (Python's threading
    module does not see the lock's wait threads)."""
    return len(os.listdir("/proc/self/task"))


def thread_names() -> list[str]:
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass
    return sorted(names)
