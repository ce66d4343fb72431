#!/usr/bin/env bash
# Benchmark (not a test): training time per epoch of the hps cnn trainer
# (worker/examples/train_epoch.rs, candle) against the same model in the
# plain PyTorch loop a user writes (bench/train/train_torch.py), nf in
# 8 32 64, batch 128, SGD momentum 0.9, lr 0.01, on Fashion-MNIST. For each
# nf they run back to back with the same threads, so load from other jobs
# hits both alike. The table gives steady-state epochs (the mean over the
# epochs after the first, which carries both sides' warm-up), samples/s,
# hps time / PyTorch time, and both test accuracies (similar accuracies
# show the two train the same model).
#
# PyTorch runs twice on the CPU: with glibc's malloc as it comes, and with
# GLIBC_TUNABLES that stop glibc from handing PyTorch's large activation
# buffers back to the kernel after every step (mmap_threshold 32 MiB,
# trim_threshold 1 GiB). With the defaults every training step faults its
# buffers in afresh (the minor page faults per epoch are in the JSON and
# under the table); hps allocates through mimalloc, which keeps them.
# The ratio is taken against the faster PyTorch run, so it never flatters hps.
#
#   bench/train/run.sh
#   env: THREADS (default 2), EPOCHS (3; at least 2 for a steady state),
#        TRAIN (60000 training examples), NFS ("8 32 64"),
#        DATA (/usr/share/datasets/fashion-mnist),
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
epochs="${EPOCHS:-3}"
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

no_trim="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"

# Per nf on $1 (cpu or cuda:0): one hps run, then PyTorch (twice on the CPU).
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
    if [[ "$device" == cpu ]]; then
      echo "nf=$nf on $device: PyTorch, glibc keeping its memory ..." >&2
      GLIBC_TUNABLES="$no_trim" OMP_NUM_THREADS="$threads" "$py" "$bench/train_torch.py" \
        --nf "$nf" --threads "$threads" --device "$device" "${common[@]}" >> "$out"
    fi
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
    print(f"\n{device}: seconds per steady-state epoch (epochs 2..{epochs}; first epoch in brackets)")
    print("| nf | hps | PyTorch | PyTorch, glibc keeping memory | hps samples/s | best PyTorch samples/s "
          "| hps/PyTorch time | hps test acc | PyTorch test acc |")
    print("|---|---|---|---|---|---|---|---|---|")
    def cell(r):
        if r is None:
            return "not run"
        first = r["epoch_times_s"][0]
        return f"{r['steady_epoch_time_s']:.2f} ({first:.2f})"
    for nf in dict.fromkeys(r["nf"] for r in rows if r["device"] == device):
        at = [r for r in rows if r["device"] == device and r["nf"] == nf]
        h = next(r for r in at if r["impl"] == "hps")
        t = next((r for r in at if r["impl"] == "pytorch" and r.get("malloc") == "glibc defaults"), None)
        k = next((r for r in at if r["impl"] == "pytorch" and r.get("malloc") != "glibc defaults"), None)
        best = min((r for r in (t, k) if r), key=lambda r: r["steady_epoch_time_s"])
        if "skipped" in h:
            print(f"| {nf} | (skipped: {h['skipped']}) | {cell(t)} | {cell(k)} | | "
                  f"{best['samples_per_s']:.0f} | | | {best['test_accuracy']*100:.2f}% |")
            continue
        print(f"| {nf} | {cell(h)} | {cell(t)} | {cell(k)} | {h['samples_per_s']:.0f} | "
              f"{best['samples_per_s']:.0f} | "
              f"{h['steady_epoch_time_s']/best['steady_epoch_time_s']:.2f} | "
              f"{h['test_accuracy']*100:.2f}% | {best['test_accuracy']*100:.2f}% |")
    faults = [(r["nf"], r["minor_faults_per_epoch"][-1]) for r in rows
              if r["device"] == device and r["impl"] == "pytorch" and r.get("malloc") == "glibc defaults"]
    if faults and device == "cpu":
        print("minor page faults in PyTorch's last epoch with glibc defaults: "
              + ", ".join(f"nf {nf}: {f:,}" for nf, f in faults))
print(f"\n(test accuracy on {rows[0].get('test_size', '?')} test examples after the last epoch; "
      f"JSON lines in {path})")
PY
