#!/bin/sh
# The shared library exports exactly the functions that eplb_cl.h declares
# with EPLB_API: nothing private leaks past -fvisibility=hidden and
# -export-symbols-regex, and nothing documented is missing. The measuring
# calls stay hidden from callers that do not define EPLB_EXPERIMENTAL.
# Exit 77 (skip) where there is no shared library or no nm.
set -u
srcdir=${EPLB_TEST_SRCDIR:-.}
builddir=${EPLB_TEST_BUILDDIR:-.}
header=$srcdir/include/eplb_cl.h

dlname=$(sed -n "s/^dlname='\(.*\)'$/\1/p" "$builddir/libeplb-cl.la" \
         2>/dev/null)
if [ -z "$dlname" ] || [ ! -f "$builddir/.libs/$dlname" ]; then
    echo "SKIP: no shared libeplb-cl in $builddir/.libs (static build?)"
    exit 77
fi
if ! command -v nm >/dev/null 2>&1; then
    echo "SKIP: nm not found (binutils)"
    exit 77
fi

tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT

# Declarations: join continued lines, drop preprocessor lines and comments,
# then take the name before the "(" of every EPLB_API declaration.
sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$header" |
    sed -e '/^[[:space:]]*#/d' | tr '\n' ' ' |
    sed -e 's:/\*[^*]*\*\+\([^/*][^*]*\*\+\)*/: :g' |
    grep -o 'EPLB_API[^;(]*(' |
    sed -e 's/[[:space:]]*($//' -e 's/.*[^A-Za-z0-9_]//' |
    sort -u > "$tmp/declared"
# Defined dynamic symbols, without symbol-version suffixes.
nm -D --defined-only "$builddir/.libs/$dlname" |
    awk 'NF >= 3 { sub(/@.*/, "", $3); print $3 }' |
    sort -u > "$tmp/exported"

n_declared=$(wc -l < "$tmp/declared")
n_exported=$(wc -l < "$tmp/exported")
echo "declared with EPLB_API: $n_declared; exported by $dlname: $n_exported"
status=0
if [ "$n_declared" -lt 10 ]; then
    echo "FAIL: found only $n_declared EPLB_API declarations in $header:" \
         "the parser no longer understands the header"
    status=1
fi
comm -13 "$tmp/declared" "$tmp/exported" > "$tmp/undocumented"
comm -23 "$tmp/declared" "$tmp/exported" > "$tmp/missing"
if [ -s "$tmp/undocumented" ]; then
    echo "FAIL: exported but not declared with EPLB_API in eplb_cl.h" \
         "(give private functions hidden visibility or a non-eplb_ name):"
    sed 's/^/  /' "$tmp/undocumented"
    status=1
fi
if [ -s "$tmp/missing" ]; then
    echo "FAIL: declared with EPLB_API but not exported (not defined, or" \
         "defined without the header's visibility):"
    sed 's/^/  /' "$tmp/missing"
    status=1
fi

# The experimental guard, seen through the preprocessor.
if [ -n "${EPLB_TEST_CC:-}" ]; then
    for define in "" "-DEPLB_EXPERIMENTAL"; do
        printf '#include "eplb_cl.h"\n' |
            $EPLB_TEST_CC -E $define -I"$srcdir/include" \
                -I"$builddir/include" - > "$tmp/pp" 2>"$tmp/pp.err" || {
            echo "FAIL: the preprocessor failed on eplb_cl.h $define:"
            cat "$tmp/pp.err"
            status=1
            continue
        }
        seen=$(grep -c 'eplb_context_floor\|eplb_context_profile' \
               "$tmp/pp")
        if [ -z "$define" ] && [ "$seen" -ne 0 ]; then
            echo "FAIL: the measuring calls are visible without" \
                 "EPLB_EXPERIMENTAL"
            status=1
        elif [ -n "$define" ] && [ "$seen" -lt 2 ]; then
            echo "FAIL: EPLB_EXPERIMENTAL does not show both measuring calls"
            status=1
        fi
    done
    echo "experimental guard checked with $EPLB_TEST_CC"
else
    echo "EPLB_TEST_CC unset: experimental guard not checked"
fi
[ "$status" -eq 0 ] && echo "PASS: the exported symbols are the documented ones"
exit "$status"
