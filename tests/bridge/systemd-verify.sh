#!/bin/sh
# `systemd-analyze verify` on hsbridge@.service, offline, as
# tests/integration/systemd-verify.sh does for the daemon's units: an
# instance of the template beside the broker's socket unit it requires,
# ExecStart= pointed at the built hsbridge (verify checks it exists).
# usage: systemd-verify.sh TEMPLATE BROKER_SOCKET_UNIT HSBRIDGE
set -eu
template=$1 socket=$2 bridge=$3
analyze=$(command -v systemd-analyze) || { echo "systemd-analyze not found (apt-get install systemd)" >&2; exit 1; }
[ -x "$bridge" ] || { echo "$bridge: not built" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/hsb-verify.XXXXXX")
trap 'rm -rf "$dir"' EXIT
sed "s|^ExecStart=[^ ]*/hsbridge |ExecStart=$bridge |" "$template" > "$dir/hsbridge@.service"
grep -q "^ExecStart=$bridge " "$dir/hsbridge@.service" || { echo "no ExecStart=.../hsbridge in $template" >&2; exit 1; }
grep -q '^EnvironmentFile=' "$dir/hsbridge@.service" || { echo "$template: no EnvironmentFile=" >&2; exit 1; }
cp "$socket" "$dir/hsbrokerd.socket"
ln -s hsbridge@.service "$dir/hsbridge@test.service"

out=$("$analyze" verify --man=no --generators=no "$dir/hsbridge@test.service" 2>&1) || {
	printf '%s\n' "$out" >&2
	echo "systemd-analyze verify failed" >&2
	exit 1
}
if printf '%s\n' "$out" | grep -q 'hsbridge@'; then
	printf '%s\n' "$out" >&2
	echo "systemd-analyze verify reported problems in the unit" >&2
	exit 1
fi
[ -z "$out" ] || printf '%s\n' "$out"
echo "systemd-analyze verify: OK"
