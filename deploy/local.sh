#!/usr/bin/env bash
# Launch one hps master and N workers on this machine.
#
#   deploy/local.sh DIR --workers N [--study FILE | --preset NAME] [--data DIR] [--cpu] [--slots S] [-- MASTER-RUN-ARGS...]
#
# - DIR is created from --study/--preset if it holds no study yet; an
#   existing study is continued (run the same command again after a crash).
# - Worker i gets GPU i through CUDA_VISIBLE_DEVICES (and --device cuda:0)
#   when nvidia-smi lists GPUs, unless --cpu; otherwise it trains on the CPU
#   with cores/N threads. --slots S runs S trials at once per worker (GPU
#   workers with small models; see docs/gpu.md).
# - Ctrl-C (or SIGTERM) stops everything cleanly: workers hand their trials
#   back to the queue, the master stops; the same command continues later.
# - Binaries come from $HPS_BIN_DIR, else target/release next to this script.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

here="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir="${HPS_BIN_DIR:-$here/target/release}"
dir="" workers=2 study="" preset="" data="" force_cpu=0 slots=1
master_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) workers="$2"; shift 2 ;;
    --study) study="$2"; shift 2 ;;
    --preset) preset="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --cpu) force_cpu=1; shift ;;
    --slots) slots="$2"; shift 2 ;;
    -h|--help) usage ;;
    --) shift; master_args=("$@"); break ;;
    -*) echo "local.sh: unknown option $1" >&2; usage ;;
    *) [[ -z "$dir" ]] || { echo "local.sh: one DIR only" >&2; usage; }; dir="$1"; shift ;;
  esac
done
[[ -n "$dir" ]] || usage
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "local.sh: --workers must be a positive integer, got '$workers'" >&2; exit 2; }
[[ "$slots" =~ ^[1-9][0-9]*$ ]] || { echo "local.sh: --slots must be a positive integer, got '$slots'" >&2; exit 2; }
for b in hps-master hps-worker; do
  [[ -x "$bin_dir/$b" ]] || { echo "local.sh: $bin_dir/$b not found; build with: cargo build --release" >&2; exit 1; }
done
master="$bin_dir/hps-master" worker="$bin_dir/hps-worker"

if [[ ! -f "$dir/study.json" ]]; then
  if [[ -n "$study" ]]; then "$master" init "$dir" --study "$study"
  elif [[ -n "$preset" ]]; then "$master" init "$dir" --preset "$preset"
  else echo "local.sh: $dir holds no study; pass --study FILE or --preset NAME" >&2; exit 1; fi
else
  echo "continuing the study in $dir"
fi

gpus=0
if [[ $force_cpu -eq 0 ]] && command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
cores=$(nproc 2>/dev/null || echo 1)
threads=$(( cores / workers )); (( threads >= 1 )) || threads=1

mkdir -p "$dir/logs"
pids=()
stop() {
  trap - INT TERM
  echo "stopping master and workers..." >&2
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
  echo "stopped; run the same command to continue" >&2
  exit "${1:-130}"
}
trap stop INT TERM

# Process substitution (not a pipe) so that $! is the master itself.
"$master" run "$dir" "${master_args[@]}" > >(tee -a "$dir/logs/master.out") 2>&1 &
pids+=($!)
for ((i = 0; i < workers; i++)); do
  args=("$dir" --id "w$i" --slots "$slots")
  [[ -n "$data" ]] && args+=(--data "$data")
  if (( gpus > 0 )); then
    (( i < gpus )) || echo "local.sh: more workers ($workers) than GPUs ($gpus); w$i shares GPU $(( i % gpus ))" >&2
    CUDA_VISIBLE_DEVICES=$(( i % gpus )) "$worker" "${args[@]}" --device cuda:0 >>"$dir/logs/worker-w$i.out" 2>&1 &
    echo "worker w$i on GPU $(( i % gpus )) (log: $dir/logs/worker-w$i.out)"
  else
    "$worker" "${args[@]}" --device cpu --threads "$threads" >>"$dir/logs/worker-w$i.out" 2>&1 &
    echo "worker w$i on the CPU with $threads threads (log: $dir/logs/worker-w$i.out)"
  fi
  pids+=($!)
done

# The master exits when the budget is spent; workers exit when they see that.
# A master that fails (e.g. it stopped after consecutive failed trials)
# stops the workers, and its exit status is ours.
wait "${pids[0]}" || { rc=$?; echo "master exited with status $rc" >&2; stop "$rc"; }
for p in "${pids[@]:1}"; do wait "$p" || echo "a worker exited with an error; see $dir/logs/" >&2; done
trap - INT TERM
echo
"$master" best "$dir" -n 5
