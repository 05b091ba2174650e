#!/bin/sh
# The benchmark's quick mode runs end to end (a smoke test, not a timing
# test: no time it prints is asserted; the copies bound is checked). make
# check leaves out the quality section (every real file planned twice on
# the host); make check-full (EPLB_BENCH_SMOKE_FULL=1) runs every
# section.
set -e
sections=speed,replan,failure,duplicates,sweep
[ "${EPLB_BENCH_SMOKE_FULL:-0}" = 1 ] && sections=$sections,quality
tools/eplb-bench --quick --sections "$sections" --json bench-smoke.json \
    > bench-smoke.txt
grep -q "x floor" bench-smoke.txt
grep -q "rev us" bench-smoke.txt
grep -q '"replan_reversed_us"' bench-smoke.json
grep -q '"runs"' bench-smoke.json
# the copies bound is a bound: no re-planned layer copies fewer experts
# (the replan section says so where one does)
grep -q "must change node" bench-smoke.txt
if grep -q "premise failed" bench-smoke.txt; then
    grep "premise failed" bench-smoke.txt
    exit 1
fi
cat bench-smoke.txt
rm -f bench-smoke.txt
