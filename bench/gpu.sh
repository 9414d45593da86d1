#!/bin/sh
# The benchmark suite on the GPU machine, as one device-tool call.
#
# Here (CPU machine), build with everything static, so the binaries and
# the abi3 Python module run on the GPU machine's newer Ubuntu as they are:
#   meson setup build-bench-gpu --buildtype=release -Dstatic_deps=true \
#         -Dsystemd=disabled -Dtests=disabled
#   ninja -C build-bench-gpu
# Then run this script through the device tool, carrying build-bench-gpu;
# it writes results.md, results.json (and latency.png where matplotlib is)
# under $OUT. Host rows, GPU rows without MPS, then GPU rows under MPS
# (run.py starts and stops nvidia-cuda-mps-control, and a second
# hsbrokerd inside MPS). One repeat by default, to stay inside the
# device tool's 10 minutes a command; extra arguments go to run.py.
set -eu
BUILD=${BUILD:-build-bench-gpu}
OUT=${OUT:-bench/results/gpu}
# The GPU machine's python3 is the one with torch, CuPy and NumPy (its
# /usr/bin/python3 has none of them); here it is Debian's.
PY=${PY:-python3}
nvidia-smi -L 2>/dev/null || true
exec "$PY" bench/run.py --build "$BUILD" --out "$OUT" --gpu on --mps both --repeat 1 "$@"
