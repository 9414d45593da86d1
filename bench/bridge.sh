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
ns_a= ns_b=
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[[ -n $ns_a ]] && ip netns del "$ns_a"
	[[ -n $ns_b ]] && ip netns del "$ns_b"
	rm -rf "$T"
}
trap cleanup EXIT
if [[ ${LOOPBACK:-0} != 1 && $(id -u) -eq 0 ]] && ip netns add "hsbA$$" 2>/dev/null; then
	ns_a=hsbA$$ ns_b=hsbB$$
	ip netns add "$ns_b"
	ip link add "hva$$" type veth peer name "hvb$$"
	ip link set "hva$$" netns "$ns_a"
	ip link set "hvb$$" netns "$ns_b"
	ip -n "$ns_a" addr add 10.231.1.1/24 dev "hva$$"
	ip -n "$ns_b" addr add 10.231.1.2/24 dev "hvb$$"
	for n in "$ns_a" "$ns_b"; do ip -n "$n" link set lo up; done
	ip -n "$ns_a" link set "hva$$" up
	ip -n "$ns_b" link set "hvb$$" up
	in_a=(ip netns exec "$ns_a") in_b=(ip netns exec "$ns_b")
	addr_a=10.231.1.1 addr_b=10.231.1.2 link="veth between two network namespaces"
else
	in_a=() in_b=()
	addr_a=127.0.0.1 addr_b=127.0.0.1 link="loopback"
fi
port=$((20000 + $$ % 20000))
bg() { local name=$1; shift; "$@" >"$T/$name.log" 2>&1 & pids+=($!); }
wait_file() { for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.05; done; echo "timeout: $1" >&2; cat "$1" >&2; exit 1; }

bg broker_a "${in_a[@]}" "$HSBROKERD" --socket "$T/a.sock"
bg broker_b "${in_b[@]}" "$HSBROKERD" --socket "$T/b.sock"
sleep 0.5
# A -> B carries bench/tput and bench/ping; B -> A carries bench/pong.
bg serve_a "${in_a[@]}" "$HSBRIDGE" serve --socket "$T/a.sock" --listen "$addr_a:$port" \
	--topic 'bench/tput' --topic 'bench/ping'
bg serve_b "${in_b[@]}" "$HSBRIDGE" serve --socket "$T/b.sock" --listen "$addr_b:$((port + 1))" \
	--topic 'bench/pong'
sleep 0.3
bg connect_b "${in_b[@]}" "$HSBRIDGE" connect --socket "$T/b.sock" --to "$addr_a:$port" \
	--topic 'bench/*' --window "${WINDOW:-4}"
bg connect_a "${in_a[@]}" "$HSBRIDGE" connect --socket "$T/a.sock" --to "$addr_b:$((port + 1))" \
	--topic 'bench/pong'

stream() { # bytes, count: one timed run of count tensors
	bg recv "${in_b[@]}" "$BENCH" recv "$T/b.sock" bench/tput "$2"
	local rpid=${pids[-1]}
	wait_file "$T/recv.log" subscribed
	"${in_a[@]}" "$BENCH" send "$T/a.sock" bench/tput "$2" "$1" >/dev/null
	wait "$rpid"
	tail -n 1 "$T/recv.log"
}
bridge_tput() { # bytes, count
	# the topic exists in A once a tensor was emitted there; serve
	# subscribes within 200 ms
	"${in_a[@]}" "$BENCH" send "$T/a.sock" bench/tput 1 "$1" >/dev/null
	wait_file "$T/serve_a.log" "streaming topic bench/tput"
	# a first run, not counted, grows both pools to their working set
	# (fresh slabs are page-faulted in once, then reused)
	stream "$1" $(($2 / 4 + 12)) >/dev/null
	stream "$1" "$2"
}
perftest() { # test, bytes, iterations -> the "Final:" fields
	"${in_a[@]}" ucx_perftest -p $((port + 2)) >"$T/pt-server.log" 2>&1 &
	local spid=$!
	sleep 0.3
	"${in_b[@]}" ucx_perftest "$addr_a" -p $((port + 2)) -t "$1" -s "$2" -n "$3" -w $(($3 / 10 + 1)) 2>&1 |
		awk '/^Final:/ { print $3, $4, $7 }'
	wait "$spid" || true
}

rows=()
json="{\"link\": \"$link\", \"ucx\": \"$(ucx_info -v | awk '/version/ {print $4; exit}')\", \"sizes\": ["
for spec in "4096 $n4k" "1048576 $n1m" "67108864 $n64m"; do
	read -r bytes count <<<"$spec"
	b=$(bridge_tput "$bytes" "$count")
	tps=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['tensors_per_s'])" "$b")
	gbs=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['GB_per_s'])" "$b")
	iters=$((count * 2 > 20 ? count * 2 : 20))
	read -r _ _ mbs <<<"$(perftest ucp_am_bw "$bytes" "$iters")"
	pgbs=$(python3 -c "print(round($mbs * 1048576 / 1e9, 4))")
	prate=$(python3 -c "print(round($mbs * 1048576 / $bytes, 1))")
	ratio=$(python3 -c "print(round($gbs / $pgbs, 2) if $pgbs else 0)")
	rows+=("| $bytes | $count | $tps | $gbs | $prate | $pgbs | $ratio |")
	json+="{\"bytes\": $bytes, \"bridge\": $b, \"perftest_GB_per_s\": $pgbs, \"perftest_msgs_per_s\": $prate},"
done
bg echo "${in_b[@]}" "$BENCH" echo "$T/b.sock" 0
wait_file "$T/echo.log" subscribed
ping=$("${in_a[@]}" "$BENCH" ping "$T/a.sock" "$PINGS" 4096)
read -r lat50 latavg _ <<<"$(perftest ucp_am_lat 4096 $((PINGS * 5)))"
json="${json%,}], \"ping_4k\": $ping, \"perftest_am_lat_4k_us\": {\"p50\": $lat50, \"mean\": $latavg}}"
mkdir -p "$(dirname "$OUT")"
printf '%s\n' "$json" >"$OUT"

echo "link: $link, UCX_TLS=tcp"
echo "| bytes | tensors | bridge tensors/s | bridge GB/s | ucx_perftest msgs/s | ucx_perftest GB/s | bridge / perftest |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
python3 - "$ping" "$lat50" "$latavg" <<'PY'
import json, sys
p = json.loads(sys.argv[1]); lat50, latavg = float(sys.argv[2]), float(sys.argv[3])
print(f"\n4 KiB one-way latency: bridge {p['rtt_p50_us']/2:.1f} µs p50 (half of a {p['rtt_p50_us']:.1f} µs"
      f" round trip: a bridge pair each way, four broker hand-offs), ucx_perftest ucp_am_lat"
      f" {lat50:.1f} µs p50: {p['rtt_p50_us']/2/lat50:.1f}x")
PY
echo "raw: $OUT"
