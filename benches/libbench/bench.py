"""dblaunch's Python API against the file-lock libraries of PyPI, side by side.

    python bench.py [--quick] [--dir DIR] [--build NOTE]

Compares ``dblaunch.lock(db, "write")`` with ``filelock.FileLock``,
``portalocker.Lock`` and ``fasteners.InterProcessLock``, each used the way
its documentation shows, with its own defaults for waiting; and a plain
``os.open`` + ``fcntl.flock`` + ``os.close`` as the floor. The measures
(docs/benchmarks.md, "Python and Node libraries", says more):

1. uncontended lock + release in one process: median over rounds of the
   time per iteration, and the median of the rounds' ratios;
2. hand-off latency with 2 and 8 processes: this process holds, 1 or 7
   children queue, and each grant is timed from the previous holder's
   release (CLOCK_MONOTONIC, shared by all processes);
3. the CPU time and wake-ups (context switches, every thread) of a child
   queued behind a holder;
4. the order of grants to 8 children that queued one after the other.

Rounds take turns between the libraries, each round starting with the next
library, so the machine's noise falls on all of them alike. Ratios are
dblaunch / the other: below 1.0x dblaunch is faster.

``--child DIR`` is the contender the benchmark starts: it reads commands
from stdin, one JSON object a line, and answers on stdout.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib.metadata import version
from types import TracebackType
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import dblaunch
import fasteners  # type: ignore[import-untyped]
import filelock
import portalocker

# The libraries, dblaunch first; FLOOR is the plain kernel lock.
FLOOR = "fcntl.flock"
OTHERS = ["filelock", "portalocker", "fasteners"]
LIBS = ["dblaunch", *OTHERS, FLOOR]
# A process blocked on a read, holding no lock: the floor of measure 3.
IDLE = "idle process"
# Between one contender's start and the next's, in measure 4 (and before
# the release in measure 2): a polling library gives no sign that it has
# queued, so every library gets the same time to do so.
SETTLE = 0.1
# In measure 2, the holder releases at a random time this long after its
# waiters called (the same for every library in a round): a polling library
# gets the lock at its next poll, and a release at a fixed time after the
# waiters started would fall at the same point of their poll cycle each
# time. The range is wider than the longest poll interval (portalocker's
# 0.25 s).
HANDOFF_HOLD = (0.05, 0.3)
# How long any answer of a child may take before the run is abandoned.
ANSWER_TIMEOUT = 120.0


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class Flock:
    """The floor: open, flock(LOCK_EX), close."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd = -1

    def __enter__(self) -> Flock:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        os.close(self._fd)


def lock_factory(lib: str, root: str) -> Callable[[], AbstractContextManager[Any]]:
    """What makes one lock of `lib` on its own file under `root`: each
    iteration and each contender makes a new one, as code written inline
    does (``with filelock.FileLock(path):``)."""
    folder = os.path.join(root, lib)
    os.makedirs(folder, exist_ok=True)
    if lib == "dblaunch":
        db = os.path.join(folder, "app.db")
        return lambda: dblaunch.lock(db, "write")
    path = os.path.join(folder, "app.db.lock")
    if lib == "filelock":
        # Waits forever (timeout=-1), polling every 0.05 s: the defaults.
        return lambda: filelock.FileLock(path)
    if lib == "portalocker":
        # Polls every 0.25 s (its default check_interval); the default
        # timeout, 5 s, is too short for measure 4's queue of 8.
        return lambda: portalocker.Lock(path, mode="a", timeout=60)
    if lib == "fasteners":
        # Polls from 0.01 s apart up to 0.1 s apart: the defaults.
        lock: Callable[[], AbstractContextManager[Any]] = lambda: fasteners.InterProcessLock(path)  # noqa: E731
        return lock
    if lib == FLOOR:
        return lambda: Flock(path)
    raise ValueError(f"unknown library {lib}")


# The contender.


def child(root: str) -> None:
    # Dies with the benchmark, however the benchmark ends.
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        return
    factories = {lib: lock_factory(lib, root) for lib in LIBS}
    out = sys.stdout
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "take":
            out.write('{"ev": "calling"}\n')
            out.flush()
            with factories[command["lib"]]():
                acquired = now_ns()
                released = now_ns()
            answer = {"ev": "granted", "id": command["id"], "acq": acquired, "rel": released}
            out.write(json.dumps(answer) + "\n")
            out.flush()


class Child:
    def __init__(self, root: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._in = self.process.stdin
        self._out = self.process.stdout.fileno()
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def take(self, lib: str, ident: int) -> None:
        """Asks the child to lock, and returns when it is about to."""
        self._in.write(json.dumps({"op": "take", "lib": lib, "id": ident}).encode() + b"\n")
        if self.answer()["ev"] != "calling":
            raise RuntimeError("the contender did not announce its call")

    def answer(self) -> Dict[str, Any]:
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out], [], [], left)[0]:
                raise RuntimeError(f"contender {self.pid} did not answer in {ANSWER_TIMEOUT:.0f} s")
            chunk = os.read(self._out, 65536)
            if not chunk:
                raise RuntimeError(f"contender {self.pid} exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: Dict[str, Any] = json.loads(line)
        return answer

    def granted(self) -> Dict[str, Any]:
        answer = self.answer()
        if answer["ev"] != "granted":
            raise RuntimeError(f"contender {self.pid} answered {answer}")
        return answer

    def stop(self) -> None:
        self._in.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# Measures.


def rotated(libs: List[str], turn: int) -> List[str]:
    k = turn % len(libs)
    return libs[k:] + libs[:k]


def uncontended(
    factories: Dict[str, Callable[[], AbstractContextManager[Any]]], rounds: int, n: int
) -> Dict[str, List[float]]:
    """Seconds per lock + release, one figure per round."""
    times: Dict[str, List[float]] = {lib: [] for lib in LIBS}
    for turn in range(rounds + 1):
        for lib in rotated(LIBS, turn):
            make = factories[lib]
            start = time.perf_counter_ns()
            for _ in range(n):
                with make():
                    pass
            elapsed = (time.perf_counter_ns() - start) / n / 1e9
            if turn > 0:  # the first round warms up
                times[lib].append(elapsed)
    return times


def chain(holder_released: int, grants: List[Dict[str, Any]]) -> List[float]:
    grants = sorted(grants, key=lambda g: int(g["acq"]))
    gaps = []
    previous = holder_released
    for g in grants:
        if g["acq"] < previous:
            raise RuntimeError("two holders at once: the lock did not exclude")
        gaps.append((g["acq"] - previous) / 1e9)
        previous = g["rel"]
    return gaps


class Bench:
    def __init__(self, root: str, children: List[Child]) -> None:
        self.root = root
        self.children = children
        self.factories = {lib: lock_factory(lib, root) for lib in LIBS}
        self.unqueued: Dict[str, int] = {}

    def handoff(self, lib: str, n: int, hold: float) -> List[float]:
        waiters = self.children[: n - 1]
        held = self.factories[lib]()
        held.__enter__()
        try:
            for i, c in enumerate(waiters):
                c.take(lib, i)
            time.sleep(hold)
            if lib == "dblaunch":
                self.queue_check(lib, waiters)
        finally:
            released = now_ns()
            held.__exit__(None, None, None)
        return chain(released, [c.granted() for c in waiters])

    def queue_check(self, lib: str, waiters: List[Child]) -> None:
        db = os.path.join(self.root, "dblaunch", "app.db")
        entries = dblaunch.status(db)["databases"]
        if not entries or len(entries[0]["waiters"]) != len(waiters):
            self.unqueued[lib] = self.unqueued.get(lib, 0) + 1

    def grant_order(self, lib: str, n: int) -> int:
        """How many of `n` contenders, started one after the other behind a
        holder, were granted in their place."""
        waiters = self.children[:n]
        held = self.factories[lib]()
        held.__enter__()
        try:
            for i, c in enumerate(waiters):
                c.take(lib, i)
                time.sleep(SETTLE)
            if lib == "dblaunch":
                self.queue_check(lib, waiters)
        finally:
            held.__exit__(None, None, None)
        grants = sorted((c.granted() for c in waiters), key=lambda g: int(g["acq"]))
        return sum(1 for place, g in enumerate(grants) if g["id"] == place)

    def idle(self, lib: str, window: float) -> Tuple[float, int]:
        """CPU seconds and wake-ups of a contender queued behind a holder
        for `window` seconds (IDLE: a contender doing nothing)."""
        c = self.children[0]
        if lib == IDLE:
            before = process_stats(c.pid)
            time.sleep(window)
            after = process_stats(c.pid)
            return stats_delta(before, after)
        held = self.factories[lib]()
        held.__enter__()
        try:
            c.take(lib, 0)
            time.sleep(SETTLE)
            before = process_stats(c.pid)
            time.sleep(window)
            after = process_stats(c.pid)
        finally:
            held.__exit__(None, None, None)
        c.granted()
        return stats_delta(before, after)


@dataclass
class Stats:
    """One process: on-CPU nanoseconds of each thread (schedstat), user +
    sys clock ticks (stat), context switches of each thread (status)."""

    cpu_ns: Dict[str, int] = field(default_factory=dict)
    ticks: int = 0
    switches: Dict[str, int] = field(default_factory=dict)


def process_stats(pid: int) -> Stats:
    s = Stats()
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    s.ticks = int(fields[11]) + int(fields[12])  # utime, stime
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                s.cpu_ns[tid] = int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                n = 0
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        n += int(line.split()[1])
                s.switches[tid] = n
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return s


def stats_delta(before: Stats, after: Stats) -> Tuple[float, int]:
    # Threads that ended in the window are missed; threads that started in
    # it count from 0.
    cpu = sum(v - before.cpu_ns.get(t, 0) for t, v in after.cpu_ns.items()) / 1e9
    switches = sum(v - before.switches.get(t, 0) for t, v in after.switches.items())
    return cpu, switches


# Reporting.


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 0.01 else f"{seconds * 1e3:.1f} ms"


def fmt_ratio(r: float) -> str:
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def ratio(a: float, b: float) -> str:
    return fmt_ratio(a / b) if b > 0 else "n/a"


def table(header: List[str], rows: List[List[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def steal() -> Tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return values[7] if len(values) > 7 else 0, sum(values)


def label(lib: str) -> str:
    if lib == FLOOR:
        return "`open` + `fcntl.flock` + `close` (floor)"
    if lib == IDLE:
        return "a process blocked on a read, no lock (floor)"
    if lib == "dblaunch":
        return "dblaunch"
    return f"{lib} {version(lib)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke run")
    parser.add_argument("--dir", help="where the lock files go (default: a temporary directory)")
    parser.add_argument("--build", default="not said", help="the dblaunch build measured, to print")
    parser.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    quick = args.quick
    iterations, rounds = (50, 3) if quick else (500, 15)
    handoff_rounds = {2: 4, 8: 2} if quick else {2: 40, 8: 15}
    order_rounds, idle_rounds, window = (1, 1, 0.3) if quick else (3, 3, 1.0)

    root = tempfile.mkdtemp(prefix="libbench-py.", dir=args.dir)
    children: List[Child] = []
    steal_start = steal()
    try:
        children = [Child(root) for _ in range(8)]
        bench = Bench(root, children)
        print(f"## Python: dblaunch against {', '.join(label(lib) for lib in OTHERS)}\n")
        print(
            f"{'quick (a smoke run: too few iterations to compare)' if quick else 'full'} run; "
            f"Python {sys.version.split()[0]}; dblaunch build: {args.build}; {os.cpu_count()} cores; "
            f"load average at the start {os.getloadavg()[0]:.2f}; lock files in {root}\n"
        )

        # 1. Uncontended.
        per_op = uncontended(bench.factories, rounds, iterations)
        rows = []
        for lib in LIBS:
            median = statistics.median(per_op[lib])
            if lib == "dblaunch":
                r = "1.00x"
            else:
                r = fmt_ratio(statistics.median(a / b for a, b in zip(per_op["dblaunch"], per_op[lib])))
            rows.append([label(lib), us(median), r])
        print(f"### Uncontended lock + release ({rounds} rounds of {iterations}, one process)\n")
        table(["library", "median per lock + release", "dblaunch / it (median of rounds)"], rows)

        # 2. Hand-off latency.
        holds = random.Random(1)
        for n, nrounds in handoff_rounds.items():
            gaps: Dict[str, List[float]] = {lib: [] for lib in LIBS}
            for turn in range(nrounds):
                hold = holds.uniform(*HANDOFF_HOLD)
                for lib in rotated(LIBS, turn):
                    gaps[lib] += bench.handoff(lib, n, hold)
            p50 = {lib: statistics.median(g) for lib, g in gaps.items()}
            mean = {lib: statistics.mean(g) for lib, g in gaps.items()}
            rows = [
                [
                    label(lib),
                    ms(p50[lib]),
                    ratio(p50["dblaunch"], p50[lib]),
                    ms(mean[lib]),
                    ratio(mean["dblaunch"], mean[lib]),
                    ms(max(gaps[lib])),
                ]
                for lib in LIBS
            ]
            count = len(gaps["dblaunch"])
            print(f"### Hand-off latency, {n} processes ({count} hand-offs per library)\n")
            table(["library", "p50", "dblaunch / it (p50)", "mean", "dblaunch / it (mean)", "max"], rows)

        # 3. A queued waiter.
        costs: Dict[str, List[Tuple[float, int]]] = {lib: [] for lib in [*LIBS, IDLE]}
        for turn in range(idle_rounds):
            for lib in rotated([*LIBS, IDLE], turn):
                costs[lib].append(bench.idle(lib, window))
        rows = []
        for lib, cost in costs.items():
            cpu = statistics.mean(x[0] for x in cost)
            wakes = statistics.mean(x[1] for x in cost)
            rows.append([label(lib), f"{cpu * 1e3:.2f} ms", f"{wakes:.0f}"])
        print(f"### A waiter queued behind a holder for {window:g} s (mean of {idle_rounds})\n")
        table(["library", "CPU time", "wake-ups (context switches, all threads)"], rows)

        # 4. Grant order.
        places: Dict[str, List[int]] = {lib: [] for lib in LIBS}
        for turn in range(order_rounds):
            for lib in rotated(LIBS, turn):
                places[lib].append(bench.grant_order(lib, 8))
        rows = []
        for lib in LIBS:
            fifo = all(p == 8 for p in places[lib])
            rows.append([label(lib), "yes" if fifo else "no", ", ".join(f"{p} of 8" for p in places[lib])])
        print(
            f"### Grant order: 8 contenders started {SETTLE * 1e3:.0f} ms apart behind a holder "
            f"({order_rounds} rounds)\n"
        )
        table(["library", "in arrival order", "in place, each round"], rows)
        if bench.unqueued:
            print(
                f"(dblaunch's status showed fewer waiters than started in {bench.unqueued['dblaunch']} "
                "rounds: the settle time was too short there)\n"
            )
        s0, t0 = steal_start
        s1, t1 = steal()
        share = (s1 - s0) / max(t1 - t0, 1)
        print(f"CPU time taken by the host (steal, /proc/stat) during the run: {share:.0%}\n")
    finally:
        for c in children:
            c.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
