#!/usr/bin/env bash
# The threaded tests under ThreadSanitizer: configures and builds
# TSAN_BUILD_DIR (default build-tsan) with b_sanitize=thread, then runs the
# suites where threads share a client: 'threads' (tests/stress/threads.c:
# 1 to 8 producer and consumer threads on one client and on several, an
# event loop calling hs_client_dispatch, a pinger) and the client's unit
# suite. Any report fails the test that hit it (halt_on_error). Reports
# that are not races of ours are suppressed in tests/tsan.supp, each with
# the reason.
#   MESON_TEST_ARGS  options for meson test (e.g. --timeout-multiplier 2)
#   arguments        go to meson test instead of the default suites
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${TSAN_BUILD_DIR:-build-tsan}
start=$(date +%s)

# shellcheck source=scripts/side-build.sh
. scripts/side-build.sh
# Python and CUDA stay out: CPython and cudart are not instrumented.
side_build tsan "$BUILD" -Db_sanitize=thread -Dpython=disabled -Dcuda=disabled
echo "tsan: built in $(($(date +%s) - start)) s"

export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp}
rc=0
if (($# > 0)); then
	# shellcheck disable=SC2086  # a list of options
	meson test -C "$BUILD" --no-rebuild --print-errorlogs ${MESON_TEST_ARGS:-} "$@" || rc=1
else
	# shellcheck disable=SC2086
	meson test -C "$BUILD" --no-rebuild --print-errorlogs ${MESON_TEST_ARGS:-} \
		--suite threads --suite client || rc=1
fi
echo "tsan: $( ((rc == 0)) && echo passed || echo FAILED ) in $(($(date +%s) - start)) s"
exit $rc
