#!/usr/bin/env bash
# Download the wheels that bench/gpu_suite.sh installs on the GPU machine (no registry is reachable there):
# every package of bench/gpu_wheels.txt, binary only, no dependencies (the list is the closure), into .wheels/
# (git-ignored), then print the size of what travels to that machine: the working tree plus the wheels
# (at most 64 MiB).
#
#   bash bench/fetch_wheels.sh            # CPython 3.12, Linux x86_64 (`make wheels`)
#   WHEELS_PY=3.11 bash bench/fetch_wheels.sh
#
# Platform assumed: Linux x86_64, glibc >= 2.28 (manylinux_2_28 and older tags), CPython 3.12: the python3 of
# this workplace's H200 image is 3.12.3 (/work/.library/device/KINDS.md, read in sessions of 2026-11). Wheels of
# pure-Python and abi3 packages work on either version; cffi, rpds-py and pyzmq are built per version.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
PYV="${WHEELS_PY:-3.12}"
DEST="${WHEELS_DIR:-.wheels}"
mkdir -p "$DEST"
rm -f "$DEST"/*.whl   # one version of each package: two would stop the install
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_24_x86_64 \
           manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --abi "cp${PYV/./}" "${platforms[@]}" -d "$DEST" -r bench/gpu_wheels.txt
wheels=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | awk '$2 == "total" {s += $1} END {print s + 0}')
n=$(ls "$DEST"/*.whl | wc -l)
awk -v w="$wheels" -v t="$tree" -v n="$n" -v d="$DEST" -v v="$PYV" 'BEGIN {
  m = 1048576
  printf "%d wheels (CPython %s, Linux x86_64) in %s: %.1f MiB\n", n, v, d, w / m
  printf "working tree (tracked + untracked, not ignored): %.1f MiB\n", t / m
  printf "together: %.1f MiB of the 64 MiB that travel to the GPU machine%s\n", (w + t) / m, (w + t > 64 * m ? "  ** OVER **" : "")
  exit (w + t > 64 * m)
}'
