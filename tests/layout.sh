#!/bin/sh
# No circle of files in the library: no two of its object files call into
# each other (each wing calls down, never back). Reads the symbols the
# built objects define and use (nm).
set -e
top=${EPLB_TEST_BUILDDIR:-.}
objs=$(find "$top/lib" -path '*/.libs/*.o' | sort)
[ -n "$objs" ] || { echo "layout: no library objects under $top/lib"; exit 77; }
for o in $objs; do
  n=$(basename "$o" .o | sed 's/^libeplb_cl_la-//')
  nm "$o" | awk -v f="$n" '$2 ~ /^[TDBR]$/ {print "def", f, $3} $1 == "U" {print "use", f, $2}'
done | awk '
  $1 == "def" { owner[$3] = $2 }
  $1 == "use" { uses[++n] = $2 " " $3 }
  END {
    for (i = 1; i <= n; i++) {
      split(uses[i], p, " ")
      if ((p[2] in owner) && owner[p[2]] != p[1]) edge[p[1] "->" owner[p[2]]] = p[2]
    }
    bad = 0
    for (e in edge) {
      split(e, q, "->")
      r = q[2] "->" q[1]
      if ((r in edge) && q[1] < q[2]) {
        printf "layout: %s and %s call each other (%s, %s)\n", q[1], q[2], edge[e], edge[r]
        bad = 1
      }
    }
    if (!bad) print "layout: no two library files call each other"
    exit bad
  }'
