#!/usr/bin/env bash
# One device-tool call for everything GPU (the tool brings back at most 8
# files): tests/gpu/run.sh, then, where there are two GPUs,
# bench/gpu-pairs.sh; the summaries come back as files and every log in
# one archive, all.tgz.
#   run from the repository root with build-gpu/ carried; CASES is passed
#   to run.sh, PAIRS=0 leaves the pairs out
set -u
cd "$(dirname "$0")/../.."
DEST=${OUT:-/tmp/hs-device-out}
mkdir -p "$DEST"
W=/tmp/hs-device-work
rm -rf "$W" && mkdir -p "$W/gpu" "$W/pairs"
OUT=$W/gpu RUN_BUDGET_S=${RUN_BUDGET_S:-430} bash tests/gpu/run.sh
rc=$?
prc=skipped
if [[ ${PAIRS:-1} == 1 ]]; then
	OUT=$W/pairs PAIRS_BUDGET_S=${PAIRS_BUDGET_S:-120} bash bench/gpu-pairs.sh
	prc=$?
fi
cp "$W/gpu/gpu-summary.txt" "$DEST/" 2>/dev/null
cp "$W/pairs/pairs.md" "$W/pairs/pairs.jsonl" "$DEST/" 2>/dev/null
tar czf "$DEST/all.tgz" -C "$W" . 2>/dev/null
echo "run.sh exit $rc, gpu-pairs.sh exit $prc"
exit $rc
