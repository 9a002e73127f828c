"""The event log of the exclusion tests: one line per grant and release,
appended with O_APPEND (one write(2) each, so lines never mix), in the order
they happened. A holder writes its grant after it has the lock and its
release before it lets go; any overlap the lock should have prevented shows
in the log."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


def record(log: PathLike, event: str, tag: str, mode: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {tag} {mode} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def events(log: PathLike) -> list[tuple[str, str, str]]:
    try:
        text = Path(log).read_text()
    except FileNotFoundError:
        return []
    return [(e, t, m) for e, t, m, _pid in (line.split() for line in text.splitlines())]


def await_grants(log: PathLike, tags: list[str], tag: str, timeout: float = 30.0) -> None:
    """Holds on until every one of `tags` has been granted (readers that
    must hold together); records a `stranded` event if they never are."""
    end = time.monotonic() + timeout
    while True:
        granted = {t for e, t, _ in events(log) if e == "grant"}
        if set(tags) <= granted:
            return
        if time.monotonic() > end:
            record(log, "stranded", tag, "-")
            return
        time.sleep(0.005)


def work(log: PathLike, tag: str, mode: str, seconds: float, together: list[str]) -> None:
    """What a holder does while it holds: long enough for a broken lock to
    let someone in."""
    record(log, "grant", tag, mode)
    if together:
        await_grants(log, together, tag)
    time.sleep(seconds)
    record(log, "release", tag, mode)


def hold(log: PathLike, tag: str, mode: str, until_stdin_closes: bool, seconds: float, together: str) -> None:
    """A holder's part, the same under `dblaunch exec` (logger.py) and
    dblaunch.lock (participant.py): says `held`, then records its hold, until
    its stdin closes or as `work` does (`together`: tags, comma-separated)."""
    print("held", flush=True)
    if until_stdin_closes:
        record(log, "grant", tag, mode)
        sys.stdin.read()
        record(log, "release", tag, mode)
    else:
        work(log, tag, mode, seconds, [t for t in together.split(",") if t])
