#!/usr/bin/env bash
# Debian 12's UCX for a machine that has none (the GPU machine: Ubuntu
# 24.04, no internet): downloads the packages here with apt-get download
# (libucx0, ucx-utils for ucx_perftest, and the libraries they need that
# Ubuntu's minimal images lack: libnuma1, libgomp1) and unpacks their
# libraries and programs into DEST (default build-gpu/ucx, git-ignored):
#   DEST/lib      libucp, libuct, libucs, libucm, libnuma, libgomp
#   DEST/lib/ucx  UCX's transport modules (cma only: the InfiniBand ones
#                 need libibverbs, which is not carried)
#   DEST/bin      ucx_perftest, ucx_info
# tests/bridge/gpu.sh points LD_LIBRARY_PATH and UCX_MODULE_DIR there.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${DEST:-build-gpu/ucx}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download libucx0 ucx-utils libnuma1 libgomp1 >/dev/null 2>&1) ||
	{ echo "carry-ucx: apt-get download failed (apt-get update first?)" >&2; exit 1; }
for deb in "$work"/*.deb; do
	dpkg-deb -x "$deb" "$work/root"
done
lib=$work/root/usr/lib/x86_64-linux-gnu
rm -rf "$DEST"
mkdir -p "$DEST/lib/ucx" "$DEST/bin"
# plain files under the names the loader asks for (a carried folder may
# not keep symbolic links)
for so in libucp.so.0 libuct.so.0 libucs.so.0 libucm.so.0 libnuma.so.1 libgomp.so.1; do
	cp -L "$lib/$so" "$DEST/lib/$so"
done
cp -L "$lib/ucx/libuct_cma.so.0" "$DEST/lib/ucx/"
cp -L "$work/root/usr/bin/ucx_perftest" "$work/root/usr/bin/ucx_info" "$DEST/bin/"
echo "carry-ucx: $(cd "$DEST" && find . -type f | wc -l) files in $DEST ($(du -sh "$DEST" | cut -f1)):"
(cd "$DEST" && find . -type f | sort | sed 's/^/  /')
