"""The program a `dblaunch exec` runs in the exclusion tests: it holds
what dblaunch exec locked for it, and records it. logger.py TAG MODE LOG
[--work S] [--together T1,T2] [--hold]."""

from __future__ import annotations

import argparse

import events

parser = argparse.ArgumentParser()
parser.add_argument("tag")
parser.add_argument("mode")
parser.add_argument("log")
parser.add_argument("--work", type=float, default=0.05)
parser.add_argument("--together", default="")
parser.add_argument("--hold", action="store_true")
args = parser.parse_args()

events.hold(args.log, args.tag, args.mode, args.hold, args.work, args.together)
