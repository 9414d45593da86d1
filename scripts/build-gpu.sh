#!/usr/bin/env bash
# Builds build-gpu/ (git-ignored) for the GPU machine (Ubuntu 24.04, which
# has no libuv, protobuf-c, Check, jansson or inih): those link statically,
# as does the CUDA runtime (cudart_static, always), so the binaries run
# there as they are. Then it checks that none of them needs one of those
# shared libraries. Carry build-gpu/ to the machine and run
# tests/gpu/run.sh there (see tests/gpu/run.sh and ../shared/gpu/README.md).
#   BUILD_DIR  build folder (default: build-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-gpu}

if [[ ! -f $BUILD_DIR/build.ninja ]]; then
	meson setup "$BUILD_DIR" -Dstatic_deps=true -Dsystemd=disabled -Dpython=enabled \
		-Dcuda=enabled -Dwerror=true -Dbuildtype=debugoptimized
fi
ninja -C "$BUILD_DIR"

bins=("$BUILD_DIR/daemon/hsbrokerd" "$BUILD_DIR/tools/hsctl" "$BUILD_DIR/tests/gpu/hs-gpu-test"
      "$BUILD_DIR/client/libhsclient.so")
bins+=("$BUILD_DIR"/python/hsbroker/*.so)
bad=0
for b in "${bins[@]}"; do
	[[ -e $b ]] || { echo "build-gpu: $b was not built" >&2; bad=1; continue; }
	if ldd "$b" | grep -E 'libuv|libprotobuf-c|libcheck|libsubunit|libjansson|libinih|libcuda|libcudart'; then
		echo "build-gpu: $b needs a shared library the GPU machine lacks" >&2
		bad=1
	fi
done
((bad == 0)) && echo "build-gpu: $BUILD_DIR ready (dependencies linked statically)"
exit $bad
