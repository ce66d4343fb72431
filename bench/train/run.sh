#!/usr/bin/env bash
# Benchmark (not a test): training time per epoch of the hps cnn trainer
# (worker/examples/train_epoch.rs, candle) against the same model and loop in
# PyTorch (bench/train/train_torch.py), nf in 8 32 64, batch 128, SGD
# momentum 0.9, lr 0.01, on Fashion-MNIST. For each nf the two run back to
# back with the same threads, so load from other jobs hits both alike; the
# table gives both times, samples/s, hps time / PyTorch time, and both test
# accuracies (similar accuracies show the two train the same model).
#
#   bench/train/run.sh
#   env: THREADS (default 2), EPOCHS (1), TRAIN (60000 training examples),
#        NFS ("8 32 64"), DATA (/usr/share/datasets/fashion-mnist),
#        HPS_CUDA=1 (build hps with --features cuda, for the GPU rows)
#
# First run: creates bench/train/.venv and pip-installs torch and numpy from
# PyPI (torch with its CUDA libraries is several GB; it runs on the CPU).
# Where `nvidia-smi` finds a GPU, both also run on cuda:0 (hps only when
# built with HPS_CUDA=1). The JSON lines go to bench/train/out/last.jsonl.
set -euo pipefail
bench="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$bench/../.." && pwd)"
threads="${THREADS:-2}"
epochs="${EPOCHS:-1}"
train="${TRAIN:-60000}"
nfs="${NFS:-8 32 64}"
data="${DATA:-/usr/share/datasets/fashion-mnist}"
[[ -f "$data/train-images-idx3-ubyte.gz" ]] || {
  echo "Fashion-MNIST missing in $data: apt-get install dataset-fashion-mnist" >&2
  exit 1
}

venv="$bench/.venv"
py="$venv/bin/python"
if ! "$py" -c 'import torch, numpy' 2>/dev/null; then
  echo "installing torch and numpy into $venv (first run; several GB)" >&2
  [[ -x "$py" ]] || python3 -m venv "$venv"
  "$py" -m pip install --disable-pip-version-check -q torch numpy
fi

features=()
[[ "${HPS_CUDA:-0}" == 1 ]] && features=(--features cuda)
(cd "$root" && cargo build --release --locked -q --example train_epoch -p hps-worker "${features[@]}")
hps="$root/target/release/examples/train_epoch"

mkdir -p "$bench/out"
out="$bench/out/last.jsonl"
: > "$out"
common=(--batch-size 128 --lr 0.01 --momentum 0.9 --epochs "$epochs" --train-size "$train"
        --val-size 0 --test-size 0 --data "$data")

# One hps run and one PyTorch run per nf on $1 (cpu or cuda:0).
run_pair() {
  local device="$1" nf hps_err
  for nf in $nfs; do
    echo "nf=$nf on $device: hps ..." >&2
    hps_err="$(mktemp)"
    if ! "$hps" --nf "$nf" --threads "$threads" --device "$device" "${common[@]}" \
        >> "$out" 2> "$hps_err"; then
      if grep -q 'built without CUDA support' "$hps_err"; then
        echo "{\"impl\": \"hps\", \"device\": \"$device\", \"nf\": $nf, \"skipped\": \"built without --features cuda (rerun with HPS_CUDA=1)\"}" >> "$out"
      else
        cat "$hps_err" >&2
        rm -f "$hps_err"
        return 1
      fi
    fi
    rm -f "$hps_err"
    echo "nf=$nf on $device: PyTorch ..." >&2
    OMP_NUM_THREADS="$threads" "$py" "$bench/train_torch.py" --nf "$nf" --threads "$threads" \
      --device "$device" "${common[@]}" >> "$out"
  done
}

run_pair cpu
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  run_pair cuda:0
fi

cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
"$py" - "$out" "$threads" "$epochs" "$train" "$cpu" <<'PY'
import json, sys
path, threads, epochs, train, cpu = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
torch_v = next((r["framework"] for r in rows if r["impl"] == "pytorch"), "torch ?")
print(f"hps (candle 0.11, release) vs {torch_v}: batch 128, SGD momentum 0.9, lr 0.01, "
      f"{train} training examples, {epochs} epoch(s), {threads} threads; CPU: {cpu or '?'}")
for device in dict.fromkeys(r["device"] for r in rows):
    print(f"\n{device}:")
    print("| nf | hps s/epoch | PyTorch s/epoch | hps samples/s | PyTorch samples/s "
          "| hps/PyTorch time | hps test acc | PyTorch test acc |")
    print("|---|---|---|---|---|---|---|---|")
    for nf in dict.fromkeys(r["nf"] for r in rows if r["device"] == device):
        h = next(r for r in rows if r["device"] == device and r["nf"] == nf and r["impl"] == "hps")
        t = next(r for r in rows if r["device"] == device and r["nf"] == nf and r["impl"] == "pytorch")
        if "skipped" in h:
            print(f"| {nf} | (skipped: {h['skipped']}) | {t['epoch_time_s']:.2f} | | "
                  f"{t['samples_per_s']:.0f} | | | {t['test_accuracy']*100:.2f}% |")
            continue
        print(f"| {nf} | {h['epoch_time_s']:.2f} | {t['epoch_time_s']:.2f} | "
              f"{h['samples_per_s']:.0f} | {t['samples_per_s']:.0f} | "
              f"{h['epoch_time_s']/t['epoch_time_s']:.2f} | "
              f"{h['test_accuracy']*100:.2f}% | {t['test_accuracy']*100:.2f}% |")
print(f"\n(test accuracy on {rows[0].get('test_size', '?')} test examples after the last epoch; "
      f"JSON lines in {path})")
PY
