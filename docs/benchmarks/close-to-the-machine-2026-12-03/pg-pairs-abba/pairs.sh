#!/bin/bash
# Alternating pairs on PostgreSQL, order swapped every pair (ABBA), a CHECKPOINT
# before each run (so that no run pays for the previous run's WAL), fresh database each run.
set -u
OUT=${OUT:-/work/bench/pg2}; N=${N:-6}
mkdir -p $OUT
cd /work/main
source scripts/throwaway-postgres.sh
start_throwaway_postgres
base=$TODO_TEST_POSTGRES_URL
for i in $(seq 1 $N); do
  if [ $((i % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
  for side in $order; do
    db="bench_${side}_$i"
    psql "$base" -qc "CREATE DATABASE $db" >/dev/null
    psql "$base" -qc "CHECKPOINT" >/dev/null
    url="${base%/*}/$db"
    TODO_BENCH_POSTGRES_URL=$url /work/bench/$side/load --seconds 5 --out $OUT/run-$side-$i > $OUT/$side-$i.log 2>&1
    cp $OUT/run-$side-$i/report.json $OUT/$side-$i.json
    psql "$base" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
    echo "$side $i $(date +%T)" >> $OUT/progress
  done
done
echo done >> $OUT/progress
