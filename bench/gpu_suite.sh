#!/usr/bin/env bash
# One-call benchmark suite (issue 16, item 4): every GPU figure in one command, in under 9 minutes.
#
#   bash bench/gpu_suite.sh                        # a GPU machine: benches + emotiw run --profile full --device cuda
#   bash bench/gpu_suite.sh --quick --device cpu   # anywhere: the same parts on tiny sizes (tests/test_bench_suite.py)
#   bash bench/gpu_suite.sh --help                 # every option (emotiw_utils/bench_suite.py)
#
# Needs no virtual environment and no installation of the project: the suite runs with $PYTHON (default: the
# `python3` on the PATH, e.g. the GPU image's, which holds torch with CUDA), the repository on PYTHONPATH, and
# first installs the wheels shipped in .wheels/ (`make wheels` fetches them, bench/gpu_wheels.txt lists them) into
# the results folder with `pip install --no-index --no-deps --target`. Not a `venv --system-site-packages`:
# the GPU image's python3 is itself a venv (/opt/torch/.venv), and a venv made from one sees the base
# interpreter's site-packages, not torch.
# Results: runs/bench-suite/<date>-<mode>/suite.json and suite.md (also copied into $OUT when it is set, the
# output folder of this workplace's GPU tool). See bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
args=("$@")
if [ -n "${OUT:-}" ] && [ -d "${OUT}" ]; then
  args=(--copy-to "$OUT" "${args[@]}")
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m emotiw_utils.bench_suite "${args[@]}"
