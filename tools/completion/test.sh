#!/usr/bin/env bash
# The bash completions complete: each case is the words typed and what
# the completion must offer. bash-completion's _init_completion and
# _filedir are stood in for by the simplest versions that set the same
# variables, so the test needs only bash.
set -euo pipefail
dir=$(dirname "$0")
_init_completion() {
	words=("${COMP_WORDS[@]}")
	cword=$COMP_CWORD
	cur=${words[cword]}
	prev=${words[cword - 1]:-}
}
_filedir() { COMPREPLY=(FILES); }
# shellcheck source=/dev/null
. "$dir/hsctl.bash"
# shellcheck source=/dev/null
. "$dir/hsbrokerd.bash"

fails=0
expect() { # function, wanted words (space-separated), then the words typed
	local fn=$1 want=$2
	shift 2
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMPREPLY=()
	"$fn"
	local got="${COMPREPLY[*]}"
	if [[ $got != "$want" ]]; then
		echo "completing '$*': got '$got', want '$want'"
		fails=$((fails + 1))
	fi
}
expect _hsctl "status stats" hsctl st
expect _hsctl "doctor" hsctl d
expect _hsctl "tensors topics" hsctl ls t
expect _hsctl "--prometheus" hsctl stats --p
expect _hsctl "--iterations" hsctl top --it
expect _hsctl "FILES" hsctl --socket ""
expect _hsbrokerd "--config" hsbrokerd --con
expect _hsbrokerd "--check-config" hsbrokerd --ch
expect _hsbrokerd "debug" hsbrokerd --log-level d
expect _hsbrokerd "FILES" hsbrokerd --config ""
((fails == 0)) && echo "completion: all cases complete as expected"
exit $((fails > 0))
