"""Real engines beside real programs: a long-running DuckDB reader among
`dblaunch exec --write` DuckDB writers; Huey workers and a web loop
writing one SQLite file, failing without dblaunch and not with it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEADLINE, HELPERS, Processes, expect_line, read_line

import dblaunch

duckdb = pytest.importorskip("duckdb")
pytest.importorskip("huey")


def test_a_duckdb_reader_serves_beside_exec_writers(
    work: Path, procs: Processes, dblaunch_exe: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(work / "shop.duckdb")
    with dblaunch.lock(db, "write"):
        con = duckdb.connect(db)
        con.execute("CREATE TABLE items (batch INTEGER, i INTEGER)")
        con.close()
    reader = procs.python("duck_reader.py", db)
    expect_line(reader, "count 0")
    # Four waves of two writers at once; after each, the same reader serves
    # a request that sees the wave's rows.
    for wave in range(4):
        writers = [
            procs.start(
                [
                    dblaunch_exe,
                    "exec",
                    "--write",
                    db,
                    "--",
                    sys.executable,
                    str(HELPERS / "duck_writer.py"),
                    db,
                    str(2 * wave + i),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                lines=False,
            )
            for i in range(2)
        ]
        for writer in writers:
            _out, err = writer.communicate(timeout=DEADLINE)
            assert writer.returncode == 0, err
            assert "Could not set lock" not in err
        while (line := read_line(reader)) != f"count {200 * (wave + 1)}":
            assert line.startswith("count "), line
    assert reader.poll() is None, "the reader was not meant to stop"
    reader.stdin.close()  # type: ignore[union-attr]
    while (line := read_line(reader)).startswith("count "):
        pass
    summary = json.loads(line)
    assert summary["pid"] == reader.pid
    assert summary["errors"] == []
    assert summary["served"] >= 5
    assert summary["final"] == 800
    # Each request saw whole batches, in order.
    assert all(c % 100 == 0 for c in summary["counts"])
    assert summary["counts"] == sorted(summary["counts"])
    with dblaunch.lock(db, "read"):
        con = duckdb.connect(db, read_only=True)
        assert con.execute("SELECT count(*), count(DISTINCT batch) FROM items").fetchone() == (800, 8)
        con.close()
    with capsys.disabled():
        print(
            f"\n  duckdb: one reader process served {summary['served']} requests beside 8 "
            "`dblaunch exec --write` writers, 0 errors"
        )


def _huey_round(
    work: Path, procs: Processes, use_dblaunch: bool, jobs: int = 40, requests: int = 30
) -> list[str]:
    """Huey's consumer (4 worker threads) runs `jobs` writes while a web
    loop makes `requests`; returns every result."""
    tag = "with" if use_dblaunch else "without"
    app_db = work / f"app-{tag}.db"
    con = sqlite3.connect(app_db)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE rows (source TEXT, n INTEGER)")
    con.commit()
    con.close()
    env = {
        "APP_DB": str(app_db),
        "HUEY_QUEUE": str(work / f"queue-{tag}.db"),
        "USE_DBLAUNCH": "1" if use_dblaunch else "0",
    }
    consumer = procs.start(
        [
            sys.executable,
            "-m",
            "huey.bin.huey_consumer",
            "hueytasks.huey",
            "-w",
            "4",
            "-k",
            "thread",
            "-d",
            "0.01",
            "-m",
            "0.05",
            "-b",
            "1.0",
            "-C",
            "-n",
            "-q",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    enqueue = procs.python("huey_enqueue.py", str(jobs), env=env)
    web = procs.python("web.py", str(requests), env=env)
    results: list[str] = json.loads(read_line(web)) + json.loads(read_line(enqueue))
    assert len(results) == jobs + requests
    consumer.terminate()
    consumer.wait(DEADLINE)
    con = sqlite3.connect(app_db)
    (rows,) = con.execute("SELECT count(*) FROM rows").fetchone()
    con.close()
    assert rows == results.count("ok")
    return results


def test_huey_and_a_web_loop_on_one_sqlite_file(
    work: Path, procs: Processes, capsys: pytest.CaptureFixture[str]
) -> None:
    without = _huey_round(work, procs, use_dblaunch=False)
    failed = [r for r in without if r != "ok"]
    assert failed, "without dblaunch, some writes were expected to fail"
    assert all("database is locked" in r for r in failed), failed
    with_lock = _huey_round(work, procs, use_dblaunch=True)
    assert [r for r in with_lock if r != "ok"] == []
    with capsys.disabled():
        print(
            f"\n  huey + web loop, {len(without)} writes: without dblaunch {len(failed)} failed "
            f"(database is locked); with dblaunch.lock 0 failed, all {len(with_lock)} rows present"
        )
