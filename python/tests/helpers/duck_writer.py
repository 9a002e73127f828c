"""A DuckDB writer, run by `dblaunch exec --write DB -- python
duck_writer.py DB BATCH`: inserts 100 rows of its batch."""

from __future__ import annotations

import sys

import duckdb

db, batch = sys.argv[1], int(sys.argv[2])
con = duckdb.connect(db)
con.execute("INSERT INTO items SELECT ?, i FROM range(100) t(i)", [batch])
con.close()
