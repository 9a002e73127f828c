"""The exceptions of dblaunch (the native module raises them)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

__all__ = ["Busy", "Error", "WouldDeadlock"]

#: A holder as `Busy.holders` lists it: ``kind`` (``"program"``,
#: ``"remote"``, ``"foreign"``, ``"leftover"``, ``"orphan"``, ...), and
#: what is known of it: ``pid``, ``program``, ``mode``, ``holding``,
#: ``since``, ``host`` (remote), ``command`` (foreign), ``description``.
Holder = Dict[str, Any]


class Error(Exception):
    """A lock could not be taken: the lock directory cannot be written, the
    lock backend cannot be reached, ... The message says what and where."""


class Busy(Error, TimeoutError):
    """The database stayed busy past the timeout (at once for a timeout of
    zero). Nothing is left queued or held."""

    def __init__(
        self,
        message: str,
        *,
        database: str = "",
        mode: str = "",
        holders: Optional[List[Holder]] = None,
        waited: float = 0.0,
        timeout: float = 0.0,
    ) -> None:
        super().__init__(message)
        #: The database that was busy (its canonical path).
        self.database = database
        #: The mode asked for: ``"read"`` or ``"write"``.
        self.mode = mode
        #: Who was in the way, the holder first.
        self.holders: List[Holder] = holders if holders is not None else []
        #: How long it waited, in seconds.
        self.waited = waited
        #: The timeout, in seconds.
        self.timeout = timeout


class WouldDeadlock(Error, RuntimeError):
    """The owner (this thread, or this asyncio task) holds the database for
    reading and asked to write, or the process runs under a ``dblaunch exec``
    that holds it for reading: the wait could never end. Raised at once."""

    def __init__(self, message: str, *, database: str = "", holder: str = "") -> None:
        super().__init__(message)
        #: The database (its canonical path).
        self.database = database
        #: Who holds it for reading.
        self.holder = holder
