"""dblaunch: take a database's lock inside a Python program.

The lock joins the same queue as every ``dblaunch exec``, ``dblaunch run``
and other program locking the database on this machine: first come, first
served, readers together, writers alone. It is a kernel lock on a
descriptor of this process, so it is released when the process dies,
however it dies.

>>> import dblaunch
>>> with dblaunch.lock("data/app.db", "write", timeout=30):
...     ...  # open the database, write, close it

>>> async with dblaunch.lock("data/app.db", "read"):
...     ...

See docs/python.md in the repository for the details.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import threading
import weakref
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional, Tuple, Type, Union

from . import _native
from ._errors import Busy, Error, Holder, WouldDeadlock

if TYPE_CHECKING:
    from typing_extensions import Self

#: How a database is used: shared (``"read"``) or exclusive (``"write"``).
Mode = Literal["read", "write"]
#: A database: its path, or the name of an entry of the manifest's
#: ``[databases]``.
Database = Union[str, "os.PathLike[str]"]
#: What ``lock`` takes: a database, several (one mode), or ``{db: mode}``.
Databases = Union[Database, Iterable[Database], Mapping[Database, Mode]]

__all__ = [
    "Busy",
    "Database",
    "Databases",
    "Error",
    "Holder",
    "Lock",
    "Mode",
    "WouldDeadlock",
    "lock",
    "status",
]

__version__ = "0.1.0"

_MODES = ("read", "write")


def lock(
    db: Databases,
    mode: Optional[Mode] = None,
    timeout: Optional[float] = None,
    name: Optional[str] = None,
) -> Lock:
    """The lock of one database or several (all or none), to use with
    ``with`` or ``async with`` (or ``acquire()`` / ``release()``).

    ``db`` is a path (it has a ``/`` or a ``.``; relative to the current
    directory; it need not exist yet) or the name of an entry of the
    manifest's ``[databases]`` (``$DBLAUNCH_FILE``, else ``dblaunch.toml``
    in the current directory or a parent); or a sequence of them, each
    locked in ``mode``; or a mapping ``{db: mode}``, without ``mode``.

    ``mode`` is ``"read"`` (shared with other readers) or ``"write"``
    (exclusive). ``timeout`` is in seconds: ``None`` (the default) waits
    as long as it takes, ``0`` tries once; past it, ``Busy`` is raised
    (a ``TimeoutError``) naming the holder. ``name`` is what
    ``dblaunch status`` shows (default: ``$DBLAUNCH_PROGRAM``, else the
    script's base name, such as ``worker.py``).

    Bad input raises ``ValueError`` (some of it, such as an unknown
    database name, when the lock is acquired), before anything is queued.
    """
    return Lock(db, mode, timeout=timeout, name=name)


class Lock:
    """Databases to lock, and how. One object is one acquisition at a time:
    acquire it again after releasing it, or make another to re-enter.

    Re-entry is per owner: the thread in synchronous code, the current
    task under asyncio. An owner holding a database in a covering mode
    (write covers read and write; read covers read) gets it again at once;
    one holding it for reading that asks to write gets ``WouldDeadlock``
    at once. Two threads, or two tasks, exclude each other as two
    processes do.
    """

    __slots__ = ("_busy", "_guard", "_held", "_name", "_targets", "_timeout")

    def __init__(
        self,
        db: Databases,
        mode: Optional[Mode] = None,
        *,
        timeout: Optional[float] = None,
        name: Optional[str] = None,
    ) -> None:
        self._targets = _targets(db, mode)
        self._timeout = _timeout(timeout)
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"name must be a str or None, not {type(name).__name__}")
            if not name.strip():
                raise ValueError("name is empty: give the name `dblaunch status` should show, or None")
        self._name = name
        self._held: Optional[_native.Held] = None
        # An acquisition is under way or held: one at a time per object.
        self._busy = False
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        state = "held" if self.held else "not held"
        targets = ", ".join(f"{db} ({mode})" for db, mode in self._targets)
        return f"<dblaunch.Lock {targets}: {state}>"

    # Synchronous use: the owner is the calling thread.

    def acquire(self) -> Self:
        """Waits for every database (all or none) and returns this lock,
        held. The wait releases the GIL and costs no CPU; Ctrl-C raises
        ``KeyboardInterrupt`` at once and leaves the queue."""
        self._claim()
        try:
            self._held = _native.acquire(self._targets, self._timeout, self._name, None)
        except BaseException:
            self._unclaim()
            raise
        return self

    def release(self) -> None:
        """Releases every database. ``RuntimeError`` if not held."""
        with self._guard:
            held, self._held = self._held, None
            if held is None:
                raise RuntimeError("this dblaunch lock is not held")
            self._busy = False
        held.release()

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()

    # asyncio: the owner is the current task.

    async def acquire_async(self) -> Self:
        """As ``acquire``, without blocking the event loop: the wait runs on
        a thread of its own (not the loop's executor). Cancelling the task
        leaves the queue at once; the lock is never granted later."""
        self._claim()
        try:
            self._held = await _wait(self._targets, self._timeout, self._name)
        except BaseException:
            self._unclaim()
            raise
        return self

    async def __aenter__(self) -> Self:
        return await self.acquire_async()

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()

    # What is held.

    @property
    def held(self) -> bool:
        """Whether this lock holds its databases now."""
        held = self._held
        return held is not None and held.held

    @property
    def databases(self) -> List[Tuple[str, Mode]]:
        """Each database held (its canonical path, as ``dblaunch status``
        shows it) and its mode; empty when not held."""
        held = self._held
        if held is None or not held.held:
            return []
        return [(db, _mode_of(mode)) for db, mode in held.databases]

    @property
    def fencing_tokens(self) -> Dict[str, int]:
        """The fencing token of each key held in the lock backend (strictly
        increasing over the grants of a key); empty without a backend, when
        re-entered, or when not held."""
        held = self._held
        return dict(held.fencing_tokens) if held is not None and held.held else {}

    @property
    def fencing_token(self) -> Optional[int]:
        """The fencing token, when exactly one key is held in the backend."""
        tokens = list(self.fencing_tokens.values())
        return tokens[0] if len(tokens) == 1 else None

    def _claim(self) -> None:
        with self._guard:
            if self._busy:
                raise RuntimeError(
                    "this dblaunch lock is already held or being acquired: release it first, "
                    "or make another with dblaunch.lock(...) (the same thread or task re-enters)"
                )
            self._busy = True

    def _unclaim(self) -> None:
        with self._guard:
            self._busy = False


def status(*dbs: Database) -> Dict[str, Any]:
    """Who holds and who waits for each database, as
    ``dblaunch status --json`` prints it: ``{"databases": [{"path",
    "holders", "waiters", "foreign"}, ...]}``. With no database, every one
    of the manifest's ``[databases]``."""
    document: Dict[str, Any] = json.loads(_native.status_json([_path(db) for db in dbs]))
    return document


# asyncio waits.

# Each task's owner: an even number (the lock numbers threads with odd
# ones), kept as long as the task lives.
_task_owners: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()
_next_owner = itertools.count(2, 2)
_owners_guard = threading.Lock()


def _after_fork_in_child() -> None:
    # Another thread may have held the mutex at the fork; the child's tasks
    # are its own.
    global _owners_guard  # noqa: PLW0603
    _owners_guard = threading.Lock()
    _task_owners.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _owner() -> int:
    task = asyncio.current_task()
    with _owners_guard:
        if task is None:
            return next(_next_owner)
        owner = _task_owners.get(task)
        if owner is None:
            owner = _task_owners[task] = next(_next_owner)
        return owner


async def _wait(
    targets: List[Tuple[str, str]], timeout: Optional[float], name: Optional[str]
) -> _native.Held:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_native.Held] = loop.create_future()

    def done(result: Union[_native.Held, BaseException]) -> None:
        # On the event loop's thread.
        if future.done():
            # Cancelled meanwhile: a lock granted as the task was cancelled
            # is given back at once.
            if isinstance(result, _native.Held):
                result.release()
        elif isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    waiter = _native.start(targets, timeout, name, _owner(), done, loop)
    try:
        return await future
    except asyncio.CancelledError:
        waiter.cancel()
        if future.done() and not future.cancelled() and future.exception() is None:
            future.result().release()
        raise


# Arguments.


def _path(db: object) -> str:
    if isinstance(db, str):
        path = db
    elif isinstance(db, os.PathLike):
        path = os.fspath(db)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
    else:
        raise TypeError(
            f"a database is a path or a manifest name (str or os.PathLike), not {type(db).__name__}"
        )
    if not path:
        raise ValueError(
            "a database path or name is empty: give the path of the database file (or directory), "
            "or a name of the manifest's [databases]"
        )
    if "\0" in path:
        raise ValueError(f"a database path has a NUL character: {path!r}")
    return path


def _mode(mode: object) -> str:
    if mode is None:
        raise ValueError('give the mode: "read" (shared) or "write" (exclusive)')
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f'{mode!r} is not a mode: give "read" (shared) or "write" (exclusive)')
    return mode


def _mode_of(mode: str) -> Mode:
    return "write" if mode == "write" else "read"


def _targets(db: object, mode: object) -> List[Tuple[str, str]]:
    if isinstance(db, Mapping):
        if mode is not None:
            raise ValueError(
                "give each database's mode in the mapping, or one mode for a path or a sequence "
                "of paths, not both"
            )
        targets = [(_path(d), _mode(m)) for d, m in db.items()]
    elif isinstance(db, (str, os.PathLike)):
        targets = [(_path(db), _mode(mode))]
    elif isinstance(db, Iterable) and not isinstance(db, (bytes, bytearray)):
        m = _mode(mode)
        targets = [(_path(d), m) for d in db]
    else:
        raise TypeError(
            "db is a path or manifest name, a sequence of them, or a mapping {db: mode}, "
            f"not {type(db).__name__}"
        )
    if not targets:
        raise ValueError("no database given")
    return targets


def _timeout(timeout: object) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout is a number of seconds or None, not {type(timeout).__name__}")
    seconds = float(timeout)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(
            f"timeout={timeout!r} is not a number of seconds: give 0 or more (0 tries once), "
            "or None to wait as long as it takes"
        )
    return None if math.isinf(seconds) else seconds
