#!/usr/bin/env bash
# Two brokers joined by hsbridge, end to end. Broker A, its producer and
# `hsbridge serve` run in one network namespace, broker B, its consumer and
# `hsbridge connect` in another, joined by a veth pair this test creates
# (10.231.0.1 and 10.231.0.2 exist only inside those namespaces). Without
# the right to create namespaces, everything runs over loopback instead.
# UCX is held to TCP (UCX_TLS=tcp), as between two hosts.
#   bridge-test.sh CASE
# CASE: stream | order | restart | refused | block | stall | policy | vanish |
#       corrupt-tensor | corrupt-control
# Environment: HSBRIDGE HSBROKERD HSCTL HSB_PROBE HSB_ROGUE HSB_DEVPROBE (the
# built programs);
# HSB_TEST_LOOPBACK=1 uses loopback even where namespaces could be made.
set -euo pipefail
case_=${1:?usage: bridge-test.sh CASE}
: "${HSBRIDGE:?}" "${HSBROKERD:?}" "${HSCTL:?}" "${HSB_PROBE:?}" "${HSB_ROGUE:?}" "${HSB_DEVPROBE:?}"
export UCX_TLS=tcp UCX_WARN_UNUSED_ENV_VARS=n

T=$(mktemp -d "${TMPDIR:-/tmp}/hsb-test.XXXXXX")
pids=()
# shellcheck source=tests/bridge/link.sh
source "$(dirname "$0")/link.sh"
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	hsb_link_down
	if ((rc != 0)); then
		for f in "$T"/*.log "$T"/*.out; do
			[[ -f $f ]] && { echo "---- $f"; tail -n 30 "$f"; }
		done
	fi
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---- the link ----
port=$((20000 + $$ % 20000))
# order: loopback, where UCX's TCP transport completes large transfers
# out of order most readily (on the veth pair it seldom does)
[[ $case_ == order ]] && HSB_TEST_LOOPBACK=1
hsb_link_up 10.231.0
stranger=127.0.0.2
[[ $addr_a == 127.0.0.1 ]] || stranger=10.231.0.99
echo "link: $link"

start() { # name, command... (in the background, output to $T/name.log)
	local name=$1
	shift
	"$@" >"$T/$name.log" 2>&1 &
	pids+=($!)
	eval "pid_$name=$!"
}

wait_for() { # seconds, description, command...
	local secs=$1 what=$2
	shift 2
	local until=$((SECONDS + secs))
	until "$@" 2>/dev/null; do
		((SECONDS < until)) || fail "waited ${secs}s for $what"
		sleep 0.1
	done
}

stat_of() { # control socket, python expression over the stats object s
	"$HSBRIDGE" stats --control "$1" --json |
		/usr/bin/python3 -c "import json,sys; s=json.load(sys.stdin); print($2)"
}
topic_tensors() { # control socket, topic
	stat_of "$1" "sum(t['tensors'] for t in s['topics'] if t['name']=='$2')"
}
at_least() { # n, command producing a number
	local n=$1 v
	shift
	v=$("$@") || return 1
	[[ $v =~ ^[0-9]+$ ]] && ((v >= n))
}

# The broker's view as hsctl prints it; a python expression over l.
ls_check() { # socket, expression
	"$HSCTL" --socket "$1" ls --json |
		/usr/bin/python3 -c "import json,sys; l=json.load(sys.stdin); sys.exit(0 if ($2) else 1)"
}
# The killed process has no session left, and no tensor says it owns it.
no_session_of() {
	ls_check "$1" "all(c['pid'] != $2 for c in l['clients'])
		and all(t['owner_pid'] != $2 for t in l['tensors'])"
}
# Nothing left: no tensor, every pool's bytes free again, no client but hsctl.
clean_broker() {
	ls_check "$1" "not l['tensors'] and all(p['used'] == 0 for p in l['pools'])
		and all(c['name'] == 'hsctl' for c in l['clients'])"
}

start broker_a "${in_a[@]}" "$HSBROKERD" --socket "$T/a.sock"
start broker_b "${in_b[@]}" "$HSBROKERD" --socket "$T/b.sock"
wait_for 10 "broker A" test -S "$T/a.sock"
wait_for 10 "broker B" test -S "$T/b.sock"

serve() { # extra options...
	start serve "${in_a[@]}" "$HSBRIDGE" serve --socket "$T/a.sock" \
		--listen "$addr_a:$port" --topic 'cam/*' --control "$T/serve.ctl" "$@"
	wait_for 20 "hsbridge serve's control socket" test -S "$T/serve.ctl"
}
connect() {
	start connect "${in_b[@]}" "$HSBRIDGE" connect --socket "$T/b.sock" \
		--to "$addr_a:$port" --topic 'cam/*' --control "$T/connect.ctl" --keepalive 1s "$@"
	wait_for 20 "hsbridge connect's control socket" test -S "$T/connect.ctl"
}
consumer() { # count, idle seconds, [gaps]
	start consumer "${in_b[@]}" "$HSB_PROBE" consume "$T/b.sock" cam/0 "$@"
	wait_for 10 "the consumer's subscription" grep -q subscribed "$T/consumer.log"
}
# The serve side subscribes to a topic once it exists in broker A (it
# looks every 200 ms), so tensor 1 makes the topic and the stream, checked
# from then on, starts at 2 once the bridge streams it.
producer() { # count, bytes, hz
	"${in_a[@]}" "$HSB_PROBE" produce "$T/a.sock" cam/0 1 "$2" >"$T/prime.log" 2>&1
	wait_for 20 "serve to stream cam/0" grep -q "streaming topic cam/0" "$T/serve.log"
	start producer "${in_a[@]}" "$HSB_PROBE" produce "$T/a.sock" cam/0 "$@" 2
}
ends_done() { # waits for producer and consumer
	wait "$pid_producer" || fail "producer failed"
	wait "$pid_consumer" || fail "consumer: $(tail -n 3 "$T/consumer.log")"
	cat "$T/consumer.log"
}
bridges_done() { # stops the bridges cleanly; both brokers end up empty
	kill -TERM "$pid_serve" "$pid_connect"
	wait "$pid_serve" || fail "hsbridge serve exited with $?"
	wait "$pid_connect" || fail "hsbridge connect exited with $?"
	wait_for 10 "broker A to hold nothing" clean_broker "$T/a.sock"
	wait_for 10 "broker B to hold nothing" clean_broker "$T/b.sock"
}
finish() { ends_done; bridges_done; }

case $case_ in
stream)
	# Content and order across the link, sizes on both sides of UCX's
	# eager/rendezvous switch; every tensor after the first carried.
	serve
	connect
	consumer 300 20
	producer 300 1048576 100
	finish
	grep -q "gaps 0 bad 0" "$T/consumer.log" || fail "gaps or bad tensors"
	;;
order)
	# Large tensors as fast as they go: several rendezvous transfers run
	# side by side and may complete in any order; they are emitted in the
	# sender's order all the same.
	# (hsb-devprobe: its producer copies prepared blocks, fast enough to
	# keep the window full of 64 MiB transfers)
	serve
	connect
	start consumer "${in_b[@]}" "$HSB_DEVPROBE" consume "$T/b.sock" cam/0 40 0 30 cpu
	wait_for 10 "the consumer's subscription" grep -q subscribed "$T/consumer.log"
	"${in_a[@]}" "$HSB_DEVPROBE" produce "$T/a.sock" cam/0 1 1 67108864 cpu >"$T/prime.log" 2>&1
	wait_for 20 "serve to stream cam/0" grep -q "streaming topic cam/0" "$T/serve.log"
	start producer "${in_a[@]}" "$HSB_DEVPROBE" produce "$T/a.sock" cam/0 2 40 67108864 cpu
	finish
	grep -q '"gaps": 0, "bad": 0' "$T/consumer.log" || fail "gaps or bad tensors"
	;;
restart)
	# SIGKILL each bridge mid-stream: its session's references end in its
	# broker, the other side notices, the stream comes back.
	serve
	connect
	consumer 800 30 gaps
	producer 800 65536 100
	wait_for 30 "tensors through the bridge" at_least 50 topic_tensors "$T/connect.ctl" cam/0
	kill -9 "$pid_connect"
	old=$pid_connect
	wait_for 10 "broker B to end the killed bridge's session" no_session_of "$T/b.sock" "$old"
	rm -f "$T/connect.ctl"
	connect
	wait_for 30 "the stream after connect's restart" at_least 30 topic_tensors "$T/connect.ctl" cam/0
	kill -9 "$pid_serve"
	old=$pid_serve
	wait_for 10 "broker A to end the killed bridge's session" no_session_of "$T/a.sock" "$old"
	wait_for 20 "connect to notice" at_least 1 stat_of "$T/connect.ctl" "s['peers_lost']"
	rm -f "$T/serve.ctl"
	serve
	wait_for 30 "the stream after serve's restart" at_least 30 topic_tensors "$T/serve.ctl" cam/0
	finish
	;;
refused)
	# A peer not on the allow-list is refused, and nothing crosses.
	serve --allow "$stranger/32"
	connect
	wait_for 20 "the refusal" at_least 1 stat_of "$T/serve.ctl" "s['peers_refused']"
	grep -q "refused: not on the allow-list" "$T/serve.log" || fail "no log line for the refusal"
	"${in_a[@]}" "$HSB_PROBE" produce "$T/a.sock" cam/0 20 4096 50 >"$T/producer.log" 2>&1 ||
		fail "producer failed"
	[[ $(stat_of "$T/serve.ctl" "s['peers_accepted']") == 0 ]] || fail "a peer was accepted"
	[[ $(stat_of "$T/connect.ctl" "len(s['topics'])") == 0 ]] || fail "tensors crossed"
	# and the same bridge lets an allowed peer in
	kill -TERM "$pid_serve"
	wait "$pid_serve" || true
	serve --allow "${addr_a%.*}.0/24"
	wait_for 30 "an allowed peer" at_least 1 stat_of "$T/serve.ctl" "s['peers_accepted']"
	consumer 100 20
	producer 100 4096 100
	finish
	;;
block)
	# A slow consumer behind the bridge, block policy on both brokers: the
	# receiver's full queue holds the credits back, the sender stands at a
	# full window, the producer is held back; nothing is lost.
	serve
	connect
	consumer 300 20 nogaps 3
	producer 300 65536 0
	ends_done
	grep -q "gaps 0 bad 0" "$T/consumer.log" || fail "tensors lost under the block policy"
	at_least 1 stat_of "$T/serve.ctl" "sum(t['credit_waits'] for t in s['topics'])" ||
		fail "the sender never waited for a credit"
	[[ $(stat_of "$T/serve.ctl" "sum(t['dropped'] for t in s['topics'])") == 0 ]] ||
		fail "the sender dropped under the block policy"
	bridges_done
	;;
stall)
	# Two topics through one pair of bridges; on B, cam/0's only consumer
	# takes one tensor and stalls (block policy, no block timeout), so
	# broker B holds cam/0's emits back. cam/1 must keep flowing, intact
	# and in order, while cam/0 stands still: each topic is emitted on its
	# own connection to broker B, so cam/0's held-back emits wait alone.
	serve
	connect
	start stalled "${in_b[@]}" "$HSB_PROBE" consume "$T/b.sock" cam/0 100 60 gaps 600000
	wait_for 10 "the stalled consumer's subscription" grep -q subscribed "$T/stalled.log"
	start consumer "${in_b[@]}" "$HSB_PROBE" consume "$T/b.sock" cam/1 400 30
	wait_for 10 "cam/1's consumer" grep -q subscribed "$T/consumer.log"
	for topic in cam/0 cam/1; do
		"${in_a[@]}" "$HSB_PROBE" produce "$T/a.sock" "$topic" 1 4096 >"$T/prime.log" 2>&1
		wait_for 20 "serve to stream $topic" grep -q "streaming topic $topic" "$T/serve.log"
	done
	# cam/0 first, as fast as it goes: by the time cam/1 starts, B holds
	# cam/0 back (its producer in A ends up held back too, by the chain)
	start stalled_producer "${in_a[@]}" "$HSB_PROBE" produce "$T/a.sock" cam/0 100 4096 0 2
	wait_for 30 "cam/0 to stand still" at_least 8 topic_tensors "$T/connect.ctl" cam/0
	sleep 1
	held=$(topic_tensors "$T/connect.ctl" cam/0)
	start producer "${in_a[@]}" "$HSB_PROBE" produce "$T/a.sock" cam/1 400 4096 200 2
	# (the consumer first: it gives up after 30 s without a tensor, where
	# a producer held back by the chain would wait for ever)
	wait "$pid_consumer" || fail "cam/1 did not flow past the stalled cam/0: $(tail -n 3 "$T/consumer.log")"
	wait "$pid_producer" || fail "cam/1's producer failed"
	cat "$T/consumer.log"
	grep -q "gaps 0 bad 0" "$T/consumer.log" || fail "gaps or bad tensors on cam/1"
	[[ $(topic_tensors "$T/connect.ctl" cam/0) -le $((held + 1)) ]] || fail "cam/0 was not held back"
	at_least 2 stat_of "$T/connect.ctl" "s['lanes']" || fail "the topics share a lane"
	# the stalled consumer goes: cam/0's held emits go through, and
	# both brokers end with nothing
	kill -9 "$pid_stalled" "$pid_stalled_producer"
	bridges_done
	;;
policy)
	# A slow consumer behind the bridge with drop-oldest at the sender:
	# the producer is never held back, drops are counted at the sender,
	# what arrives is intact and in order.
	serve --policy drop-oldest --depth 2
	connect --window 1
	consumer 400 20 gaps 5
	producer 400 262144 0
	wait "$pid_producer" || fail "producer failed"
	wait_for 30 "drops at the sender" at_least 1 stat_of "$T/serve.ctl" \
		"sum(t['dropped'] for t in s['topics'])"
	finish
	;;
vanish)
	# The link goes dead mid-stream (no FIN, no RST: a host gone): both
	# bridges notice through their heartbeats, serve releases what that
	# peer had, and once the link is back connect reconnects and the
	# stream resumes. Needs the namespaces (77: skipped).
	[[ -n $ns_a ]] || { echo "SKIP: needs network namespaces"; exit 77; }
	serve --heartbeat 1
	connect --heartbeat 1
	consumer 1500 60 gaps
	producer 1500 65536 100
	wait_for 30 "tensors through the bridge" at_least 50 topic_tensors "$T/connect.ctl" cam/0
	ip -n "$ns_a" link set "$veth_a" down
	wait_for 30 "connect to notice the silence" at_least 1 stat_of "$T/connect.ctl" "s['peers_lost']"
	wait_for 30 "serve to notice the silence" at_least 1 stat_of "$T/serve.ctl" "s['peers_lost']"
	grep -q "taken as gone" "$T/serve.log" || fail "no log line for the lost peer"
	ip -n "$ns_a" link set "$veth_a" up
	before=$(topic_tensors "$T/connect.ctl" cam/0)
	wait_for 60 "the stream after the link came back" at_least $((before + 30)) topic_tensors "$T/connect.ctl" cam/0
	finish
	;;
corrupt-tensor)
	# A fake serve sends bad tensor messages, one per connection: each
	# ends its connection with a log line, connect reconnects, and broker
	# B is left holding nothing.
	start rogue "${in_a[@]}" "$HSB_ROGUE" serve "$addr_a:$port"
	sleep 0.5
	connect --max-bytes 64K
	wait "$pid_rogue" || fail "a bad message did not end its connection"
	cat "$T/rogue.log"
	[[ $(stat_of "$T/connect.ctl" "s['protocol_errors']") == 5 ]] || fail "protocol errors not counted"
	grep -q "tensor larger than --max-bytes: closing the connection" "$T/connect.log" ||
		fail "no log line for the oversized tensor"
	kill -TERM "$pid_connect"
	wait "$pid_connect" || fail "hsbridge connect exited with $?"
	wait_for 10 "broker B to hold nothing" clean_broker "$T/b.sock"
	;;
corrupt-control)
	# A fake connect sends a bad hello, a credit never owed, a second
	# hello; serve ends each connection and still serves a real peer.
	serve
	start rogue "${in_b[@]}" "$HSB_ROGUE" connect "$addr_a:$port"
	wait "$pid_rogue" || fail "a bad message did not end its connection"
	cat "$T/rogue.log"
	[[ $(stat_of "$T/serve.ctl" "s['protocol_errors']") == 3 ]] || fail "protocol errors not counted"
	connect
	consumer 100 20
	producer 100 4096 100
	finish
	;;
*)
	fail "unknown case $case_"
	;;
esac
echo "OK $case_"
