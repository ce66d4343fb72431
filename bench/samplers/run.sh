#!/usr/bin/env bash
# Sampler benchmark (not a test): hps's samplers against Optuna's on the
# same problems, domains, budgets and seeds, sequentially and with 4
# proposals outstanding. Prints, per problem set, a sequential and a
# parallel table of mean log10 simple regret (lower is better) with CPU
# seconds per run beside it, the duplicate counts, and the issue-16 bar.
#
#   bench/samplers/run.sh                          # the defaults below
#   SEEDS=3 BBOB_DIMS= bench/samplers/run.sh       # a quick look
#   BBOB_DIMS=2,5,10 BBOB_INSTANCES=6-15 JOBS=2 bench/samplers/run.sh
#
# Problems: the original functions (branin, hartmann6, styblinski_tang4,
# rosenbrock4) and a mixed HPO-like space (log floats, ints, a
# categorical) at seeds 0..SEEDS-1, and the COCO/BBOB noiseless suite
# (cocoex.BareProblem, domain [-5,5]^d, regret against its best_value())
# at each of BBOB_DIMS for instances BBOB_INSTANCES (the instance is also
# the seed). Instances 1-5 are the ones to tune on; the defaults report
# 6-15 only (nothing in hps was tuned on any of them).
#
# Design: bench.py drives every run of both sides through one loop and
# evaluates every problem itself (the same Python code for both).
# Optuna's samplers run in it through ask/tell; hps's samplers run in
# `bench-samplers serve` (release build), the sampler alone in process,
# asked and told over a pipe: each proposal sees the told results as
# history and the asked, untold settings as pending, as the master passes
# them. Modes (MODES): seq; async4 (ask 4, tell the oldest, ask again; hps
# study in async mode, queue 4); sync4 (hps only: batches of 4, sync mode,
# batch 4). random and quasi_random ignore pending settings and run only
# in seq. On BBOB hps's `gp` is left out by default (BBOB_HPS_SAMPLERS):
# on a numeric space below 250 finished trials `auto` is the GP, with the
# same proposals (the original functions' rows show it).
#
# Settings (environment): TRIALS (100), SEEDS (10), FUNCS (the original
# four and mixed), BBOB_DIMS (5), BBOB_INSTANCES (6-6), BBOB_FUNCS (1..24),
# MODES (seq,async4,sync4), HPS_SAMPLERS, BBOB_HPS_SAMPLERS,
# OPTUNA_SAMPLERS, JOBS (1), NICE (10); RESUME=1 keeps the runs already in
# results/bench.txt and adds the missing ones (an interrupted run, or more
# seeds or instances). Optuna's GPSampler is most of the
# time: 13-18 CPU seconds a 100-trial run against hps's GP's 1.4-1.8.
# Measured cost (CPU seconds, all samplers and modes): 450 per original
# function at 10 seeds, 40 per BBOB 5-D function and instance. The
# defaults take about 55 CPU minutes, i.e. about 55 minutes at JOBS=1 on a
# core of their own (on 2 cores shared with other work: much more); each
# further 5-D instance (BBOB_INSTANCES=6-15: 9 more) adds about 16.
#
# Needs cargo and python3 (with venv); installs the pinned Python packages
# from PyPI into bench/samplers/.venv on first use (torch, for Optuna's
# GPSampler, with its CUDA libraries is several GB; it runs on the CPU,
# one thread). Raw results: bench/samplers/results/bench.txt.
set -euo pipefail
cd "$(dirname "$0")"

TRIALS=${TRIALS:-100}
JOBS=${JOBS:-1}
NICE=${NICE:-10}
export SEEDS=${SEEDS:-10}
export BBOB_DIMS=${BBOB_DIMS-5}
export BBOB_INSTANCES=${BBOB_INSTANCES:-6-6}
# One thread per run: JOBS is the number of cores used.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PACKAGES=(optuna==5.0.0 cmaes==0.13.1 scipy==1.17.1 torch==2.15.0 coco-experiment==2.8.2)

mkdir -p results

echo "== building hps's samplers (release) ==" >&2
cargo build --release --quiet --manifest-path Cargo.toml --target-dir target

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv ==" >&2
    python3 -m venv .venv
fi
# Idempotent: pip is run only when an import or a pinned version is missing.
if ! .venv/bin/python - "${PACKAGES[@]}" <<'EOF' 2>/dev/null; then
import sys
from importlib.metadata import version
import optuna, cmaes, scipy, torch, cocoex  # noqa: F401
sys.exit(any(version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
EOF
    echo "== pip install ${PACKAGES[*]} (first run: several GB) ==" >&2
    .venv/bin/pip install --disable-pip-version-check --quiet "${PACKAGES[@]}"
fi

echo "== $TRIALS trials; seeds $SEEDS; BBOB dims '${BBOB_DIMS}' instances $BBOB_INSTANCES; $JOBS jobs at nice $NICE ==" >&2
start=$(date +%s)
if [ "${RESUME:-}" = 1 ]; then
    export RESUME=results/bench.txt  # keep its runs, add the missing ones
else
    unset RESUME
    : > results/bench.txt
fi
nice -n "$NICE" .venv/bin/python bench.py "$TRIALS" "$JOBS" >> results/bench.txt
echo "== $(( $(date +%s) - start )) s ==" >&2

.venv/bin/python table.py results/bench.txt
