#!/bin/sh
# A writer: replaces SOURCE's 500 rows in one transaction that it holds for
# a second (as a real ingest holds it while it fetches and parses). With a
# zero busy timeout, a second writer at the same time fails with
# "database is locked", as it does in production once the timeout runs out.
set -eu
source=$1
db=${2:-data/letters.db}
sqlite3 -bail "$db" <<SQL
.timeout 0
CREATE TABLE IF NOT EXISTS letters(source TEXT NOT NULL, n INTEGER NOT NULL);
BEGIN IMMEDIATE;
DELETE FROM letters WHERE source = '$source';
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 500)
INSERT INTO letters(source, n) SELECT '$source', n FROM seq;
.shell sleep 1
COMMIT;
SQL
echo "ingested 500 letters from $source"
