# The native part of dblaunch (Rust); the package's __init__ is its API.
from collections.abc import Callable
from typing import Any, final

__all__ = ["Held", "Waiter", "acquire", "start", "status_json"]

@final
class Held:
    def release(self) -> bool: ...
    @property
    def held(self) -> bool: ...
    @property
    def databases(self) -> list[tuple[str, str]]: ...
    @property
    def fencing_tokens(self) -> list[tuple[str, int]]: ...

@final
class Waiter:
    def cancel(self) -> None: ...

def acquire(
    targets: list[tuple[str, str]],
    timeout: float | None = None,
    name: str | None = None,
    owner: int | None = None,
) -> Held: ...
def start(
    targets: list[tuple[str, str]],
    timeout: float | None,
    name: str | None,
    owner: int,
    done: Callable[[Held | BaseException], object],
    event_loop: Any,
) -> Waiter: ...
def status_json(dbs: list[str]) -> str: ...
