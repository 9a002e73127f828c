#!/bin/sh
# A long-running reader: polls the table the way a dashboard does.
set -eu
db=${1:-data/letters.db}
for i in 1 2 3 4 5; do
  count=$(sqlite3 -bail "$db" ".timeout 0" "CREATE TABLE IF NOT EXISTS letters(source TEXT NOT NULL, n INTEGER NOT NULL);" "SELECT count(*) FROM letters;")
  echo "dashboard: $count letters"
  sleep 0.2
done
