#!/bin/sh
# The report step: runs once both writers are done.
set -eu
db=${1:-data/letters.db}
sqlite3 -bail "$db" ".timeout 0" "SELECT source || ': ' || count(*) FROM letters GROUP BY source ORDER BY source;"
