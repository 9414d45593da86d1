#!/usr/bin/env bash
# Renders each manual page given (built by scdoc) the way man(1) would,
# with every groff warning on: a page fails when groff warns, or when the
# rendered text lacks its NAME and SYNOPSIS sections.
set -euo pipefail
rc=0
for page in "$@"; do
	err=$(mktemp)
	out=$(groff -man -Tutf8 -P-cbou -ww -rLL=80n "$page" 2>"$err")
	if [[ -s $err ]]; then
		echo "$page: groff warns:"
		cat "$err"
		rc=1
	fi
	rm -f "$err"
	for section in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
		if ! grep -q "^$section" <<<"$out"; then
			echo "$page: no $section section in the rendered page"
			rc=1
		fi
	done
	echo "$page: $(wc -l <<<"$out") lines"
done
exit $rc
