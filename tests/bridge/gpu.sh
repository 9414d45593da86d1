#!/usr/bin/env bash
# hsbridge with device tensors, on one GPU machine: two brokers on the
# same host (A and B), `hsbridge serve` on A and `hsbridge connect` on B
# over loopback, a producer of CUDA tensors in A and a consumer in B that
# checks every byte, at 4 KiB, 1 MiB and 64 MiB; then ucx_perftest on the
# same link, the same sizes, for reference, and both brokers checked to
# hold nothing at the end. One command, within about 150 s:
#   bash tests/bridge/gpu.sh
# Summary: $OUT/bridge-gpu.txt (OUT default /tmp/hsb-gpu-out); every log
# in $OUT/bridge-gpu-logs.tgz (two files in all, for a tool that brings
# back only a few). Exit status 0 when every tensor arrived intact and in order,
# 1 on a content error or a missing tensor, 2 when something is missing.
#
# The GPU machine (Ubuntu 24.04) has no UCX: Debian 12's is carried in
# $UCX_DIR (default build-gpu/ucx, made by tests/bridge/carry-ucx.sh
# here), and found through LD_LIBRARY_PATH and UCX_MODULE_DIR. Where that
# folder is absent, the system's UCX is used.
#   BUILD_DIR (build-gpu)  DEVICE=cuda|cpu (cuda; cpu: the same run with
#   host tensors, which needs no GPU)  COUNTS="2000 300 32"  tensors per
#   size, timed after a warm-up of COUNT/4+8  UCX_TLS (tcp: as between two
#   hosts; unset it to let UCX choose)  UCX_DIR
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD_DIR:-build-gpu}
OUT=${OUT:-/tmp/hsb-gpu-out}
DEVICE=${DEVICE:-cuda}
UCX_DIR=${UCX_DIR:-$B/ucx}
read -r n4k n1m n64m <<<"${COUNTS:-2000 300 32}"
export UCX_TLS=${UCX_TLS-tcp} UCX_WARN_UNUSED_ENV_VARS=n
[[ -n $UCX_TLS ]] || unset UCX_TLS
mkdir -p "$OUT"
SUMMARY=$OUT/bridge-gpu.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
START=$SECONDS

if [[ -d $UCX_DIR/lib ]]; then
	UCX_DIR=$(cd "$UCX_DIR" && pwd)
	export LD_LIBRARY_PATH=$UCX_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	export UCX_MODULE_DIR=$UCX_DIR/lib/ucx
	export PATH=$UCX_DIR/bin:$PATH
fi
HSBRIDGE=$B/bridge/hsbridge HSBROKERD=$B/daemon/hsbrokerd HSCTL=$B/tools/hsctl
PROBE=$B/tests/bridge/hsb-devprobe
for p in "$HSBRIDGE" "$HSBROKERD" "$HSCTL" "$PROBE"; do
	[[ -x $p ]] || { say "missing $p: build $B with UCX (scripts/build-gpu.sh) and carry it"; exit 2; }
done

say "hsbridge device tensors, $(date -u +%FT%TZ), $(hostname), DEVICE=$DEVICE, UCX_TLS=${UCX_TLS:-unset, UCX chooses}"
[[ $DEVICE == cuda ]] && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$SUMMARY"
if ldd "$HSBRIDGE" | grep -q 'not found'; then
	say "hsbridge cannot start: $(ldd "$HSBRIDGE" | grep 'not found' | tr -s ' \t' ' ')"
	exit 2
fi
ldd "$HSBRIDGE" | grep -E 'libuc[pstm]|libnuma' | awk '{print "uses: " $1 " " $3}' | tee -a "$SUMMARY"

T=$(mktemp -d "${TMPDIR:-/tmp}/hsb-gpu.XXXXXX")
pids=()
cleanup() {
	kill "$watchdog" 2>/dev/null
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null
	tar czf "$OUT/bridge-gpu-logs.tgz" -C "$T" --exclude='*.sock' --exclude='*.ctl' . 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
# whatever hangs, the run ends within its budget (BUDGET_S, default 115, plus at most the
# 30 s of a command in the foreground)
trap 'say "out of time after $((SECONDS - START)) s: stopped"; exit 1' TERM
(sleep "${BUDGET_S:-115}" && kill -TERM $$) 2>/dev/null &
watchdog=$!
bg() { local name=$1; shift; "$@" >"$T/$name.log" 2>&1 & pids+=($!); }
wait_for() { # seconds, file, text
	local until=$((SECONDS + $1))
	until grep -q "$3" "$2" 2>/dev/null; do
		((SECONDS < until)) || { say "timeout waiting for '$3' in $2"; tail -n 20 "$2" >>"$SUMMARY"; return 1; }
		sleep 0.05
	done
}
port=$((20000 + $$ % 20000))
# slabs larger than the largest tensor, on both pools
bg broker_a "$HSBROKERD" --socket "$T/a.sock" --slab-size 256M --cuda-slab-size 256M
bg broker_b "$HSBROKERD" --socket "$T/b.sock" --slab-size 256M --cuda-slab-size 256M
for s in a b; do
	for _ in $(seq 100); do [[ -S $T/$s.sock ]] && break; sleep 0.05; done
done
bg serve "$HSBRIDGE" serve --socket "$T/a.sock" --listen "127.0.0.1:$port" --topic 'gpu/*' \
	--control "$T/serve.ctl"
wait_for 20 "$T/serve.log" "listening on" || exit 2
bg connect "$HSBRIDGE" connect --socket "$T/b.sock" --to "127.0.0.1:$port" --topic 'gpu/*' \
	--control "$T/connect.ctl"
wait_for 20 "$T/connect.log" "device tensors" || exit 2
grep -h "UCX" "$T/serve.log" | head -n 1 | sed 's/^/serve: /' | tee -a "$SUMMARY"

rc=0
say ""
say "| tensor | tensors | bridge tensors/s | bridge GB/s | content |"
say "| --- | ---: | ---: | ---: | --- |"
for spec in "4096 $n4k" "1048576 $n1m" "67108864 $n64m"; do
	read -r bytes count <<<"$spec"
	topic=gpu/$bytes warm=$((count / 4 + 8))
	last=$((1 + warm + count))
	bg "consume_$bytes" "$PROBE" consume "$T/b.sock" "$topic" "$last" "$warm" 15 "$DEVICE"
	wait_for 10 "$T/consume_$bytes.log" subscribed || { rc=1; continue; }
	# tensor 1 makes the topic in A; serve subscribes within 200 ms and
	# carries the rest
	"$PROBE" produce "$T/a.sock" "$topic" 1 1 "$bytes" "$DEVICE" >"$T/prime_$bytes.log" 2>&1
	wait_for 10 "$T/serve.log" "streaming topic $topic" || { rc=1; continue; }
	if ! timeout 30 "$PROBE" produce "$T/a.sock" "$topic" 2 "$last" "$bytes" "$DEVICE" \
		>"$T/produce_$bytes.log" 2>&1; then
		say "| $bytes | $count | producer failed: $(tail -n 1 "$T/produce_$bytes.log") | | |"
		rc=1
	fi
	if wait "${pids[-1]}"; then
		ok=intact
	else
		ok="**errors**"
		rc=1
	fi
	res=$(grep '^{' "$T/consume_$bytes.log" | tail -n 1)
	row=$(/usr/bin/env python3 -c "import json,sys; r=json.loads(sys.argv[1]);
print(f\"{r['tensors_per_s']} | {r['GB_per_s']} | {sys.argv[2]}: {r['received']} received, last {r['last']}, gaps {r['gaps']}, bad {r['bad']}\")" "$res" "$ok" 2>/dev/null ||
		echo "? | ? | $ok: $(tail -n 2 "$T/consume_$bytes.log" | tr '\n' ' ')")
	say "| $bytes | $count | $row |"
	echo "$res" >>"$T/results.jsonl"
	((SECONDS - START < 90)) || { say "time budget spent: the rest left out"; break; }
done

# ucx_perftest on the same link (host memory: Debian's UCX has no CUDA
# transports), as many messages in flight as the bridge's window (4)
if command -v ucx_perftest >/dev/null && ((SECONDS - START < 100)); then
	say ""
	say "ucx_perftest ucp_am_bw (host memory, -O 4), same link:"
	for spec in "4096 $n4k" "1048576 $n1m" "67108864 $n64m"; do
		read -r bytes count <<<"$spec"
		timeout 40 ucx_perftest -p $((port + 2)) >"$T/pt-server.log" 2>&1 &
		spid=$!
		sleep 0.3
		line=$(timeout 30 ucx_perftest 127.0.0.1 -p $((port + 2)) -t ucp_am_bw -s "$bytes" \
			-n "$count" -w $((count / 4 + 8)) -O 4 2>&1 | awk '/^Final:/ { print $7, $9 }')
		wait "$spid" 2>/dev/null
		read -r mbs msgs <<<"$line"
		say "  $bytes bytes: ${msgs:-?} msgs/s, $(python3 -c "print(round(${mbs:-0} * 1048576 / 1e9, 3))" 2>/dev/null) GB/s"
	done
	timeout 30 ucx_perftest -p $((port + 3)) >"$T/pt-server-lat.log" 2>&1 &
	spid=$!
	sleep 0.3
	lat=$(timeout 20 ucx_perftest 127.0.0.1 -p $((port + 3)) -t ucp_am_lat -s 4096 -n 10000 2>&1 |
		awk '/^Final:/ { print $3 }')
	wait "$spid" 2>/dev/null
	say "  ucp_am_lat 4096 bytes: ${lat:-?} us one way (p50)"
else
	say "ucx_perftest: not run (not found, or out of time)"
fi

say ""
for side in serve connect; do
	"$HSBRIDGE" stats --control "$T/$side.ctl" --json >"$T/stats_$side.log" 2>&1
	python3 -c "import json,sys; s=json.load(open(sys.argv[1]));
print(sys.argv[2] + ': ' + ', '.join(f'{k} {s.get(k)}' for k in ('ucx_cuda', 'slabs_registered', 'protocol_errors', 'peers_lost', 'emits_from_loop', 'emits_from_lanes', 'loop_sleeps', 'loop_cpu_us') if k in s))" \
		"$T/stats_$side.log" "$side" 2>/dev/null | tee -a "$SUMMARY"
done
grep -h "device tensor\|staged\|copy to" "$T/serve.log" "$T/connect.log" | grep -v "^hsbridge: UCX" | head -n 5 | sed 's/^/log: /' | tee -a "$SUMMARY"
kill -TERM "${pids[2]}" "${pids[3]}" 2>/dev/null
wait "${pids[2]}" || { say "hsbridge serve exited with $?"; rc=1; }
wait "${pids[3]}" || { say "hsbridge connect exited with $?"; rc=1; }
# nothing left in either broker once the bridges are gone
for s in a b; do
	left=$("$HSCTL" --socket "$T/$s.sock" ls --json 2>/dev/null | python3 -c "import json,sys; l=json.load(sys.stdin);
print(len(l['tensors']), sum(p['used'] for p in l['pools']))" 2>/dev/null)
	say "broker $s after the bridges stopped: ${left:-?} (tensors, pool bytes used)"
	[[ $left == "0 0" ]] || rc=1
done
say "elapsed $((SECONDS - START)) s; exit $rc"
exit $rc
