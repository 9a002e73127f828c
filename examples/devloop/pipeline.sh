#!/bin/sh
# A batch of N orders in one transaction (the sqlite3 shell); dblaunch
# holds the write lock on data/app.db for it, so the web app (a reader
# that yields) steps aside and comes back after it.
set -eu
n=${1:-100}
sqlite3 -bail data/app.db <<SQL
.timeout 0
BEGIN IMMEDIATE;
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $n)
INSERT INTO orders(currency, amount)
  SELECT CASE i % 3 WHEN 0 THEN 'EUR' WHEN 1 THEN 'USD' ELSE 'GBP' END, i * 1.5 FROM seq;
COMMIT;
SQL
echo "pipeline: $n orders written"
