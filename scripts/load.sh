#!/usr/bin/env bash
# Load, full version: 64 client processes (16 producers, 48 consumers),
# 100,000 tensors, nothing lost or duplicated, the daemon's memory back to
# its idle level (tests/stress/load.c). CI runs 16 clients and 10,000
# tensors (meson test --suite stress).
#   scripts/load.sh [CLIENTS [TENSORS]]   default 64 100000
#   BUILD_DIR  build folder (default: build; configured if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
if [[ ! -f $BUILD_DIR/build.ninja ]]; then
	meson setup "$BUILD_DIR" -Dwerror=true >/dev/null
fi
ninja -C "$BUILD_DIR" daemon/hsbrokerd tools/hsctl tests/stress/hs-stress-load >/dev/null
export HSBROKERD=$PWD/$BUILD_DIR/daemon/hsbrokerd HSCTL=$PWD/$BUILD_DIR/tools/hsctl
export LD_LIBRARY_PATH=$PWD/$BUILD_DIR/client${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
exec "$BUILD_DIR/tests/stress/hs-stress-load" "${1:-64}" "${2:-100000}"
