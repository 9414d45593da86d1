#!/usr/bin/env bash
# Fault injection, full version: 1000 SIGKILLs of random clients at random
# points around a long-lived producer/subscriber pair (tests/stress/faults.c
# says what is checked). CI runs 100 (meson test --suite stress).
#   scripts/faults.sh [KILLS [SEED]]   default 1000, seed from the clock
#   BUILD_DIR  build folder (default: build; configured if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
if [[ ! -f $BUILD_DIR/build.ninja ]]; then
	meson setup "$BUILD_DIR" -Dwerror=true >/dev/null
fi
ninja -C "$BUILD_DIR" daemon/hsbrokerd tools/hsctl tests/stress/hs-stress-faults >/dev/null
export HSBROKERD=$PWD/$BUILD_DIR/daemon/hsbrokerd HSCTL=$PWD/$BUILD_DIR/tools/hsctl
export LD_LIBRARY_PATH=$PWD/$BUILD_DIR/client${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
exec "$BUILD_DIR/tests/stress/hs-stress-faults" "${1:-1000}" ${2:+"$2"}
