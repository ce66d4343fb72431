#!/usr/bin/env bash
# Benchmark (not a test): ASHA against plain random search on the cnn
# trainer, both with one master and 2 CPU workers (1 thread each) on
# Fashion-MNIST (5000 training / 1000 validation examples, at most 9
# epochs per trial). Both runs draw the same random settings (same
# sampler seed) and get the same wall-clock budget; the table gives the
# time at which each first produced a trial with validation error at or
# below each target.
#
#   bench/asha/run.sh [MINUTES_PER_RUN]    (default 6)     env: OUT (default target/bench-asha)
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
minutes="${1:-6}"
out="${OUT:-$here/target/bench-asha}"
data=/usr/share/datasets/fashion-mnist
[[ -f "$data/train-images-idx3-ubyte.gz" ]] || { echo "Fashion-MNIST missing: apt-get install dataset-fashion-mnist" >&2; exit 1; }
(cd "$here" && cargo build --release --locked -q -p hps-master -p hps-worker)
bin="$here/target/release"
rm -rf "$out"; mkdir -p "$out"

study_json() { # $1 = name, $2 = extra JSON members
cat <<JSON
{
  "format_version": 1,
  "name": "$1",
  "space": {
    "lr": {"type": "float", "low": 0.001, "high": 0.5, "log": true},
    "momentum": {"type": "float", "low": 0.0, "high": 0.95},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
    "nf": {"type": "categorical", "choices": [8, 16]}
  },
  "objective": {"metric": "val_error", "direction": "minimize"},
  "sampler": {"kind": "random", "seed": 7},
  "budget": {"trials": 500, "epochs": 9},
  "mode": {"kind": "async", "queue": 2},
  $2
  "trainer": {"kind": "cnn", "defaults": {"train_size": 5000, "val_size": 1000, "test_size": 1000}}
}
JSON
}

for kind in random asha; do
  extra=""
  [[ $kind == asha ]] && extra='"pruner": {"kind": "asha", "min_epochs": 1, "eta": 3},'
  study_json "bench-$kind" "$extra" > "$out/$kind.json"
  dir="$out/$kind"
  "$bin/hps-master" init "$dir" --study "$out/$kind.json" > /dev/null
  echo "== $kind: ${minutes} min, 2 workers" >&2
  date +%s.%N > "$out/$kind.start"
  "$bin/hps-master" run "$dir" > "$out/$kind-master.log" 2>&1 &
  pids=($!)
  for w in 0 1; do
    "$bin/hps-worker" "$dir" --id "w$w" --threads 1 --data "$data" > "$out/$kind-w$w.log" 2>&1 &
    pids+=($!)
  done
  sleep "$((minutes * 60))"
  kill -INT "${pids[@]}" 2>/dev/null || true
  wait || true
done
python3 "$here/bench/asha/table.py" "$out"
