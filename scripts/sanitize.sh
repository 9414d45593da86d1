#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer:
# configures and builds ASAN_BUILD_DIR (default build-asan) with meson's
# b_sanitize=address,undefined, runs every meson suite there (unit,
# integration, stress, fuzz replay, systemd, bench, gpu), then the Python
# suite with the sanitizer runtimes preloaded into python3 (leak checking
# off there: CPython's own allocations at exit are not ours). Any sanitizer
# report fails the test that hit it.
#   MESON_TEST_ARGS  options for meson test (e.g. --timeout-multiplier 2)
#   arguments        go to meson test (e.g. --suite unit); then no pytest
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${ASAN_BUILD_DIR:-build-asan}
start=$(date +%s)

# shellcheck source=scripts/side-build.sh
. scripts/side-build.sh
side_build sanitize "$BUILD" -Db_sanitize=address,undefined
echo "sanitize: built in $(($(date +%s) - start)) s"

# Every process (tests, the daemon, hsctl, forked clients) aborts at the
# first report, so its test fails; detect_leaks also checks every exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-}

# The meson suites, in three groups:
#  - all but the three below, with every check;
#  - systemd: its sandboxed cases run hsbrokerd under the unit's seccomp
#    filter, where LeakSanitizer cannot work (it needs ptrace to stop the
#    process at exit): leak checking off there, every other check on (the
#    same cases run unsandboxed, leak-checked, in the integration suite);
#  - bench: it runs python3 with the (ASan-built) module, so the runtimes
#    are preloaded into every process and leak checking is off.
preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
rc=0
if (($# > 0)); then
	# shellcheck disable=SC2086  # a list of options
	meson test -C "$BUILD" --print-errorlogs ${MESON_TEST_ARGS:-} "$@" || rc=1
else
	# shellcheck disable=SC2086
	meson test -C "$BUILD" --print-errorlogs ${MESON_TEST_ARGS:-} \
		--no-suite python --no-suite systemd --no-suite bench || rc=1
	# shellcheck disable=SC2086
	ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0 \
		meson test -C "$BUILD" --print-errorlogs ${MESON_TEST_ARGS:-} --suite systemd \
		--logbase testlog-systemd || rc=1
	# shellcheck disable=SC2086
	ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0 LD_PRELOAD=$preload \
		meson test -C "$BUILD" --print-errorlogs ${MESON_TEST_ARGS:-} --suite bench \
		--logbase testlog-bench || rc=1
fi

if (($# == 0)) && [[ -d $BUILD/python ]] && compgen -G "tests/python/test_*.py" >/dev/null; then
	echo "== pytest tests/python under ASan+UBSan (runtimes preloaded)"
	ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0 LD_PRELOAD=$preload \
		HSBROKER_BUILD=$PWD/$BUILD HSBROKER_PYTHONPATH=$PWD/$BUILD/python \
		HSBROKERD=$PWD/$BUILD/daemon/hsbrokerd \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python
	prc=$?
	((prc == 0 || prc == 5)) || rc=1
fi
echo "sanitize: $( ((rc == 0)) && echo passed || echo FAILED ) in $(($(date +%s) - start)) s"
exit $rc
