#!/bin/sh
# The benchmark's quick mode runs end to end (a smoke test, not a timing
# test: no figure it prints is asserted).
set -e
tools/eplb-bench --quick --json bench-smoke.json > bench-smoke.txt
grep -q "x floor" bench-smoke.txt
grep -q '"runs"' bench-smoke.json
cat bench-smoke.txt
rm -f bench-smoke.txt
