#!/bin/sh
# Python -> Python against C -> C on the GPU machine (issue 13), as one
# device-tool call of about four minutes. Here (CPU machine):
#   scripts/build-gpu.sh                 # builds build-gpu/ (static deps, abi3 module)
# There, from the repository root, carrying build-gpu:
#   sh bench/gpu-python.sh
# Per MPS mode (without, then with; bench/py_vs_c.py starts and stops
# nvidia-cuda-mps-control and a daemon inside MPS): C -> C, Py -> Py doing
# the C program's GPU work (--flavor raw), Py -> Py through hsbroker.torch
# views (torchview), the idiomatic PyTorch consumer (torch) and
# torch.multiprocessing at 4 KiB, 8 MiB and 256 MiB, then py_costs.py
# (the binding's and PyTorch's steps one at a time). Writes results.md,
# results.json and py_vs_c.log under $OUT (default /tmp/hs-gpu-python).
# PY_BUDGET_S (default 240): no case starts after that many seconds, so the
# results are written inside the device call. Extra arguments go to
# py_vs_c.py (e.g. --iter-scale 0.5).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
OUT=${OUT:-/tmp/hs-gpu-python}
# The GPU machine's python3 has torch, CuPy and NumPy (gpu/README.md).
PY=${PY:-python3}
mkdir -p "$OUT"
[ -x "$BUILD/bench/hs-bench-handoff" ] || { echo "no $BUILD: run scripts/build-gpu.sh here first" >&2; exit 2; }
nvidia-smi -L 2>/dev/null || true
"$PY" bench/py_vs_c.py --build "$BUILD" --out "$OUT" --gpu on --mps both --host off \
	--budget-s "${PY_BUDGET_S:-240}" "$@" \
	>"$OUT/py_vs_c.log" 2>&1 && rc=0 || rc=$?
tail -n 40 "$OUT/py_vs_c.log"
exit $rc
