#!/usr/bin/env bash
# hsbridge against ucx_perftest on the same link, in the same run
# (BENCHMARKS.md, "hsbridge"). Two brokers, A and B, each in its own
# network namespace joined by a veth pair made here (root), else both on
# loopback; UCX held to TCP on both (UCX_TLS=tcp), as between two hosts.
#   throughput: hs-bench-bridge send in A -> serve A -> connect B -> recv
#               in B, at 4 KiB, 1 MiB and 64 MiB; ucx_perftest ucp_am_bw
#               at the same sizes
#   latency:    ping in A -> B, echo in B -> A (a bridge each way), half
#               the round trip; ucx_perftest ucp_am_lat (one-way)
# Prints a markdown table and writes the numbers as JSON.
#   BUILD_DIR (build)  OUT (bench/results/bridge.json)  LOOPBACK=1
#   COUNTS="5000 300 32"  tensors per size; PINGS=2000; WINDOW=4 (connect --window)
#   REPEAT=3  runs of each throughput figure (the best is shown)
#   LAT_REPEAT=1  rounds of the latency figures (the median is shown)
#   LATENCY_ONLY=1  only the latency figures; BRIDGE_ARGS: more options for
#   every hsbridge (e.g. "--busy-poll 50")
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build}
OUT=${OUT:-bench/results/bridge.json}
read -r n4k n1m n64m <<<"${COUNTS:-5000 300 32}"
PINGS=${PINGS:-2000}
HSBRIDGE=$B/bridge/hsbridge HSBROKERD=$B/daemon/hsbrokerd BENCH=$B/bench/hs-bench-bridge
for p in "$HSBRIDGE" "$HSBROKERD" "$BENCH"; do [[ -x $p ]] || { echo "$p: not built" >&2; exit 1; }; done
command -v ucx_perftest >/dev/null || { echo "ucx_perftest not found (apt-get install ucx-utils)" >&2; exit 1; }
export UCX_TLS=tcp UCX_WARN_UNUSED_ENV_VARS=n

T=$(mktemp -d "${TMPDIR:-/tmp}/hsb-bench.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	hsb_link_down
	rm -rf "$T"
}
trap cleanup EXIT
# shellcheck source=../tests/bridge/link.sh
source tests/bridge/link.sh
[[ ${LOOPBACK:-0} == 1 ]] && HSB_TEST_LOOPBACK=1
hsb_link_up 10.231.1
port=$((20000 + $$ % 20000))
bg() { local name=$1; shift; "$@" >"$T/$name.log" 2>&1 & pids+=($!); }
wait_file() { for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.05; done; echo "timeout: $1" >&2; cat "$1" >&2; exit 1; }

bg broker_a "${in_a[@]}" "$HSBROKERD" --socket "$T/a.sock"
bg broker_b "${in_b[@]}" "$HSBROKERD" --socket "$T/b.sock"
sleep 0.5
# A -> B carries bench/tput and bench/ping; B -> A carries bench/pong.
bg serve_a "${in_a[@]}" "$HSBRIDGE" serve --socket "$T/a.sock" --listen "$addr_a:$port" \
	--topic 'bench/tput' --topic 'bench/ping' ${BRIDGE_ARGS:-}
bg serve_b "${in_b[@]}" "$HSBRIDGE" serve --socket "$T/b.sock" --listen "$addr_b:$((port + 1))" \
	--topic 'bench/pong' ${BRIDGE_ARGS:-}
sleep 0.3
bg connect_b "${in_b[@]}" "$HSBRIDGE" connect --socket "$T/b.sock" --to "$addr_a:$port" \
	--topic 'bench/*' --window "${WINDOW:-4}" ${BRIDGE_ARGS:-}
bg connect_a "${in_a[@]}" "$HSBRIDGE" connect --socket "$T/a.sock" --to "$addr_b:$((port + 1))" \
	--topic 'bench/pong' ${BRIDGE_ARGS:-}

bridge_tput() { # bytes, count
	local warm=$(($2 / 4 + 12))
	bg recv "${in_b[@]}" "$BENCH" recv "$T/b.sock" bench/tput "$2" "$warm"
	local rpid=${pids[-1]}
	wait_file "$T/recv.log" subscribed
	# the topic exists in A once a tensor was emitted there; serve
	# subscribes within 200 ms
	"${in_a[@]}" "$BENCH" send "$T/a.sock" bench/tput 1 "$1" >/dev/null
	wait_file "$T/serve_a.log" "streaming topic bench/tput"
	# one sender for the warm-up (not timed: fresh pages mapped in on
	# both ends, pools grown to their working set) and the timed tensors,
	# as a long-lived producer would be
	"${in_a[@]}" "$BENCH" send "$T/a.sock" bench/tput $(($2 + warm)) "$1" >/dev/null
	wait "$rpid"
	tail -n 1 "$T/recv.log"
}
perftest() { # test, bytes, iterations, [warm-up [options...]] -> the "Final:" fields
	"${in_a[@]}" ucx_perftest -p $((port + 2)) >"$T/pt-server.log" 2>&1 &
	local spid=$!
	sleep 0.3
	"${in_b[@]}" ucx_perftest "$addr_a" -p $((port + 2)) -t "$1" -s "$2" -n "$3" -w "${4:-$(($3 / 10 + 1))}" "${@:5}" 2>&1 |
		awk '/^Final:/ { print $3, $4, $7 }'
	wait "$spid" || true
}

# The machine is shared: each figure is the best of $REPEAT runs, the
# bridge's and ucx_perftest's taken in turn so that both see the same load;
# the ratio is the median over those back-to-back pairs.
REPEAT=${REPEAT:-3}
best() { python3 -c "import sys; print(max(float(x) for x in sys.argv[1:]))" "$@"; }
rows=()
json="{\"link\": \"$link\", \"ucx\": \"$(ucx_info -v | awk '/^# Version/ {print $3; exit}')\", \"repeat\": $REPEAT, \"sizes\": ["
sizes=("4096 $n4k" "1048576 $n1m" "67108864 $n64m")
[[ ${LATENCY_ONLY:-0} == 1 ]] && sizes=()
for spec in "${sizes[@]}"; do
	read -r bytes count <<<"$spec"
	tps_all=() gbs_all=() pgbs_all=()
	for _ in $(seq "$REPEAT"); do
		b=$(bridge_tput "$bytes" "$count")
		tps_all+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['tensors_per_s'])" "$b")")
		gbs_all+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['GB_per_s'])" "$b")")
		# as many messages as the bridge's timed run, after as many
		# warm-up messages as its warm-up, as many in flight as its
		# window (-O; ucx_perftest's default is 1)
		read -r _ _ mbs <<<"$(perftest ucp_am_bw "$bytes" "$count" $((count / 4 + 12)) -O "${WINDOW:-4}")"
		pgbs_all+=("$(python3 -c "print(round($mbs * 1048576 / 1e9, 4))")")
	done
	tps=$(best "${tps_all[@]}") gbs=$(best "${gbs_all[@]}") pgbs=$(best "${pgbs_all[@]}")
	prate=$(python3 -c "print(round($pgbs * 1e9 / $bytes, 1))")
	# the ratio of each run to the ucx_perftest run right after it, median
	ratio=$(python3 -c "import statistics, sys; b, p = sys.argv[1].split(), sys.argv[2].split();
print(round(statistics.median(float(x) / float(y) for x, y in zip(b, p)), 2))" "${gbs_all[*]}" "${pgbs_all[*]}")
	rows+=("| $bytes | $count | $tps | $gbs | $prate | $pgbs | $ratio |")
	json+="{\"bytes\": $bytes, \"bridge_tensors_per_s\": [$(IFS=,; echo "${tps_all[*]}")], \"bridge_GB_per_s\": [$(IFS=,; echo "${gbs_all[*]}")], \"perftest_GB_per_s\": [$(IFS=,; echo "${pgbs_all[*]}")]},"
done
bg echo "${in_b[@]}" "$BENCH" echo "$T/b.sock" 0
wait_file "$T/echo.log" subscribed
bg echo_local "${in_a[@]}" "$BENCH" echo "$T/a.sock" 0 local
wait_file "$T/echo_local.log" subscribed
# what the four bridges (two pairs) spend per ping: CPU time and sleeps
# (voluntary context switches), every thread counted, from the kernel's
# own accounting (/proc/PID/task/*/schedstat and status)
bridge_pids=("${pids[2]}" "${pids[3]}" "${pids[4]}" "${pids[5]}")
proc_snap() { # pids... -> "cpu_ns sleeps"
	local pid t
	for pid; do
		for t in /proc/"$pid"/task/*; do
			echo "$(cut -d' ' -f1 "$t/schedstat") $(awk '/^voluntary_ctxt/ {print $2}' "$t/status")"
		done
	done | awk '{ c += $1; v += $2 } END { print c + 0, v + 0 }'
}
# Latency: LAT_REPEAT rounds, each the bridged ping (PINGS round trips, its
# p50), ucx_perftest's one-way and the same ping on broker A alone (the
# local hand-offs), back to back so that each round sees one load.
lat=()
for _ in $(seq "${LAT_REPEAT:-1}"); do
	read -r cpu0 sl0 <<<"$(proc_snap "${bridge_pids[@]}")"
	ping=$("${in_a[@]}" "$BENCH" ping "$T/a.sock" "$PINGS" 4096)
	read -r cpu1 sl1 <<<"$(proc_snap "${bridge_pids[@]}")"
	read -r lat50 latavg _ <<<"$(perftest ucp_am_lat 4096 $((PINGS * 5)))"
	local_ping=$("${in_a[@]}" "$BENCH" ping "$T/a.sock" "$PINGS" 4096 local)
	# per tensor carried (each round trip crosses two bridge pairs)
	lat+=("$(python3 -c "import json, sys; p, l = json.loads(sys.argv[1]), json.loads(sys.argv[2])
c0, c1, s0, s1, n, lat50, latavg = map(float, sys.argv[3:])
print(json.dumps({'one_way_us': p['rtt_p50_us'] / 2, 'local_one_way_us': l['rtt_p50_us'] / 2,
	'perftest_one_way_us': lat50, 'perftest_mean_us': latavg,
	'pair_cpu_us_per_tensor': round((c1 - c0) / 1e3 / (2 * n), 1),
	'pair_sleeps_per_tensor': round((s1 - s0) / (2 * n), 2), 'ping': p, 'local_ping': l}))" \
		"$ping" "$local_ping" "$cpu0" "$cpu1" "$sl0" "$sl1" "$PINGS" "$lat50" "$latavg")")
done
latency="[$(IFS=,; echo "${lat[*]}")]"
json="${json%,}], \"latency_4k\": $latency}"
mkdir -p "$(dirname "$OUT")"
printf '%s\n' "$json" >"$OUT"

echo "link: $link, UCX_TLS=tcp"
echo "best of $REPEAT runs each"
echo "| bytes | tensors | bridge tensors/s | bridge GB/s | ucx_perftest msgs/s | ucx_perftest GB/s | bridge / perftest (median of pairs) |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
python3 - "$latency" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, statistics as st, sys
rounds, load = json.loads(sys.argv[1]), sys.argv[2]
med = lambda k: st.median(r[k] for r in rounds)
one, local, pt = med('one_way_us'), med('local_one_way_us'), med('perftest_one_way_us')
floor = st.median(2 * r['local_one_way_us'] + r['perftest_one_way_us'] for r in rounds)
ratio = st.median(r['one_way_us'] / (2 * r['local_one_way_us'] + r['perftest_one_way_us']) for r in rounds)
print(f"\n4 KiB one-way latency, p50, median of {len(rounds)} rounds (load average {load}):")
each = ', '.join('%.0f' % r['one_way_us'] for r in rounds)
print(f"  through the bridge {one:.1f} µs (rounds: {each})")
print(f"  ucx_perftest ucp_am_lat {pt:.1f} µs ({one / pt:.1f}x)")
print(f"  one local hand-off on broker A alone {local:.1f} µs")
print(f"  floor (two local hand-offs + one ucx_perftest one-way) {floor:.1f} µs;"
      f" the bridge / the floor, median of rounds: {ratio:.2f}")
print(f"  one serve + connect pair per tensor: {med('pair_cpu_us_per_tensor'):.1f} µs of CPU,"
      f" {med('pair_sleeps_per_tensor'):.2f} sleeps (both processes, every thread)")
PY
echo "raw: $OUT"
