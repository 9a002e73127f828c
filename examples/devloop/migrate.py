"""The schema, and the rates from the stub: dblaunch starts this once the
stub is ready (`needs`), holding the write lock on data/app.db."""
import sqlite3
import sys
import urllib.request

port = int(sys.argv[1])
with urllib.request.urlopen(f"http://127.0.0.1:{port}/rates", timeout=5) as r:
    rates = [line.split(",") for line in r.read().decode().split()]
db = sqlite3.connect("data/app.db")
with db:
    db.execute("CREATE TABLE IF NOT EXISTS rates(currency TEXT PRIMARY KEY, rate REAL)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS orders("
        "id INTEGER PRIMARY KEY, currency TEXT, amount REAL)"
    )
    db.executemany("INSERT OR REPLACE INTO rates VALUES (?, ?)", rates)
print(f"migrated: {len(rates)} rates")
