#!/usr/bin/env bash
# Benchmark of the cnn trainer (not a test): the time of one training epoch
# of the seed's build_cnn at nf=32, batch 128, SGD momentum 0.9, lr 0.01 on
# the full 60k Fashion-MNIST training set (release build, THREADS threads),
# and the test accuracy of that model; then the test accuracy of the best
# trial of a study directory (default: runs/quickstart, the README's run).
#
#   bench/cnn_epoch.sh [STUDY_DIR]     env: THREADS (default 2), EPOCHS (default 1)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
threads="${THREADS:-2}"
epochs="${EPOCHS:-1}"
study_dir="${1:-$here/runs/quickstart}"
data=/usr/share/datasets/fashion-mnist
[[ -f "$data/train-images-idx3-ubyte.gz" ]] || { echo "Fashion-MNIST missing: apt-get install dataset-fashion-mnist" >&2; exit 1; }

(cd "$here" && cargo build --release --locked -q -p hps-master -p hps-worker)
bin="$here/target/release"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/study.json" <<JSON
{
  "format_version": 1,
  "name": "bench-epoch",
  "space": {
    "nf": {"type": "fixed", "value": 32},
    "batch_size": {"type": "fixed", "value": 128},
    "lr": {"type": "fixed", "value": 0.01},
    "momentum": {"type": "fixed", "value": 0.9}
  },
  "objective": {"metric": "test_error", "direction": "minimize"},
  "sampler": {"kind": "random", "seed": 0},
  "budget": {"trials": 1, "epochs": $epochs},
  "trainer": {"kind": "cnn", "defaults": {"train_size": 60000, "val_size": 0, "test_size": 0}}
}
JSON
"$bin/hps-master" init "$tmp/s" --study "$tmp/study.json" >/dev/null
"$bin/hps-master" run "$tmp/s" 2>"$tmp/master.log" &
mpid=$!
"$bin/hps-worker" "$tmp/s" --id bench --threads "$threads" --data "$data" 2>"$tmp/worker.log"
wait "$mpid"
python3 - "$tmp/s/results/t000/t000000.json" "$threads" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["metrics"]
print(f"cnn epoch (nf=32, batch 128, 60000 examples, {sys.argv[2]} threads, release): "
      f"{m['epoch_time_s']:.1f} s/epoch over {r['epochs_completed']} epoch(s); "
      f"test accuracy {m['test_accuracy']*100:.2f}% on {10000} test examples; status {r['status']}")
PY

if [[ -f "$study_dir/study.json" ]]; then
  "$bin/hps-master" export "$study_dir" --format jsonl > "$tmp/export.jsonl"
  python3 - "$tmp/export.jsonl" "$study_dir" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
done = [r for r in rows if r["status"] == "complete" and r.get("objective") is not None]
if not done:
    print("no completed trials in", sys.argv[2])
    sys.exit()
b = min(done, key=lambda r: r["objective"])
m = b["metrics"]
print(f"best trial of {sys.argv[2]}: {b['trial_id']} val_error {m.get('val_error', float('nan')):.4f}, "
      f"test accuracy {m.get('test_accuracy', float('nan')) * 100:.2f}% on the study's test examples "
      f"({len(done)} complete trials)")
PY
fi
