#!/usr/bin/env bash
# Copy the result files of a finished study into the repository: what
# docs/results.md is generated from (issue 29) and what a reader needs to
# check it. Kept: study.json, study.recorded.json, finished.json, every
# setting, result and per-trial log. Left out: weights, checkpoints, the
# results cache, heartbeats and the report (rebuilt with
# `hps-master report DIR`).
#
#   docs/results/collect.sh STUDY_DIR NAME     -> docs/results/full/NAME/
set -euo pipefail
[[ $# -eq 2 ]] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
src="$1" name="$2"
here="$(cd "$(dirname "$0")" && pwd)"
dst="$here/full/$name"
[[ -f "$src/finished.json" ]] || { echo "collect.sh: $src has no finished.json; let the study finish first" >&2; exit 1; }
rm -rf "$dst"
mkdir -p "$dst"
cp "$src/study.json" "$src/study.recorded.json" "$src/finished.json" "$dst/"
for sub in settings results; do
  cp -r "$src/$sub" "$dst/$sub"
done
mkdir -p "$dst/logs"
# Per-trial logs only (the shards t000/, ...), not the processes' output.
for shard in "$src"/logs/*/; do
  [[ -d "$shard" ]] && cp -r "$shard" "$dst/logs/"
done
echo "collected $(find "$dst/results" -name '*.json' | wc -l) results of $src into $dst ($(du -sh "$dst" | cut -f1))"
