#!/usr/bin/env bash
# Protocol throughput benchmark (not a test): zero-cost `function` trials
# through hps (one master + W workers) and through Optuna 5.0's
# JournalFileBackend (W processes), back to back for W = 2, 4, 8.
#
#   bench/protocol/run.sh            # 20,000 trials per run
#   bench/protocol/run.sh --full     # 100,000 trials per run
#   TRIALS=5000 WORKERS=4 bench/protocol/run.sh
#
# Builds the release binaries; installs Optuna from PyPI into
# bench/protocol/.venv on first use. Rows also go to target/bench-protocol/rows.json.
# Then prints each sampler's proposal cost at 100, 1,000 and 10,000 finished
# trials (bench/samplers' `cost` mode; the GP is skipped above GP_MAX=2000).
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
trials=${TRIALS:-20000}
[[ "${1:-}" == "--full" ]] && trials=100000
workers=${WORKERS:-2,4,8}
(cd "$here" && cargo build --release --locked -q -p hps-master -p hps-worker)
venv="$here/bench/protocol/.venv"
if [[ ! -x "$venv/bin/python" ]]; then python3 -m venv "$venv"; fi
if ! "$venv/bin/python" -c "import optuna" 2>/dev/null; then
  "$venv/bin/pip" install --quiet "${OPTUNA:-optuna==5.0.0}"
fi
"$venv/bin/python" "$here/bench/protocol/bench.py" --hps-bin "$here/target/release" \
  --python "$venv/bin/python" --trials "$trials" --workers "$workers" \
  --out "$here/target/bench-protocol"
# Samplers at scale: one proposal's wall time with N finished trials in the
# history (hartmann6), in process (bench/samplers' binary).
echo
echo "sampler proposal cost (s) with N finished trials:"
(cd "$here/bench/samplers" && cargo build --release --quiet --manifest-path Cargo.toml --target-dir target \
  && ./target/release/bench-samplers cost 100,1000,10000)
