#!/bin/bash
# SQLite pairs, order swapped every pair (ABBA): each side its own release build and harness.
set -u
OUT=${OUT:-/work/bench/sqlite-pairs}; N=${N:-10}
mkdir -p $OUT
for i in $(seq 1 $N); do
  if [ $((i % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
  for side in $order; do
    /work/bench/$side/load --seconds 5 --out $OUT/run-$side-$i > $OUT/$side-$i.log 2>&1
    cp $OUT/run-$side-$i/report.json $OUT/$side-$i.json
    echo "$side $i $(date +%T)" >> $OUT/progress
  done
done
echo done >> $OUT/progress
