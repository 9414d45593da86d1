#!/bin/sh
# The 4 KiB device hand-off with the daemon and the clients spinning
# before they sleep (bench/NOTES.md, attempt 17), without and with MPS,
# each next to its floor. Run on the GPU machine from the repository
# root, carrying build-bench-gpu. Prints one JSON line per run.
set -u
B=${BUILD:-build-bench-gpu}
N=${ITERS:-3000}
T=$(mktemp -d)
one() { # label, extra env, socket
	echo "== $1"
	env $2 "$B/bench/hs-bench-handoff" --device cuda --size 4096 --iters "$N" \
		--socket "$3" | grep -o '"rt_p50_us": [0-9.]*\|"local_p50_us": [0-9.]*' | tr '\n' ' '
	echo
}
for mode in nomps mps; do
	if [ $mode = mps ]; then
		export CUDA_MPS_PIPE_DIRECTORY=$T/mps CUDA_MPS_LOG_DIRECTORY=$T/mpslog
		mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
		nvidia-cuda-mps-control -d
		sleep 1
	fi
	echo "# $mode"
	"$B/daemon/hsbrokerd" --socket "$T/a.sock" --log-level warn &
	A=$!
	"$B/daemon/hsbrokerd" --socket "$T/b.sock" --log-level warn --spin-us 50 &
	S=$!
	sleep 1
	echo "== floor"
	"$B/bench/hs-bench-floor" --device cuda --iters "$N" | grep -o '"rt_p50_us": [0-9.]*\|"local_p50_us": [0-9.]*' | tr '\n' ' '
	echo
	one "default" "" "$T/a.sock"
	one "daemon --spin-us 50" "" "$T/b.sock"
	one "daemon --spin-us 50, HSBROKER_SPIN_US=50" "HSBROKER_SPIN_US=50" "$T/b.sock"
	one "HSBROKER_SPIN_US=50 only" "HSBROKER_SPIN_US=50" "$T/a.sock"
	kill $A $S
	wait $A $S 2>/dev/null
	[ $mode = mps ] && echo quit | nvidia-cuda-mps-control
done
rm -rf "$T"
