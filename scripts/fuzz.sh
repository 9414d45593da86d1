#!/usr/bin/env bash
# Builds the libFuzzer target over the broker core (tests/fuzz) with clang,
# ASan and UBSan in build-fuzz, and runs it on a copy of the seed corpus.
#   scripts/fuzz.sh [SECONDS | RUNSr]   default 60 (seconds); "200000r" = runs
#   FUZZ_JOBS=N       parallel fuzzing processes (default 1)
#   FUZZ_BUILD_DIR    build folder (default build-fuzz)
#   FUZZ_WORK         working corpus (default $FUZZ_BUILD_DIR/fuzz-corpus;
#                     new inputs libFuzzer finds stay there, the repo's
#                     corpus is never written)
# Exits non-zero on a crash, leak or broken invariant; the input is then in
# $FUZZ_BUILD_DIR/fuzz-artifacts/ (copy it to tests/fuzz/corpus/ as a
# regression input once fixed). Needs clang-14 and libclang-rt-14-dev
# (installed here when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-60}
build=${FUZZ_BUILD_DIR:-build-fuzz}
work=${FUZZ_WORK:-$build/fuzz-corpus}
jobs=${FUZZ_JOBS:-1}

# clang-14 and its runtimes (libFuzzer, ASan, UBSan): Debian 12 packages.
need=()
for p in clang-14 libclang-rt-14-dev; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if ((${#need[@]})) && [[ -z ${CC:-} ]]; then
	if [[ $(id -u) -eq 0 ]]; then
		echo "fuzz: installing ${need[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null ||
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
	else
		echo "fuzz: install ${need[*]} (or set CC to a clang with libFuzzer)" >&2
	fi
fi

cc=${CC:-}
if [[ -z $cc ]]; then
	for c in clang-14 clang; do
		command -v "$c" >/dev/null && { cc=$c; break; }
	done
fi
if [[ -z $cc ]] || ! "$cc" --version | grep -q clang; then
	echo "fuzz: clang not found (apt-get install clang-14 libclang-rt-14-dev)" >&2
	exit 1
fi

if [[ ! -f $build/build.ninja ]]; then
	# Coverage instrumentation for everything compiled here (the broker
	# core included); only the target links libFuzzer. No CUDA: the
	# fuzzer has no GPU, and clang would compile the CUDA pool for
	# nothing.
	CC=$cc CFLAGS="-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined" \
		meson setup "$build" -Dfuzz=enabled -Dcuda=disabled -Dpython=disabled \
		-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized \
		>"$build.setup.log" 2>&1 || { cat "$build.setup.log"; exit 1; }
	rm -f "$build.setup.log"
fi
ninja -C "$build" tests/fuzz/hs-fuzz-broker tests/fuzz/hs-fuzz-replay >/dev/null

mkdir -p "$work" "$build/fuzz-artifacts"
cp -n tests/fuzz/corpus/* "$work"/ 2>/dev/null || true

args=(-dict=tests/fuzz/hsbroker.dict -max_len=4096 -timeout=10 -rss_limit_mb=2048
      -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/")
if [[ $limit == *r ]]; then
	args+=(-runs="${limit%r}")
else
	args+=(-max_total_time="$limit")
fi
if ((jobs > 1)); then
	args+=(-jobs="$jobs" -workers="$jobs")
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "fuzz: $build/tests/fuzz/hs-fuzz-broker ${args[*]} $work"
start=$(date +%s)
rc=0
"$build/tests/fuzz/hs-fuzz-broker" "${args[@]}" "$work" || rc=$?
echo "fuzz: done in $(($(date +%s) - start)) s, exit $rc"
exit $rc
