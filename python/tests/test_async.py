"""asyncio: a wait never blocks the event loop nor takes a thread of its
executor; a cancelled wait leaves the queue at once, is never granted, and
leaves no thread behind; tasks exclude each other and re-enter."""

from __future__ import annotations

import asyncio
import operator
import time
from pathlib import Path

import pytest
from conftest import (
    Processes,
    expect_line,
    holders,
    thread_count,
    thread_names,
    until,
    wait_until,
    wait_waiters,
    waiters,
)

import dblaunch


def test_a_cancelled_wait_leaves_the_queue_and_is_never_granted(work: Path, procs: Processes) -> None:
    holder = procs.python("holder.py", "app.db", "write")
    expect_line(holder, "held")

    async def main() -> None:
        baseline = thread_count()
        task = asyncio.ensure_future(dblaunch.lock("app.db", "write", name="cancelled").acquire_async())
        await until(lambda: len(waiters("app.db")) == 1, "the wait queued")
        assert waiters("app.db")[0]["program"] == "cancelled"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Gone from the queue at once, and its thread with it.
        await until(lambda: not waiters("app.db"), "the queue left", 5)
        await until(lambda: thread_count() <= baseline, "the wait thread to end", 5)

    asyncio.run(main())
    assert procs.finish(holder) == 0
    # Free for another process at once: the cancelled wait holds nothing.
    other = procs.python(
        "holder.py",
        "app.db",
        "write",
        "other",
    )
    expect_line(other, "held")
    assert [h["pid"] for h in holders("app.db")] == [other.pid]
    assert procs.finish(other) == 0


def test_the_event_loop_runs_while_a_lock_is_awaited(work: Path, procs: Processes) -> None:
    holder = procs.python("holder.py", "app.db", "write")
    expect_line(holder, "held")

    async def main() -> float:
        loop = asyncio.get_running_loop()
        wait = asyncio.ensure_future(dblaunch.lock("app.db", "write").acquire_async())
        await asyncio.to_thread(wait_waiters, "app.db", 1)
        # Ten timer ticks of 20 ms while the lock is awaited.
        lateness = 0.0
        for _ in range(10):
            due = loop.time() + 0.02
            await asyncio.sleep(0.02)
            lateness = max(lateness, loop.time() - due)
        assert not wait.done()
        holder.stdin.close()  # type: ignore[union-attr]
        held = await asyncio.wait_for(wait, 60)
        assert held.held
        held.release()
        return lateness

    lateness = asyncio.run(main())
    assert lateness < 0.25, f"a timer fired {lateness * 1000:.0f} ms late"
    assert holder.wait(60) == 0


def test_many_async_waits_leave_the_default_executor_free(work: Path, procs: Processes) -> None:
    holder = procs.python("holder.py", "app.db", "write")
    expect_line(holder, "held")
    baseline = thread_count()

    async def main() -> None:
        # More waits than the default executor has threads (min(32, cpus + 4)).
        waits = [asyncio.ensure_future(dblaunch.lock("app.db", "read").acquire_async()) for _ in range(40)]
        await asyncio.to_thread(wait_waiters, "app.db", 40)
        started = time.monotonic()
        results = await asyncio.gather(*(asyncio.to_thread(operator.mul, i, 2) for i in range(20)))
        took = time.monotonic() - started
        assert results == [i * 2 for i in range(20)]
        assert took < 2, f"to_thread calls took {took:.2f} s beside the lock waits"
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        await asyncio.to_thread(wait_until, lambda: not waiters("app.db"), "every wait gone", 10)

    asyncio.run(main())
    # No wait thread stays (the loop's executor was shut down with it).
    wait_until(lambda: thread_count() <= baseline, "the wait threads to end", 10)
    assert procs.finish(holder) == 0


def test_after_a_cancel_no_thread_stays(work: Path, procs: Processes) -> None:
    holder = procs.python("holder.py", "app.db", "write")
    expect_line(holder, "held")

    async def main() -> None:
        before = thread_count()
        waits = [asyncio.ensure_future(dblaunch.lock("app.db", "write").acquire_async()) for _ in range(5)]
        await until(lambda: len(waiters("app.db")) == 5, "5 waits queued")
        # One thread per wait, none from the loop's executor.
        assert thread_count() == before + 5, thread_names()
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        await until(lambda: thread_count() <= before, "the wait threads to end", 5)

    asyncio.run(main())
    assert procs.finish(holder) == 0


def test_asyncio_timeout_raises_busy(work: Path, procs: Processes) -> None:
    holder = procs.python("holder.py", "app.db", "write", "slow-holder")
    expect_line(holder, "held")

    async def main() -> None:
        with pytest.raises(dblaunch.Busy, match="slow-holder"):
            await dblaunch.lock("app.db", "read", timeout=0.2).acquire_async()
        with pytest.raises(dblaunch.Busy):
            async with dblaunch.lock("app.db", "read", timeout=0):
                pass

    asyncio.run(main())
    assert waiters("app.db") == []
    assert procs.finish(holder) == 0


def test_tasks_exclude_each_other_and_each_task_re_enters(work: Path) -> None:
    async def main() -> None:
        order: list[str] = []
        first_holds = asyncio.Event()
        go_on = asyncio.Event()

        async def first() -> None:
            async with dblaunch.lock("app.db", "write"):
                # The same task re-enters at once, in a covering mode.
                async with dblaunch.lock("app.db", "read", timeout=0):
                    pass
                with pytest.raises(dblaunch.WouldDeadlock):
                    async with dblaunch.lock("other.db", "read"):
                        await dblaunch.lock("other.db", "write").acquire_async()
                order.append("first holds")
                first_holds.set()
                await go_on.wait()
                order.append("first releases")

        async def second() -> None:
            await first_holds.wait()
            # Another task of the same thread is another owner: it queues.
            with pytest.raises(dblaunch.Busy):
                await dblaunch.lock("app.db", "read", timeout=0).acquire_async()
            waiting = asyncio.ensure_future(dblaunch.lock("app.db", "read").acquire_async())
            await asyncio.to_thread(wait_waiters, "app.db", 1)
            go_on.set()
            held = await asyncio.wait_for(waiting, 60)
            order.append("second holds")
            held.release()

        await asyncio.wait_for(asyncio.gather(first(), second()), 60)
        assert order == ["first holds", "first releases", "second holds"]

    asyncio.run(main())


def test_async_with_several_databases(work: Path) -> None:
    async def main() -> None:
        async with dblaunch.lock({"a.db": "write", "b.db": "read"}) as held:
            assert sorted(held.databases) == [(str(work / "a.db"), "write"), (str(work / "b.db"), "read")]
            assert held.fencing_tokens == {}
            assert held.fencing_token is None
        assert not held.held
        assert held.databases == []

    asyncio.run(main())
