#!/bin/sh
# Writes a C file holding each .cl file given as a NUL-terminated byte array
# with its length, and a table the library looks kernels up in by name.
set -e
echo "/* Generated from the cl/ kernel files by build-aux/embed-cl.sh: do not edit. */"
echo "#include <stddef.h>"
echo "#include \"opencl/sources.h\""
i=0
for f in "$@"; do
  echo "static const char ocl_src_$i[] = {"
  od -An -v -tx1 "$f" | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'
  echo "0x00};"
  i=$((i + 1))
done
echo "const struct ocl_embedded_source ocl_embedded_sources[] = {"
i=0
for f in "$@"; do
  echo "  {\"$(basename "$f")\", ocl_src_$i, sizeof ocl_src_$i - 1},"
  i=$((i + 1))
done
echo "  {NULL, NULL, 0}"
echo "};"
