#!/usr/bin/env bash
# The batch script of deploy/slurm/submit.sh (not run by hand):
#
#   job.sh master|worker DIR BIN_DIR SIGNAL_MARGIN MAX_TIMEOUTS [WORKER-ARGS...]
#
# Runs hps-master or one hps-worker (id slurm-<array job>_<task>) in the
# study DIR and passes Slurm's signals on to it. Slurm sends SIGUSR2 to this
# script alone (--signal=B:USR2@SIGNAL_MARGIN); the process hands its trial
# back (the master releases the study), and this script then requeues its
# own job — the array task, ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID},
# never the whole array.
#
# A SIGUSR2 with at most SIGNAL_MARGIN + 60 s left before the time limit
# is the time limit's warning (Slurm may send it up to 60 s early); any
# other is a preemption notice or a person's `scancel --batch
# --signal=USR2`. Preemptions are requeued without limit, and so are time
# limits in which the worker finished a trial; after MAX_TIMEOUTS time
# limits in a row without a finished trial (a trial that never fits the
# limit) the task is not requeued. The master is always requeued: it keeps
# no trial of its own. A SIGTERM is Slurm ending the job (scancel, a
# preemption that Slurm requeues itself, the limit itself): no requeue.
set -uo pipefail

role="$1" dir="$2" bin_dir="$3" margin="$4" max_timeouts="$5"
shift 5

log() { echo "[hps-slurm $(date -u +%FT%TZ)] $*"; }

if [[ -n "${SLURM_ARRAY_JOB_ID:-}" && -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
  key="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
else
  key="${SLURM_JOB_ID:?not running under Slurm}"
fi
id="slurm-$key"
node="${SLURMD_NODENAME:-$(hostname)}"
log "$role $id: job $key (id ${SLURM_JOB_ID:-?}), start ${SLURM_RESTART_COUNT:-0} after requeues, node $node, CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}"

finished() { [[ -f "$dir/finished.json" ]]; }

# Array tasks that start after the study finished (or wait in the queue):
# nothing to do, and nothing may stay queued.
cancel_pending_workers() {
  [[ -f "$dir/slurm/jobs" ]] || return 0
  local ids
  ids=$(awk '$1 == "workers" {print $2}' "$dir/slurm/jobs" | tr '\n' ' ')
  [[ -n "${ids// /}" ]] || return 0
  # shellcheck disable=SC2086
  scancel --state=PENDING $ids 2>/dev/null || true
  log "study finished; cancelled the worker tasks still queued (jobs $ids)"
}

if finished; then
  log "the study is finished (finished.json); nothing to do"
  [[ "$role" == master ]] && cancel_pending_workers
  exit 0
fi

# Seconds left before this job's time limit (a large number when unlimited).
time_left() {
  local l d=0 h=0 m=0 s=0
  l=$(squeue -h -j "${SLURM_JOB_ID}" -o %L 2>/dev/null | head -n1)
  case "$l" in
    ''|UNLIMITED|NOT_SET|INVALID) echo 999999999; return ;;
  esac
  if [[ "$l" == *-* ]]; then d="${l%%-*}"; l="${l#*-}"; fi
  IFS=: read -r -a p <<<"$l"
  case "${#p[@]}" in
    3) h="${p[0]}" m="${p[1]}" s="${p[2]}" ;;
    2) m="${p[0]}" s="${p[1]}" ;;
    *) s="${p[0]}" ;;
  esac
  echo $(( ((10#$d * 24 + 10#$h) * 60 + 10#$m) * 60 + 10#$s ))
}

# Results published by this worker (or its slots `<id>-s<k>`): results/ and
# its shards (results/t012/t012345.json in a directory of format 2), without
# a glob that 100,000 results would make longer than ARG_MAX.
results_by_me() {
  grep -rlE --include='t*.json' "\"worker\": \"$id(-s[0-9]+)?\"" "$dir/results" 2>/dev/null | wc -l
}

child="" usr2=0 timeout=0 ending=0
on_usr2() {
  local left
  left=$(time_left)
  usr2=1
  if (( left <= margin + 60 )); then
    timeout=1
    log "SIGUSR2 with ${left}s left: the time limit's warning; stopping $role $id cleanly"
  else
    log "SIGUSR2 with ${left}s left: a preemption notice; stopping $role $id cleanly"
  fi
  [[ -n "$child" ]] && kill -USR2 "$child" 2>/dev/null
}
on_term() {
  ending=1
  log "SIGTERM: Slurm is ending this job; stopping $role $id cleanly"
  # SIGUSR2, not SIGTERM: the process usually got Slurm's SIGTERM too, and
  # a second SIGTERM would make it exit at once; SIGUSR2 never does.
  [[ -n "$child" ]] && kill -USR2 "$child" 2>/dev/null
}
trap on_usr2 USR2
trap on_term TERM INT

before=0
if [[ "$role" == master ]]; then
  "$bin_dir/hps-master" run "$dir" </dev/null &
elif [[ "$role" == worker ]]; then
  before=$(results_by_me)
  args=("$@")
  if [[ -n "${SLURM_CPUS_PER_TASK:-}" ]] && ! printf '%s\n' "${args[@]}" | grep -qx -- --threads; then
    args+=(--threads "$SLURM_CPUS_PER_TASK")
  fi
  "$bin_dir/hps-worker" "$dir" --id "$id" "${args[@]}" </dev/null &
else
  log "unknown role '$role' (master or worker)"
  exit 2
fi
child=$!

# A trapped signal cuts `wait` short while the child runs on: wait again
# until it is gone, then once more for its status.
rc=0
while :; do
  rc=0; wait "$child" || rc=$?
  kill -0 "$child" 2>/dev/null || break
done
wait "$child" 2>/dev/null; again=$?
(( again == 127 )) || rc=$again
log "$role $id exited with status $rc"

if finished; then
  log "the study is finished"
  [[ "$role" == master ]] && cancel_pending_workers
  exit 0
fi
if (( ending )); then
  log "not requeued by this script (Slurm ends the job; a preemption with PreemptMode=REQUEUE requeues it by itself)"
  exit "$rc"
fi
if (( ! usr2 )); then
  log "$role $id stopped before the study finished, without a signal; not requeued (see the lines above)"
  exit "$rc"
fi

# SIGUSR2: requeue this job (an array task by its own <array>_<task> id).
count_file="$dir/slurm/timeouts/$key"
if [[ "$role" == worker ]]; then
  mkdir -p "$dir/slurm/timeouts"
  done_now=$(( $(results_by_me) - before ))
  if (( ! timeout || done_now > 0 )); then
    rm -f "$count_file"
  else
    n=$(( $(cat "$count_file" 2>/dev/null || echo 0) + 1 ))
    echo "$n" > "$count_file"
    if (( n > max_timeouts )); then
      log "time limit $n times in a row without a finished trial (--max-timeouts $max_timeouts): not requeued; a trial may not fit the time limit (raise --time)"
      exit 0
    fi
  fi
  log "finished $done_now trials in this run"
fi
kind=preemption; (( timeout )) && kind="time limit"
log "requeue after $kind: scontrol requeue $key (start $(( ${SLURM_RESTART_COUNT:-0} + 1 )))"
if ! scontrol requeue "$key"; then
  log "scontrol requeue $key failed; not requeued (is requeueing disabled on this cluster, JobRequeue=0?)"
  exit 1
fi
exit 0
