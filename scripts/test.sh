#!/usr/bin/env bash
# Builds (scripts/setup.sh) and runs every test: meson's (unit,
# integration, systemd) and the Python tests with pytest. Ends with one
# line, "N passed, N failed" (", N skipped" when some were), and exits
# non-zero if anything failed.
#   BUILD_DIR        build folder (default: build)
#   MESON_TEST_ARGS  options for every `meson test` run (e.g. --timeout-multiplier 2)
#   HS_TEST_VALGRIND=1  also run the integration tests with the daemon under
#                    valgrind (meson test --setup valgrind); CI sets it
#   HS_EXTRA_RESULTS a file of lines "OK name" / "FAIL name" from steps run
#                    before (.ci/run: ASan+UBSan, fuzzing), counted too
#   arguments go to `meson test` (e.g. --suite integration) and skip pytest
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export BUILD_DIR

if ! ./scripts/setup.sh; then
	echo "test: the build failed"
	echo "0 passed, 1 failed"
	exit 1
fi

log=$BUILD_DIR/meson-logs/testlog.json
vlog=$BUILD_DIR/meson-logs/testlog-valgrind.json
rm -f "$log" "$vlog"
# The Python tests run under pytest directly (below) so each one is
# counted; meson's single 'python' test would run them a second time.
run_pytest=0
if (($# == 0)) && compgen -G "tests/python/test_*.py" >/dev/null && [[ -d $BUILD_DIR/python ]]; then
	run_pytest=1
fi
no_python=()
((run_pytest)) && no_python=(--no-suite python)
# shellcheck disable=SC2086  # a list of options
meson test -C "$BUILD_DIR" --print-errorlogs ${MESON_TEST_ARGS:-} "${no_python[@]}" "$@"
meson_rc=$?

if [[ ${HS_TEST_VALGRIND:-0} == 1 && $# -eq 0 ]]; then
	if command -v valgrind >/dev/null; then
		echo "== integration tests with hsbrokerd under valgrind"
		# shellcheck disable=SC2086
		meson test -C "$BUILD_DIR" --print-errorlogs ${MESON_TEST_ARGS:-} --setup valgrind --suite integration
		vrc=$?
		((vrc == 0)) || meson_rc=$vrc
	else
		echo "test: HS_TEST_VALGRIND=1 but valgrind is not installed" >&2
		meson_rc=1
	fi
fi

junit=$BUILD_DIR/meson-logs/pytest.xml
rm -f "$junit"
pytest_rc=-1
if ((run_pytest)); then
	echo "== pytest tests/python"
	HSBROKER_BUILD=$PWD/$BUILD_DIR HSBROKER_PYTHONPATH=$PWD/$BUILD_DIR/python \
		HSBROKERD=$PWD/$BUILD_DIR/daemon/hsbrokerd \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python --junitxml="$junit"
	pytest_rc=$?
fi

/usr/bin/python3 - "$log" "$junit" "$meson_rc" "$pytest_rc" "$vlog" <<'PY'
import json, os, sys
import xml.etree.ElementTree as ET

log, junit, meson_rc, pytest_rc, vlog = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
passed = failed = skipped = 0
logs = [l for l in (log, vlog) if os.path.exists(l)]
for path in logs:
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line).get("result")
            if r in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif r == "SKIP":
                skipped += 1
            else:  # FAIL, TIMEOUT, UNEXPECTEDPASS, ERROR
                failed += 1
if not logs and meson_rc != 0:
    failed += 1  # meson test failed before running anything
if os.path.exists(junit):
    for suite in ET.parse(junit).getroot().iter("testsuite"):
        n = int(suite.get("tests", 0))
        f = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        s = int(suite.get("skipped", 0))
        passed += n - f - s
        failed += f
        skipped += s
elif pytest_rc not in (-1, 0, 5):
    failed += 1  # pytest ran but wrote no report (crashed or bad usage)
extra = os.environ.get("HS_EXTRA_RESULTS")
if extra and os.path.exists(extra):
    with open(extra) as f:
        for line in f:
            if line.startswith("OK "):
                passed += 1
            elif line.strip():
                failed += 1
line = "%d passed, %d failed" % (passed, failed)
if skipped:
    line += ", %d skipped" % skipped
print(line)
sys.exit(1 if failed or (meson_rc != 0 and passed == 0) else 0)
PY
