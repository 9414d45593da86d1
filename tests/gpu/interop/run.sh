#!/usr/bin/env bash
# The Python GPU interop checks on the GPU machine (issue 4): the 5x5
# matrix plus C<->Python (interop.py) and the two examples/python
# pipelines, each against its own hsbrokerd from build-gpu; without MPS,
# then with MPS when there is time. Run from the repository root with
# build-gpu carried (scripts/build-gpu.sh here):
#   bash tests/gpu/interop/run.sh
# Writes $OUT/interop.md (the matrix without MPS; interop-mps.md with), $OUT/interop-summary.txt and
# $OUT/interop.log. Exit 0 when everything that ran passed.
#   BUILD_DIR  the build to use (default: build-gpu)
#   BUDGET_S   skip the MPS pass past this many seconds (default: 150)
set -uo pipefail
cd "$(dirname "$0")/../../.."
B=${BUILD_DIR:-build-gpu}
OUT=${OUT:-/tmp/hs-gpu-out}
mkdir -p "$OUT"
export OUT
SUM=$OUT/interop-summary.txt
LOG=$OUT/interop.log
: >"$SUM"
: >"$LOG"
START=$SECONDS
failed=0
export PYTHONPATH=$PWD/$B/python${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
unset HSBROKER_SOCKET  # each script starts its own daemon from $B

say() { echo "$*" | tee -a "$SUM"; }

one() { # mode, limit, name, command...
	local mode=$1 limit=$2 name=$3
	shift 3
	local t0=$SECONDS
	echo "== [$mode] $name: $*" >>"$LOG"
	timeout -k 5 "$limit" "$@" >"$OUT/one.log" 2>&1
	local rc=$?
	cat "$OUT/one.log" >>"$LOG"
	case $rc in
	0) say "PASS [$mode] $name ($((SECONDS - t0)) s): $(tail -1 "$OUT/one.log")" ;;
	77) say "SKIP [$mode] $name: $(grep -m1 SKIP "$OUT/one.log")" ;;
	*) failed=$((failed + 1)); say "FAIL [$mode] $name (exit $rc, $((SECONDS - t0)) s): $(tail -3 "$OUT/one.log" | tr '\n' ' ')" ;;
	esac
	rm -f "$OUT/one.log"
}

pass() { # mode
	local mode=$1 md=interop.md
	[[ $mode == no-mps ]] || md=interop-$mode.md
	one "$mode" 150 interop python3 tests/gpu/interop/interop.py --daemon "$B/daemon/hsbrokerd" \
		--gpu-test "$B/tests/gpu/hs-gpu-test" --count 10 --md "$md"
	grep -h '^| \*\*\|^- \|RESULT' "$OUT/$md" 2>/dev/null | sed "s/^/    [$mode] /" | tee -a "$SUM"
	one "$mode" 90 gain_pipeline python3 examples/python/gain_pipeline.py --daemon "$B/daemon/hsbrokerd"
	one "$mode" 90 torch_double python3 examples/python/torch_double.py --daemon "$B/daemon/hsbrokerd"
}

say "hsbroker Python GPU interop, $(date -u +%FT%TZ), $(hostname)"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$SUM"
python3 - <<'PY' 2>&1 | tee -a "$SUM"
import importlib
for m in ("torch", "cupy", "numba", "cuda.core", "cuda.bindings", "jax", "jaxlib", "numpy"):
    try:
        mod = importlib.import_module(m)
        print("lib: %s %s" % (m, getattr(mod, "__version__", "?")))
    except Exception as e:
        print("lib: %s missing (%s)" % (m, e))
PY
pass no-mps
if ((SECONDS - START < ${BUDGET_S:-150})) && command -v nvidia-cuda-mps-control >/dev/null; then
	export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-ix CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog-ix
	mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
	if nvidia-cuda-mps-control -d; then
		pass mps
		echo quit | nvidia-cuda-mps-control
		sleep 1
	else
		say "SKIP [mps]: could not start MPS"
	fi
	unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
else
	say "SKIP [mps]: not enough time left (or no MPS)"
fi
say "interop: $failed failed ($((SECONDS - START)) s)"
((failed == 0))
