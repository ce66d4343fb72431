#!/usr/bin/env bash
# Report benchmark (not a test): the time and file size of
# `hps-master report DIR -o FILE` on synthetic studies of 100, 1,000 and
# 10,000 trials. See README.md.
#
#   bench/report/run.sh                  # 100, 1000, 10000 trials
#   SIZES=100,1000 bench/report/run.sh
#   KEEP=/tmp/bench-report bench/report/run.sh   # keep the studies and reports
set -euo pipefail
cd "$(dirname "$0")"
SIZES=${SIZES:-100,1000,10000}

echo "== building hps-master (release) ==" >&2
cargo build --release --quiet --manifest-path ../../Cargo.toml -p hps-master
echo "== building the generator (release) ==" >&2
cargo build --release --quiet --manifest-path Cargo.toml --target-dir target
args=(--bin ../../target/release/hps-master --sizes "$SIZES")
[[ -n ${KEEP:-} ]] && args+=(--keep "$KEEP")
./target/release/bench-report "${args[@]}"
