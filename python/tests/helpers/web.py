"""A web-like loop: N requests, each one write to the application's SQLite
file, as fast as they come; prints the results as JSON: web.py N."""

from __future__ import annotations

import json
import sys

from hueytasks import write_row

print(json.dumps([write_row("web", n) for n in range(int(sys.argv[1]))]), flush=True)
