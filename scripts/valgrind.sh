#!/usr/bin/env bash
# The integration tests (and the fuzz corpus replay) with every test program, forked client and
# hsbrokerd under valgrind memcheck (meson test --setup valgrind, defined in
# tests/meson.build): any memcheck error or definite leak fails the test.
#   BUILD_DIR        build folder (default: build; configured if missing)
#   MESON_TEST_ARGS  options for meson test (e.g. --timeout-multiplier 2)
#   arguments        replace "--suite integration --suite fuzz" (e.g. a test name)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
start=$(date +%s)
if ! command -v valgrind >/dev/null; then
	echo "valgrind: not installed (apt-get install valgrind)" >&2
	exit 1
fi
if [[ ! -f $BUILD_DIR/build.ninja ]]; then
	meson setup "$BUILD_DIR" -Dwerror=true >/dev/null || exit 1
fi
ninja -C "$BUILD_DIR" >/dev/null || { echo "valgrind: the build failed"; exit 1; }
(($# == 0)) && set -- --suite integration --suite fuzz
# shellcheck disable=SC2086  # a list of options
meson test -C "$BUILD_DIR" --print-errorlogs ${MESON_TEST_ARGS:-} --setup valgrind "$@"
rc=$?
echo "valgrind: $( ((rc == 0)) && echo passed || echo FAILED ) in $(($(date +%s) - start)) s"
exit $rc
