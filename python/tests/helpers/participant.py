"""A Python process that takes a database's lock with dblaunch.lock and
records its hold: participant.py DB MODE TAG LOG [--work S] [--together
T1,T2] [--hold] [--name NAME] [--timeout S] [--asyncio] (async with, in a
task).

Prints `held` once it holds; with --hold, holds until its stdin closes."""

from __future__ import annotations

import argparse
import asyncio

import events

import dblaunch

parser = argparse.ArgumentParser()
parser.add_argument("db")
parser.add_argument("mode")
parser.add_argument("tag")
parser.add_argument("log")
parser.add_argument("--work", type=float, default=0.05)
parser.add_argument("--together", default="")
parser.add_argument("--hold", action="store_true")
parser.add_argument("--name")
parser.add_argument("--timeout", type=float)
parser.add_argument("--asyncio", action="store_true")
args = parser.parse_args()
lock = dblaunch.lock(args.db, args.mode, timeout=args.timeout, name=args.name)


def hold() -> None:
    events.hold(args.log, args.tag, args.mode, args.hold, args.work, args.together)


async def hold_async() -> None:
    async with lock:
        hold()


if args.asyncio:
    asyncio.run(hold_async())
else:
    with lock:
        hold()
print("released", flush=True)
