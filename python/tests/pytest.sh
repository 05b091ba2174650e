#!/bin/sh
# make check's entry to the eplb_cl pytest suite. Skips (77) when the
# configured Python lacks numpy or pytest, unless EPLB_CL_REQUIRE_PYTHON=1
# (CI) makes that a failure.
PYTHON=${PYTHON:-python3}
if [ "$PYTHON" = : ] ||
   ! "$PYTHON" -c 'import numpy, pytest' > /dev/null 2>&1; then
    msg="Python tests not run: '$PYTHON' lacks numpy or pytest (Debian:"
    msg="$msg apt-get install python3-numpy python3-pytest; then re-run"
    msg="$msg ./configure, or PYTHON=/usr/bin/python3 ./configure)"
    echo "$msg" >&2
    [ "${EPLB_CL_REQUIRE_PYTHON:-0}" = 1 ] && exit 1
    exit 77
fi
here=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
# The source tree is read-only under make distcheck: no caches in it.
PYTHONDONTWRITEBYTECODE=1 exec "$PYTHON" -m pytest -p no:cacheprovider \
    -q -rs "$here"
