#!/bin/sh
# The benchmark's quick mode runs end to end (a smoke test, not a timing
# test: no figure it prints is asserted). make check leaves out the
# quality section (every real file planned twice on the host); make
# check-full (EPLB_BENCH_SMOKE_FULL=1) runs every section.
set -e
sections=speed,replan,failure,duplicates,sweep
[ "${EPLB_BENCH_SMOKE_FULL:-0}" = 1 ] && sections=$sections,quality
tools/eplb-bench --quick --sections "$sections" --json bench-smoke.json \
    > bench-smoke.txt
grep -q "x floor" bench-smoke.txt
grep -q "rev us" bench-smoke.txt
grep -q '"replan_reversed_us"' bench-smoke.json
grep -q '"runs"' bench-smoke.json
cat bench-smoke.txt
rm -f bench-smoke.txt
