#!/bin/sh
echo "CUnit was not found by configure: install libcunit1-dev and re-run ./configure" >&2
exit 1
