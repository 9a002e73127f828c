"""Enqueues N Huey jobs and prints their results as JSON, once all are in:
huey_enqueue.py N."""

from __future__ import annotations

import json
import sys

from hueytasks import job

results = [job(n) for n in range(int(sys.argv[1]))]
print(json.dumps([r.get(blocking=True, timeout=120) for r in results]), flush=True)
