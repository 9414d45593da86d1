#!/bin/sh
# Runs `systemd-analyze verify` on the generated units, offline: no systemd
# as PID 1 is needed (--man=no: no man pages installed; --generators=no:
# generators need a running manager). ExecStart= is pointed at the built
# hsbrokerd because verify checks that the binary exists.
# usage: systemd-verify.sh SERVICE SOCKET HSBROKERD
set -eu
service=$1 socket=$2 daemon=$3
analyze=$(command -v systemd-analyze) || { echo "systemd-analyze not found (apt-get install systemd)" >&2; exit 1; }
[ -x "$daemon" ] || { echo "$daemon: not built" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/hs-verify.XXXXXX")
trap 'rm -rf "$dir"' EXIT
sed "s|^ExecStart=[^ ]*/hsbrokerd|ExecStart=$daemon|" "$service" > "$dir/hsbrokerd.service"
cp "$socket" "$dir/hsbrokerd.socket"
grep -q "^ExecStart=$daemon" "$dir/hsbrokerd.service" || { echo "no ExecStart=.../hsbrokerd in $service" >&2; exit 1; }
grep -q '^Type=notify' "$dir/hsbrokerd.service" || { echo "$service: not Type=notify" >&2; exit 1; }
grep -q '^ListenSequentialPacket=' "$dir/hsbrokerd.socket" || { echo "$socket: no ListenSequentialPacket=" >&2; exit 1; }

# verify prints warnings and still exits 0 for some of them; treat any
# output about our units as a failure so a typo in a directive is caught.
out=$("$analyze" verify --man=no --generators=no "$dir/hsbrokerd.socket" "$dir/hsbrokerd.service" 2>&1) || {
	printf '%s\n' "$out" >&2
	echo "systemd-analyze verify failed" >&2
	exit 1
}
if printf '%s\n' "$out" | grep -q 'hsbrokerd\.\(service\|socket\)'; then
	printf '%s\n' "$out" >&2
	echo "systemd-analyze verify reported problems in the units" >&2
	exit 1
fi
[ -z "$out" ] || printf '%s\n' "$out"
echo "systemd-analyze verify: OK"
