#!/usr/bin/env bash
# Builds build-gpu/ (git-ignored) for the GPU machine (Ubuntu 24.04, which
# has no libuv, protobuf-c, Check, jansson or inih): those link statically,
# as does the CUDA runtime (cudart_static, always), so the binaries run
# there as they are. Then it checks that none of them needs one of those
# shared libraries. Carry build-gpu/ to the machine and run
# tests/gpu/run.sh there (see tests/gpu/run.sh and ../shared/gpu/README.md).
# hsbridge is built too (-Ducx=enabled): it needs UCX's shared libraries,
# which the machine lacks, so Debian's are put in build-gpu/ucx
# (tests/bridge/carry-ucx.sh) for tests/bridge/gpu.sh to use there.
#   BUILD_DIR  build folder (default: build-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-gpu}

if [[ ! -f $BUILD_DIR/build.ninja ]]; then
	meson setup "$BUILD_DIR" -Dstatic_deps=true -Dsystemd=disabled -Dpython=enabled \
		-Dcuda=enabled -Ducx=enabled -Dwerror=true -Dbuildtype=debugoptimized
elif ! meson introspect --buildoptions "$BUILD_DIR" | grep -q '"name": "ucx", "value": "enabled"'; then
	meson configure "$BUILD_DIR" -Ducx=enabled
fi
ninja -C "$BUILD_DIR"
[[ -d $BUILD_DIR/ucx ]] || DEST=$BUILD_DIR/ucx tests/bridge/carry-ucx.sh

bins=("$BUILD_DIR/daemon/hsbrokerd" "$BUILD_DIR/tools/hsctl" "$BUILD_DIR/tests/gpu/hs-gpu-test"
      "$BUILD_DIR/client/libhsclient.so" "$BUILD_DIR/bridge/hsbridge" "$BUILD_DIR/tests/bridge/hsb-devprobe")
bins+=("$BUILD_DIR"/python/hsbroker/*.so)
bad=0
for b in "${bins[@]}"; do
	[[ -e $b ]] || { echo "build-gpu: $b was not built" >&2; bad=1; continue; }
	if ldd "$b" | grep -E 'libuv|libprotobuf-c|libcheck|libsubunit|libjansson|libinih|libcuda|libcudart'; then
		echo "build-gpu: $b needs a shared library the GPU machine lacks" >&2
		bad=1
	fi
done
# hsbridge: beyond the C library's own, only UCX's libraries (and libnuma,
# which libucs needs), all found in the carried folder
hsb=$BUILD_DIR/bridge/hsbridge
if [[ ! -x $hsb ]]; then
	echo "build-gpu: $hsb was not built" >&2
	bad=1
else
	extra=$(LD_LIBRARY_PATH=$BUILD_DIR/ucx/lib ldd "$hsb" | awk '{print $1}' |
		grep -vE '^(linux-vdso|/lib64/ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libgcc_s\.|libhsclient\.)' |
		grep -vxE 'libuc[pstm]\.so\.0|libnuma\.so\.1' || true)
	outside=$(LD_LIBRARY_PATH=$BUILD_DIR/ucx/lib ldd "$hsb" | grep -E 'libuc[pstm]|libnuma' |
		grep -v "$BUILD_DIR/ucx/lib" || true)
	if [[ -n $extra || -n $outside ]]; then
		echo "build-gpu: $hsb needs more than the carried UCX: $extra $outside" >&2
		bad=1
	fi
fi
((bad == 0)) && echo "build-gpu: $BUILD_DIR ready (dependencies linked statically; UCX in $BUILD_DIR/ucx)"
exit $bad
