#!/usr/bin/env bash
# The demo: builds hsbroker (scripts/setup.sh), starts hsbrokerd on a
# private socket, streams tensors from the C example producer to the C
# example consumer (separate processes, shared memory, every element
# checked), and shows `hsctl ls` while they flow.
#   COUNT  tensors to stream (default 2000)    RATE  per second (default 200)
#   BUILD_DIR  build folder (default: build)
#   DEMO_SKIP_SETUP=1  use the build as it is (the meson test 'demo' does)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
COUNT=${COUNT:-2000}
RATE=${RATE:-200}
export BUILD_DIR

if [[ ${DEMO_SKIP_SETUP:-0} != 1 ]]; then
	echo "== setup and build"
	./scripts/setup.sh || { echo "demo: the build failed" >&2; exit 1; }
fi

B=$BUILD_DIR
daemon=$B/daemon/hsbrokerd
hsctl=$B/tools/hsctl
producer=$B/examples/c/hs-example-producer
consumer=$B/examples/c/hs-example-consumer
for p in "$daemon" "$hsctl" "$producer" "$consumer"; do
	[[ -x $p ]] || { echo "demo: $p was not built" >&2; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/hsbroker-demo.XXXXXX")
sock=$dir/hsbroker.sock
dpid= ppid= cpid=
cleanup() {
	for p in $ppid $cpid $dpid; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

echo "== hsbrokerd --socket $sock"
"$daemon" --socket "$sock" 2>"$dir/hsbrokerd.log" &
dpid=$!
for _ in $(seq 1 200); do
	"$hsctl" --socket "$sock" status >/dev/null 2>&1 && break
	kill -0 "$dpid" 2>/dev/null || { cat "$dir/hsbrokerd.log" >&2; echo "demo: hsbrokerd exited" >&2; exit 1; }
	sleep 0.05
done
"$hsctl" --socket "$sock" status

echo "== hs-example-consumer and hs-example-producer: $COUNT tensors at $RATE/s"
"$consumer" --socket "$sock" --count "$COUNT" >"$dir/consumer.out" 2>"$dir/consumer.err" &
cpid=$!
# the producer waits for its subscriber, so nothing is emitted into the void
"$producer" --socket "$sock" --count "$COUNT" --rate "$RATE" --wait-subscribers 1 \
	>"$dir/producer.out" 2>"$dir/producer.err" &
ppid=$!

shown=0
while kill -0 "$ppid" 2>/dev/null && ((shown < 3)); do
	sleep 1.5
	kill -0 "$ppid" 2>/dev/null || break
	echo
	echo "== hsctl ls (while tensors flow)"
	"$hsctl" --socket "$sock" ls || true
	shown=$((shown + 1))
done

rc=0
wait "$ppid" || { rc=$?; echo "demo: the producer failed ($rc):" >&2; cat "$dir/producer.err" >&2; }
ppid=
wait "$cpid" || { rc=$?; echo "demo: the consumer failed ($rc):" >&2; cat "$dir/consumer.err" >&2; }
cpid=

echo
echo "== hsctl ls pools (after both exited: every block back in the pool)"
"$hsctl" --socket "$sock" ls pools

echo
echo "== consumer: $(cat "$dir/consumer.out")"
kill -TERM "$dpid"
wait "$dpid" || { rc=$?; echo "demo: hsbrokerd exited with $rc:" >&2; tail -20 "$dir/hsbrokerd.log" >&2; }
dpid=
[[ -e $sock ]] && { echo "demo: hsbrokerd left its socket behind" >&2; rc=1; }
grep -q "received $COUNT tensors, 0 mismatches" "$dir/consumer.out" || rc=1
if ((rc)); then
	echo "demo: FAILED" >&2
	exit 1
fi
echo "demo: OK"
