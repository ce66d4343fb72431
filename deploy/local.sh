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
# - Ctrl-C (or SIGTERM, SIGHUP) stops everything cleanly: workers hand
#   their trials back to the queue with their checkpoints and the same
#   attempt, the master releases the study; exit status 0, and the same
#   command continues later. A second Ctrl-C stops at once (the trials in
#   hand are then re-queued with attempt + 1 on the next run).
# - If the master exits before the study is finished (killed, stopped, an
#   error), the workers are stopped the same way, and the master's exit
#   status is this script's.
# - Binaries come from $HPS_BIN_DIR, else target/release next to this script.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

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
pids=() names=()
# A signal is passed on to each child exactly once: the children run in
# process groups of their own (set -m below), so the terminal's Ctrl-C
# reaches this script alone, never the master and workers directly. (Had
# they got it too, ours would be a second signal to them: "exit at once".)
stopping=0
on_signal() {
  if (( stopping )); then
    echo "stopping at once; trials in hand are re-queued with attempt + 1 on the next run" >&2
  else
    stopping=1
    echo "stopping: workers hand their trials back, the master releases the study (Ctrl-C again to stop at once)..." >&2
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap on_signal HUP INT TERM

# The exit status of child $1. A trapped signal cuts `wait` short (status
# > 128) while the child runs on, so wait again until it is gone; bash
# keeps a child's status, so a last `wait` also covers a signal that came
# just as the child exited (127: an older bash that did not keep it).
wait_for() {
  local rc=0 again=0
  while :; do
    rc=0; wait "$1" || rc=$?
    kill -0 "$1" 2>/dev/null || break
  done
  wait "$1" 2>/dev/null || again=$?
  (( again == 127 )) || rc=$again
  return "$rc"
}

set -m # each child below in a process group of its own
# Process substitution (not a pipe) so that $! is the master itself; tee
# ignores SIGINT so that the master's last lines still reach the log.
"$master" run "$dir" "${master_args[@]}" </dev/null > >(trap '' INT; exec tee -a "$dir/logs/master.out") 2>&1 &
pids+=($!) names+=(master)
for ((i = 0; i < workers; i++)); do
  args=("$dir" --id "w$i" --slots "$slots")
  [[ -n "$data" ]] && args+=(--data "$data")
  if (( gpus > 0 )); then
    (( i < gpus )) || echo "local.sh: more workers ($workers) than GPUs ($gpus); w$i shares GPU $(( i % gpus ))" >&2
    CUDA_VISIBLE_DEVICES=$(( i % gpus )) "$worker" "${args[@]}" --device cuda:0 </dev/null >>"$dir/logs/worker-w$i.out" 2>&1 &
    echo "worker w$i on GPU $(( i % gpus )) (log: $dir/logs/worker-w$i.out)"
  else
    "$worker" "${args[@]}" --device cpu --threads "$threads" </dev/null >>"$dir/logs/worker-w$i.out" 2>&1 &
    echo "worker w$i on the CPU with $threads threads (log: $dir/logs/worker-w$i.out)"
  fi
  pids+=($!) names+=("worker w$i")
done
set +m

# The master exits when the budget is spent, and the workers when they see
# finished.json. A master that exits before that leaves the workers with
# nobody to propose or prune: stop them too.
master_rc=0
wait_for "${pids[0]}" || master_rc=$?
if [[ ! -f "$dir/finished.json" ]] && (( ! stopping )); then
  stopping=1
  echo "local.sh: the master exited (status $master_rc) before the study finished; stopping the workers (they hand their trials back)" >&2
  for p in "${pids[@]:1}"; do kill -TERM "$p" 2>/dev/null || true; done
fi
for ((k = 1; k < ${#pids[@]}; k++)); do
  rc=0
  wait_for "${pids[k]}" || rc=$?
  (( rc == 0 )) || echo "local.sh: ${names[k]} exited with status $rc; see $dir/logs/" >&2
done
trap - HUP INT TERM
if (( stopping )); then
  (( master_rc == 0 )) || echo "local.sh: the master exited with status $master_rc; see $dir/logs/master.out" >&2
  echo "stopped; run the same command to continue" >&2
  exit "$master_rc"
fi
echo
"$master" best "$dir" -n 5
# The figures and statistics: one HTML file that opens offline.
echo
"$master" report "$dir" || echo "local.sh: the report could not be written; see the message above" >&2
exit "$master_rc"
