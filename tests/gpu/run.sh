#!/usr/bin/env bash
# The GPU tests on the machine with a GPU (../shared/gpu/README.md): run
# from the repository root with the static build carried along:
#   scripts/build-gpu.sh              # here: builds build-gpu/
#   bash tests/gpu/run.sh             # there (the device tool's command)
# First hs-ipc-probe (what legacy IPC allows, GPU pair by GPU pair). Then
# it starts hsbrokerd on sockets under /tmp (stopped by pid) and runs every
# case of hs-gpu-test, tests/gpu/py_gpu.py (PyTorch and CuPy consumers
# of the Python module) and tests/gpu/idiom.py (the idiom-* cases: is a
# block rewritten while a reader's kernels still run?; with two GPUs also
# idiom-cross, the tensors on GPU 1 and the readers on GPU 0) and
# hs-gpu-threads (threads sharing clients, device tensors) without MPS and
# then with MPS (started and stopped
# here, as gpu/README.md says), then compute-sanitizer (memcheck) over a
# producer and a consumer process when the toolkit has it. Writes
# $OUT/gpu-summary.txt (cases passed/failed, opens == slabs, with/without
# MPS) and logs under $OUT (default /tmp/hs-gpu-out). Exits non-zero if a
# case failed.
#   EXPORTS    the daemon's export modes (docs/gpu.md), each a whole pass
#              of the cases above: "ipc vmm" (default; --cuda-export ipc,
#              the legacy handles, then vmm, VMM allocations as fds), or
#              one of them. Cases of the vmm pass are labelled no-mps-vmm
#              and mps-vmm; every daemon of a pass gets --cuda-export
#              (those the cases start, through HS_TEST_DAEMON_ARGS). Each
#              pass also runs daemon-killed, pidns (root: the daemon and
#              the reader each in a PID namespace of its own) and ro-uid
#              (root, without MPS: the producer as uid 65533, the reader as
#              uid 65534). The sanitizer and interop steps run once, in the
#              first mode.
#   BUILD_DIR  the build to use (default: build-gpu)
#   CASES      an extended regex: only the cases whose "MODE NAME" matches
#              run (e.g. 'no-mps (python|threads)|^mps '); the sanitizer
#              and interop steps run only when it is unset
#   COUNT      tensors of the pipeline case (default: 10000)
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD_DIR:-build-gpu}
OUT=${OUT:-/tmp/hs-gpu-out}
COUNT=${COUNT:-10000}
EXPORTS=${EXPORTS:-ipc vmm}
mkdir -p "$OUT"
T=$B/tests/gpu/hs-gpu-test
D=$B/daemon/hsbrokerd
# the daemon of the cases that start their own (daemon-killed)
export HSBROKERD=$PWD/$D
SUMMARY=$OUT/gpu-summary.txt
LOG=$OUT/gpu-tests.log
DLOG=$OUT/hsbrokerd.log
: >"$SUMMARY" : >"$LOG" : >"$DLOG"
START=$SECONDS
passed=0 failed=0 skipped=0
dpid=

say() { echo "$*" | tee -a "$SUMMARY"; }

for f in "$T" "$D"; do
	[[ -x $f ]] || { say "missing $f: run scripts/build-gpu.sh first and carry $B"; exit 2; }
done

say "hsbroker GPU tests, $(date -u +%FT%TZ), $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$SUMMARY"

start_daemon() { # socket, args...
	local sock=$1
	shift
	rm -f "$sock"
	# shellcheck disable=SC2086 # word-split on purpose: options
	echo "== hsbrokerd --socket $sock $* ${HS_TEST_DAEMON_ARGS:-}" >>"$DLOG"
	# shellcheck disable=SC2086
	"$D" --socket "$sock" "$@" ${HS_TEST_DAEMON_ARGS:-} >>"$DLOG" 2>&1 &
	dpid=$!
	for _ in $(seq 100); do
		[[ -S $sock ]] && return 0
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	say "hsbrokerd did not start on $sock"
	return 1
}

stop_daemon() {
	[[ -n $dpid ]] || return 0
	kill -TERM "$dpid" 2>/dev/null
	wait "$dpid"
	local rc=$?
	((rc == 0)) || say "hsbrokerd (pid $dpid) exited with $rc"
	dpid=
	return $rc
}

run_case() { # mode, limit_s, case, args...
	local mode=$1 limit=$2 name=$3
	shift 3
	if [[ -n ${CASES:-} ]] && ! [[ "$mode $name" =~ $CASES ]]; then
		return
	fi
	# The device tool gives a command 10 minutes: leave room to clean up.
	if ((SECONDS - START > ${RUN_BUDGET_S:-520})); then
		failed=$((failed + 1))
		say "NOT RUN [$mode] $name: out of time"
		return
	fi
	echo "== [$mode] $name $* (socket $HSBROKER_SOCKET)" >>"$LOG"
	local t0=$SECONDS
	if [[ $name == ipc-probe ]]; then
		timeout -k 5 "$limit" "$B/tests/gpu/hs-ipc-probe" >"$OUT/case.log" 2>&1
	elif [[ $name == python ]]; then
		PYTHONPATH=$PWD/$B/python${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 \
			timeout -k 5 "$limit" python3 tests/gpu/py_gpu.py >"$OUT/case.log" 2>&1
	elif [[ $name == idiom || $name == idiom-cross ]]; then
		# its own daemon, with a pool smaller than the queue wants
		PYTHONPATH=$PWD/$B/python${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 \
			timeout -k 5 "$limit" python3 tests/gpu/idiom.py --daemon "$D" "$@" >"$OUT/case.log" 2>&1
	elif [[ $name == threads ]]; then
		timeout -k 5 "$limit" "$B/tests/gpu/hs-gpu-threads" -d cuda -s "$HSBROKER_SOCKET" "$@" \
			>"$OUT/case.log" 2>&1
	else
		timeout -k 5 "$limit" "$T" "$name" "$@" >"$OUT/case.log" 2>&1
	fi
	local rc=$?
	cat "$OUT/case.log" >>"$LOG"
	local res
	res=$(grep '^RESULT' "$OUT/case.log" | sed "s/^RESULT /[$mode] /")
	case $rc in
	0) passed=$((passed + 1)); say "PASS [$mode] $name ($((SECONDS - t0)) s)" ;;
	77) skipped=$((skipped + 1)); say "SKIP [$mode] $name: $(grep -m1 SKIP "$OUT/case.log")" ;;
	124|137) failed=$((failed + 1)); say "FAIL [$mode] $name: timed out after $limit s" ;;
	*) failed=$((failed + 1)); say "FAIL [$mode] $name (exit $rc): $(grep -v '^RESULT' "$OUT/case.log" | tail -3 | tr '\n' ' ')" ;;
	esac
	[[ -n $res ]] && echo "$res" | sed 's/^/    /' | tee -a "$SUMMARY"
	[[ $name == ipc-probe ]] && grep '^  ' "$OUT/case.log" | tee -a "$SUMMARY"
	rm -f "$OUT/case.log"
}

phase() { # mps mode (no-mps, mps), export mode (ipc, vmm)
	local mode=$1
	[[ $2 == ipc ]] || mode=$1-$2
	export HS_TEST_DAEMON_ARGS="--cuda-export $2"
	export HSBROKER_SOCKET=/tmp/hs-gpu-$mode.sock
	if start_daemon "$HSBROKER_SOCKET" --cuda-slab-size 64M --cuda-cap 32G; then
		run_case "$mode" 200 pipeline --count "$COUNT"
		run_case "$mode" 60 mapcache --count 600
		run_case "$mode" 120 fanout --count 2000
		run_case "$mode" 90 forward --count 2000
		run_case "$mode" 90 cross-gpu --count 1000
		run_case "$mode" 90 kill-consumer --count 400
		run_case "$mode" 90 kill-producer
		run_case "$mode" 90 python
		# Threads sharing clients with device tensors: release notes
		# from CUDA's host-function thread (tests/stress/threads.c).
		run_case "$mode" 90 threads -n 4 -k 1 -c 500 -t 60
		run_case "$mode" 90 threads -n 8 -k 3 -c 300 -t 60
		# The pools the cases left: one line per device (hsctl ls pools).
		"$B/tools/hsctl" --socket "$HSBROKER_SOCKET" ls pools 2>&1 | sed "s/^/    [$mode] hsctl: /" | tee -a "$SUMMARY"
		stop_daemon || failed=$((failed + 1))
	else
		failed=$((failed + 1))
	fi
	# Reuse safety wants a pool with no spare slab: two of 64 MiB.
	export HSBROKER_SOCKET=/tmp/hs-gpu-$mode-reuse.sock
	if start_daemon "$HSBROKER_SOCKET" --cuda-slab-size 64M --cuda-cap 128M; then
		run_case "$mode" 60 reuse --count 10
		run_case "$mode" 60 reuse-unsafe --count 10
		run_case "$mode" 60 idiom-c-default --count 10
		run_case "$mode" 60 idiom-c-dlpack --count 10
		stop_daemon || failed=$((failed + 1))
	else
		failed=$((failed + 1))
	fi
	# The daemon SIGKILLed while a consumer holds device tensors (its
	# own daemon, restarted on the same socket).
	HSBROKER_SOCKET= run_case "$mode" 90 daemon-killed
	# The Python idioms (tests/gpu/idiom.py): slow readers, an eager
	# rewriter, corrupted rounds per idiom; every case but the control 0.
	run_case "$mode" 240 idiom --rounds "${IDIOM_ROUNDS:-120}"
	# Two GPUs: the tensors on GPU 1, every library's reader working for GPU 0.
	if (($(nvidia-smi -L 2>/dev/null | grep -c '^GPU') >= 2)); then
		run_case "$mode" 180 idiom-cross --rounds "${IDIOM_ROUNDS:-120}" --writer-gpu 1 --reader-gpu 0
	fi
	# Export modes, last (a hang costs only the end of the budget): the
	# daemon and the reader each in a PID namespace of its own (VMM
	# works, legacy IPC works or fails clearly; pidns starts that daemon
	# itself), the reader of another uid (VMM: read-only).
	export HSBROKER_SOCKET=/tmp/hs-gpu-$mode-iso.sock
	if start_daemon "$HSBROKER_SOCKET" --cuda-slab-size 64M; then
		run_case "$mode" 60 pidns --count 50
		run_case "$mode" 60 ro-uid --count 50
		stop_daemon || failed=$((failed + 1))
	else
		failed=$((failed + 1))
	fi
}

HSBROKER_SOCKET=none run_case all 60 ipc-probe
for ex in $EXPORTS; do
	phase no-mps "$ex"
done

export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog
mkdir -p /tmp/mps /tmp/mpslog
if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d; then
	say "MPS started"
	for ex in $EXPORTS; do
		phase mps "$ex"
	done
	echo quit | nvidia-cuda-mps-control
	sleep 1
	cp /tmp/mpslog/control.log "$OUT/mps-control.log" 2>/dev/null
	unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
else
	say "FAIL: could not start MPS"
	failed=$((failed + 1))
fi

# The sanitizer and interop steps: once, in the first export mode.
first_export=${EXPORTS%% *}
export HS_TEST_DAEMON_ARGS="--cuda-export $first_export"
SAN=/usr/local/cuda/bin/compute-sanitizer
command -v compute-sanitizer >/dev/null && SAN=$(command -v compute-sanitizer)
if [[ -n ${CASES:-} ]]; then
	say "SKIP [sanitizer] and [interop]: CASES is set"
elif [[ -x $SAN ]]; then
	if ((SECONDS - START < 440)); then
		export HSBROKER_SOCKET=/tmp/hs-gpu-san.sock
		if start_daemon "$HSBROKER_SOCKET" --cuda-slab-size 64M --cuda-cap 8G; then
			t0=$SECONDS
			rm -rf /tmp/hs-san && mkdir -p /tmp/hs-san
			# A consumer process and a producer process, each under
			# memcheck as its own root process (one log each).
			san=("$SAN" --tool memcheck --error-exitcode 99)
			timeout -k 5 100 "${san[@]}" --log-file /tmp/hs-san/san.consumer.log \
				"$T" role-consumer --topic san --count 300 >/tmp/hs-san/consumer.out 2>&1 &
			cpid=$!
			timeout -k 5 100 "${san[@]}" --log-file /tmp/hs-san/san.producer.log \
				"$T" role-producer --topic san --count 300 >/tmp/hs-san/producer.out 2>&1
			prc=$?
			wait $cpid
			crc=$?
			rc=$((prc != 0 ? prc : crc))
			for f in /tmp/hs-san/*; do
				echo "== $f" >>"$OUT/sanitizer.log"
				cat "$f" >>"$OUT/sanitizer.log"
			done
			nproc_logs=$(ls /tmp/hs-san/san.*.log 2>/dev/null | wc -l)
			nclean=$(grep -l 'ERROR SUMMARY: 0 errors' /tmp/hs-san/san.*.log 2>/dev/null | wc -l)
			errs="$nclean of $nproc_logs process logs say 'ERROR SUMMARY: 0 errors'"
			if ((rc == 0 && nproc_logs == 2 && nclean == nproc_logs)); then
				passed=$((passed + 1))
				say "PASS [sanitizer] memcheck over a producer and a consumer process, 300 tensors ($((SECONDS - t0)) s): $errs"
			else
				failed=$((failed + 1))
				say "FAIL [sanitizer] memcheck (producer exit $prc, consumer exit $crc): $errs $(tail -3 "$OUT/sanitizer.log" | tr '\n' ' ')"
			fi
			stop_daemon || failed=$((failed + 1))
		fi
	else
		say "SKIP [sanitizer]: not enough time left in this run"
	fi
else
	say "SKIP [sanitizer]: compute-sanitizer not found"
fi

# Python interop matrix (5x5 + C<->Python) and examples/python, without
# and with MPS, own daemons and summary: tests/gpu/interop/run.sh.
if [[ -n ${CASES:-} ]]; then
	:
elif ((SECONDS - START < ${RUN_BUDGET_S:-520} - 200)); then
	t0=$SECONDS
	if OUT=$OUT BUILD_DIR=$B BUDGET_S=100 bash tests/gpu/interop/run.sh >>"$LOG" 2>&1; then
		passed=$((passed + 1)); say "PASS [interop] matrix and examples ($((SECONDS - t0)) s)"
	else
		failed=$((failed + 1)); say "FAIL [interop] matrix or examples ($((SECONDS - t0)) s)"
	fi
	grep -h '^PASS\|^FAIL\|^SKIP\|RESULT' "$OUT/interop-summary.txt" 2>/dev/null | sed 's/^/    /' | tee -a "$SUMMARY"
else
	say "SKIP [interop]: not enough time left in this run"
fi

say "opens == slabs: $(grep -h 'case=mapcache' "$SUMMARY" | grep -c 'ok=1') of $(grep -h 'case=mapcache' "$SUMMARY" | wc -l) mapcache runs"
for ex in $EXPORTS; do
	if [[ $ex == ipc ]]; then pat='\[(no-mps|mps)\] '; else pat="\\[(no-mps|mps)-$ex\\] "; fi
	say "  export $ex: opens == slabs in $(grep -hE "$pat.*case=mapcache" "$SUMMARY" | grep -c 'ok=1') of $(grep -hE "$pat.*case=mapcache" "$SUMMARY" | wc -l) mapcache runs; $(grep -cE "^PASS $pat" "$SUMMARY") cases passed, $(grep -cE "^FAIL $pat" "$SUMMARY") failed"
done
say "$passed passed, $failed failed, $skipped skipped ($((SECONDS - START)) s)"
((failed == 0))
