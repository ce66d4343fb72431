#!/usr/bin/env bash
# Submit an hps study to Slurm: one master job (CPU) and one job array of
# workers, one GPU per array task.
#
#   deploy/slurm/submit.sh DIR --workers N [--gpus-per-worker G] [--slots S]
#       [--partition P] [--account A] [--time T] [--master-time T]
#       [--signal-margin SECONDS] [--max-timeouts K] [--cpus-per-worker C]
#       [--device DEV] [--data DIR] [--study FILE | --preset NAME]
#       [--master-only | --no-master] [-- EXTRA-SBATCH-ARGS...]
#
# - DIR must be on a filesystem every node sees (NFS, Lustre, CephFS, GPFS);
#   so must the binaries: $HPS_BIN_DIR, else target/release beside this
#   script. DIR is created from --study/--preset if it holds no study yet.
# - The workers: `--array=0-(N-1) --gres=gpu:G --requeue
#   --signal=B:USR2@SECONDS --open-mode=append`; task k is worker
#   `slurm-<array job>_<k>`, the same id after every requeue. Each sees the
#   GPU Slurm gave it (CUDA_VISIBLE_DEVICES) as cuda:0. --time T is each
#   task's limit (default: the partition's); SECONDS before it (default 120)
#   the task hands its trial back with its checkpoint and requeues itself.
# - The master: one CPU job, requeued the same way at its time limit
#   (--master-time, default --time); the study's master lease keeps a
#   second master from running at once.
# - --device: what workers train on (default: cuda:0 for a cnn study, cpu
#   for the function and exec trainers, which need no candle device; an
#   exec script sees its GPU through CUDA_VISIBLE_DEVICES).
# - --master-only submits a master again (after `scancel` of the old one);
#   --no-master adds N more workers to a running study.
# - Job ids go to DIR/slurm/jobs (deploy/slurm/cancel.sh DIR cancels them),
#   logs to DIR/slurm/logs/. docs/slurm.md explains every choice.
# - --gpus-per-worker 0 submits CPU workers (no --gres; --device cpu).
set -euo pipefail

usage() { sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
die() { echo "submit.sh: $*" >&2; exit 2; }

here="$(cd "$(dirname "$0")/../.." && pwd)"
bin_dir="${HPS_BIN_DIR:-$here/target/release}"
dir="" workers="" gpus=1 slots=1 partition="" account="" time_limit="" master_time=""
margin=120 max_timeouts=3 cpus="" device="" data="" study="" preset=""
master=1 array=1
extra=()
need() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) need "$@"; workers="$2"; shift 2 ;;
    --gpus-per-worker) need "$@"; gpus="$2"; shift 2 ;;
    --slots) need "$@"; slots="$2"; shift 2 ;;
    --partition) need "$@"; partition="$2"; shift 2 ;;
    --account) need "$@"; account="$2"; shift 2 ;;
    --time) need "$@"; time_limit="$2"; shift 2 ;;
    --master-time) need "$@"; master_time="$2"; shift 2 ;;
    --signal-margin) need "$@"; margin="$2"; shift 2 ;;
    --max-timeouts) need "$@"; max_timeouts="$2"; shift 2 ;;
    --cpus-per-worker) need "$@"; cpus="$2"; shift 2 ;;
    --device) need "$@"; device="$2"; shift 2 ;;
    --data) need "$@"; data="$2"; shift 2 ;;
    --study) need "$@"; study="$2"; shift 2 ;;
    --preset) need "$@"; preset="$2"; shift 2 ;;
    --master-only) array=0; shift ;;
    --no-master) master=0; shift ;;
    -h|--help) usage ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "submit.sh: unknown option $1" >&2; usage ;;
    *) [[ -z "$dir" ]] || die "one DIR only (got '$dir' and '$1')"; dir="$1"; shift ;;
  esac
done
[[ -n "$dir" ]] || usage
(( master || array )) || die "--master-only and --no-master leave nothing to submit"
if (( array )); then
  [[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer, got '${workers}' (or pass --master-only)"
else
  [[ -z "$workers" ]] || die "--master-only submits no workers; drop --workers $workers"
fi
[[ "$gpus" =~ ^[0-9]+$ ]] || die "--gpus-per-worker must be a whole number, got '$gpus'"
[[ "$slots" =~ ^[1-9][0-9]*$ ]] || die "--slots must be a positive integer, got '$slots'"
[[ "$margin" =~ ^[1-9][0-9]*$ ]] || die "--signal-margin must be a positive number of seconds, got '$margin'"
[[ "$max_timeouts" =~ ^[0-9]+$ ]] || die "--max-timeouts must be a whole number, got '$max_timeouts'"
[[ -z "$cpus" || "$cpus" =~ ^[1-9][0-9]*$ ]] || die "--cpus-per-worker must be a positive integer, got '$cpus'"
command -v sbatch >/dev/null 2>&1 || die "sbatch not found: run this on a Slurm login node (or put Slurm's commands on PATH)"
for b in hps-master hps-worker; do
  [[ -x "$bin_dir/$b" ]] || die "$bin_dir/$b not found; build with: cargo build --release (or set HPS_BIN_DIR)"
done
bin_dir="$(cd "$bin_dir" && pwd)"

if [[ ! -f "$dir/study.json" ]]; then
  if [[ -n "$study" ]]; then "$bin_dir/hps-master" init "$dir" --study "$study"
  elif [[ -n "$preset" ]]; then "$bin_dir/hps-master" init "$dir" --preset "$preset"
  else die "$dir holds no study; pass --study FILE or --preset NAME (or run hps-master init first)"; fi
fi
dir="$(cd "$dir" && pwd)"
[[ ! -f "$dir/finished.json" ]] || echo "submit.sh: note: $dir/finished.json exists; the jobs will end at once unless the study's budget was raised" >&2

# The trainer's kind, from the pretty-printed study.json: the first "kind"
# after the "trainer" key.
trainer_kind() {
  awk '/"trainer": *\{/ {t = 1} t && /"kind":/ {sub(/.*"kind": *"/, ""); sub(/".*/, ""); print; exit}' "$dir/study.json"
}
if [[ -z "$device" ]]; then
  case "$(trainer_kind)" in
    function|exec) device=cpu ;;
    *) if (( gpus > 0 )); then device=cuda:0; else device=cpu; fi ;;
  esac
fi

mkdir -p "$dir/slurm/logs"
common=(--parsable --requeue --open-mode=append --signal="B:USR2@$margin")
[[ -n "$partition" ]] && common+=(--partition="$partition")
[[ -n "$account" ]] && common+=(--account="$account")
job="$here/deploy/slurm/job.sh"
name="hps-$(basename "$dir")"

# sbatch --parsable prints "id" or "id;cluster".
submit() { local out; out=$(sbatch "$@") || exit 1; echo "${out%%;*}"; }

if (( master )); then
  m=(--job-name="$name-master" --ntasks=1 --cpus-per-task=1 --output="$dir/slurm/logs/master-%j.out")
  mt="${master_time:-$time_limit}"
  [[ -n "$mt" ]] && m+=(--time="$mt")
  id=$(submit "${common[@]}" "${m[@]}" "${extra[@]}" "$job" master "$dir" "$bin_dir" "$margin" 0)
  echo "master $id" >> "$dir/slurm/jobs"
  echo "master job $id (log: $dir/slurm/logs/master-$id.out)"
fi
if (( array )); then
  w=(--job-name="$name-workers" --array="0-$((workers - 1))" --ntasks=1 --output="$dir/slurm/logs/worker-%A_%a.out")
  (( gpus > 0 )) && w+=(--gres="gpu:$gpus")
  [[ -n "$cpus" ]] && w+=(--cpus-per-task="$cpus")
  [[ -n "$time_limit" ]] && w+=(--time="$time_limit")
  wargs=(--device "$device" --slots "$slots")
  [[ -n "$data" ]] && wargs+=(--data "$(cd "$data" && pwd)")
  id=$(submit "${common[@]}" "${w[@]}" "${extra[@]}" "$job" worker "$dir" "$bin_dir" "$margin" "$max_timeouts" "${wargs[@]}")
  echo "workers $id" >> "$dir/slurm/jobs"
  echo "worker array $id: $workers tasks, workers slurm-${id}_0 … slurm-${id}_$((workers - 1)), --device $device (logs: $dir/slurm/logs/worker-${id}_K.out)"
fi
echo "cancel with: $here/deploy/slurm/cancel.sh $dir"
