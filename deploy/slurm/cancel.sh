#!/usr/bin/env bash
# Cancel a study's Slurm jobs: the master and worker jobs that
# deploy/slurm/submit.sh listed in DIR/slurm/jobs (never found by job name,
# which other users' or other studies' jobs may share).
#
#   deploy/slurm/cancel.sh DIR
#
# scancel sends SIGTERM: workers hand their trials back to the queue with
# their checkpoints, the master releases the study, and nothing is
# requeued. Run submit.sh again to continue the study later.
set -euo pipefail
[[ $# -eq 1 && "$1" != -* ]] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
dir="$1"
jobs="$dir/slurm/jobs"
[[ -f "$jobs" ]] || { echo "cancel.sh: $jobs not found; were this study's jobs submitted with deploy/slurm/submit.sh?" >&2; exit 1; }
command -v scancel >/dev/null 2>&1 || { echo "cancel.sh: scancel not found: run this on a Slurm login node" >&2; exit 1; }
ids=$(awk 'NF >= 2 && ($1 == "master" || $1 == "workers") {print $2}' "$jobs" | sort -u | tr '\n' ' ')
[[ -n "${ids// /}" ]] || { echo "cancel.sh: $jobs lists no jobs" >&2; exit 1; }
# Jobs that already ended are no error.
# shellcheck disable=SC2086
scancel $ids 2>/dev/null || true
echo "cancelled the jobs of $dir: $ids"
