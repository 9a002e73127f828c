#!/bin/sh
# The same programs started together the usual way, without dblaunch: the
# writers collide and SQLite answers "database is locked".
cd "$(dirname "$0")"
./dashboard.sh & d=$!
./ingest.sh post & a=$!
./ingest.sh email & b=$!
status=0
wait $a || status=1
wait $b || status=1
wait $d || status=1
./report.sh
exit $status
