#!/usr/bin/env bash
# Installs hsbroker's build dependencies (Debian 12) and builds it in
# ./build. Safe to run again: apt is skipped when everything is installed,
# and meson setup only runs when the build folder is missing.
#   BUILD_DIR   build folder (default: build)
#   MESON_ARGS  extra options for meson setup/configure (e.g. -Dwerror=true)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
MESON_ARGS=${MESON_ARGS:-}

packages=(
	build-essential meson ninja-build pkg-config
	libuv1-dev protobuf-c-compiler libprotobuf-c-dev libdlpack-dev
	libjansson-dev libinih-dev libsystemd-dev check
	systemd            # systemd-analyze, systemd-socket-activate (tests)
	python3-dev python3-pytest python3-numpy
	python3-prometheus-client   # checks hsctl stats --prometheus (tests)
	python3-mesonpy python3-venv   # pip install . (tests/python/test_install.py)
	valgrind
	scdoc groff-base man-db   # manual pages (docs/man), their render test, tests/docs
	libucx-dev ucx-utils iproute2   # hsbridge, ucx_perftest, its tests' namespaces
	clang-14 libclang-rt-14-dev   # libFuzzer (scripts/fuzz.sh)
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if ((${#missing[@]})); then
	echo "setup: installing ${missing[*]}"
	if [[ $(id -u) -eq 0 ]]; then
		sudo=()
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		sudo=(sudo)
	else
		sudo=()
		echo "setup: not root and no sudo: install these yourself: ${missing[*]}" >&2
	fi
	if [[ $(id -u) -eq 0 || ${#sudo[@]} -gt 0 ]]; then
		export DEBIAN_FRONTEND=noninteractive
		"${sudo[@]}" apt-get update -q
		"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
fi

# shellcheck disable=SC2086  # MESON_ARGS is a list of options
if [[ ! -f $BUILD_DIR/build.ninja ]]; then
	meson setup "$BUILD_DIR" $MESON_ARGS
elif [[ -n $MESON_ARGS ]]; then
	meson configure "$BUILD_DIR" $MESON_ARGS
fi
ninja -C "$BUILD_DIR"
