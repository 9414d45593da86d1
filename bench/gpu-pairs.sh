#!/usr/bin/env bash
# Cross-GPU hand-off figures (issue 18), run on a machine with two or more
# GPUs from the repository root, the static build carried:
#   bash bench/gpu-pairs.sh            # BUILD_DIR (default build-gpu)
# For each pair (producer GPU, consumer GPU) of 0->0, 0->1 and 1->0 and
# each size of 4 KiB, 8 MiB and 256 MiB, one hs-bench-handoff run (the
# C -> C round trip: write on GPU P, emit with the stream, wait and read
# on a stream of GPU Q, release, ack), without and with MPS, all in this
# one run so that the pairs compare. Also records how the pair is linked
# (nvidia-smi topo -m) and whether CUDA reports peer access. Writes
# $OUT/pairs.jsonl (one JSON line per run, with "pair" and "mps" added)
# and $OUT/pairs.md (the table for BENCHMARKS.md).
#   EXPORTS: the daemon's export modes, each a whole set (default "ipc
#   vmm": --cuda-export, docs/gpu.md; rows get "export"); SIZES
#   (default "4K 8M 256M"); PAIRS (default "0,0 0,1 1,0")
#   ITERS (default 2000), WARMUP (default 200), PAIRS_BUDGET_S (default
#   150: runs not started by then are left out, so the device tool's
#   call ends in time)
set -uo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build-gpu}
OUT=${OUT:-/tmp/hs-pairs-out}
ITERS=${ITERS:-2000}
WARMUP=${WARMUP:-200}
BUDGET=${PAIRS_BUDGET_S:-150}
EXPORTS=${EXPORTS:-ipc vmm}
SIZES=${SIZES:-4K 8M 256M}
PAIRS=${PAIRS:-0,0 0,1 1,0}
mkdir -p "$OUT"
J=$OUT/pairs.jsonl
: >"$J"
H=$B/bench/hs-bench-handoff
D=$B/daemon/hsbrokerd
[[ -x $H && -x $D ]] || { echo "gpu-pairs: build $B first (scripts/build-gpu.sh)"; exit 2; }

ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if ((ngpu < 2)); then
	echo "SKIP: gpu-pairs needs two GPUs ($ngpu found)"
	exit 77
fi
nvidia-smi topo -m >"$OUT/topo.txt" 2>&1
nvidia-smi topo -p2p r >>"$OUT/topo.txt" 2>&1
"$B/tests/gpu/hs-ipc-probe" >"$OUT/ipc-probe.txt" 2>&1

dpid=
start_daemon() { # export mode
	rm -f /tmp/hs-pairs.sock
	"$D" --socket /tmp/hs-pairs.sock --cuda-slab-size 64M --cuda-cap 16G --cuda-export "$1" \
		>>"$OUT/hsbrokerd.log" 2>&1 &
	dpid=$!
	for _ in $(seq 100); do
		[[ -S /tmp/hs-pairs.sock ]] && return 0
		sleep 0.1
	done
	echo "gpu-pairs: hsbrokerd did not start"
	return 1
}
stop_daemon() {
	[[ -n $dpid ]] && kill -TERM "$dpid" && wait "$dpid"
	dpid=
}

run_all() { # mps
	for ex in $EXPORTS; do
		run_mode "$1" "$ex"
	done
}

run_mode() { # mps, export mode
	start_daemon "$2" || return 1
	for pair in $PAIRS; do
		for size in $SIZES; do
			it=$ITERS
			[[ $size == 256M ]] && it=$((ITERS / 4))
			if ((SECONDS > BUDGET)); then
				echo "{\"case\": \"hsbroker-c-cuda\", \"skipped\": \"out of time\", \"pair\": \"$pair\", \"mps\": $1, \"export\": \"$2\"}" | tee -a "$J"
				continue
			fi
			line=$(timeout -k 5 40 "$H" --device cuda --gpus "$pair" --size "$size" \
				--iters "$it" --warmup "$WARMUP" --socket /tmp/hs-pairs.sock \
				--daemon-pid "$dpid" 2>>"$OUT/errors.log" | tail -1)
			[[ -n $line ]] || line="{\"case\": \"hsbroker-c-cuda\", \"failed\": true}"
			echo "${line%\}}, \"pair\": \"$pair\", \"mps\": $1, \"export\": \"$2\"}" | tee -a "$J"
		done
	done
	stop_daemon
}

run_all false
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pairs CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog-pairs
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
if nvidia-cuda-mps-control -d; then
	run_all true
	echo quit | nvidia-cuda-mps-control
	sleep 1
fi

python3 - "$J" "$OUT/topo.txt" >"$OUT/pairs.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
topo = open(sys.argv[2]).read()
print("| pair (producer → consumer) | export | MPS | 4 KiB | 8 MiB | 256 MiB |")
print("| --- | --- | --- | ---: | ---: | ---: |")
sizes = {4096: "4 KiB", 8 << 20: "8 MiB", 256 << 20: "256 MiB"}
exports = [e for e in ("ipc", "vmm") if any(x.get("export", "ipc") == e for x in rows)]
for mps in (False, True):
    for ex in exports:
        for pair in ("0,0", "0,1", "1,0"):
            cells = []
            for size in sizes:
                r = [x for x in rows if x.get("pair") == pair and x.get("mps") == mps
                     and x.get("size") == size and x.get("export", "ipc") == ex]
                v = r[0].get("rt_p50_us") if r else None
                cells.append("%.1f µs" % v if isinstance(v, (int, float)) else "—")
            if all(c == "—" for c in cells):
                continue
            p, q = pair.split(",")
            print("| GPU %s → GPU %s | %s | %s | %s |" % (p, q, ex, "yes" if mps else "no",
                                                     " | ".join(cells)))
print()
print("Link between the GPUs (`nvidia-smi topo -m`):")
print()
print("```")
print(topo.strip())
print("```")
PY
cat "$OUT/pairs.md"
