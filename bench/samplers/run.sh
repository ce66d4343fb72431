#!/usr/bin/env bash
# Sampler benchmark (not a test): hps's samplers against Optuna's on the
# analytic functions, same domains, budget and seeds. Prints one table of
# mean log10 simple regret (lower is better).
#
#   bench/samplers/run.sh            # 100 trials, seeds 0..9
#   TRIALS=200 SEEDS=20 bench/samplers/run.sh
#
# Needs cargo and python3 (with venv); installs Optuna from PyPI into
# bench/samplers/.venv on first use. Raw results go to bench/samplers/results/.
set -euo pipefail
cd "$(dirname "$0")"

TRIALS=${TRIALS:-100}
SEEDS=${SEEDS:-10}
JOBS=${JOBS:-$(nproc)}
OPTUNA=${OPTUNA:-optuna==5.0.0}
CMAES=${CMAES:-cmaes==0.13.1}

mkdir -p results

echo "== building hps's samplers (release) ==" >&2
cargo build --release --quiet --manifest-path Cargo.toml --target-dir target
echo "== hps: $TRIALS trials x $SEEDS seeds ==" >&2
./target/release/bench-samplers "$TRIALS" "$SEEDS" > results/hps.txt

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv ==" >&2
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import optuna, cmaes" 2>/dev/null; then
    echo "== pip install $OPTUNA $CMAES ==" >&2
    .venv/bin/pip install --quiet "$OPTUNA" "$CMAES"
fi
echo "== optuna $(.venv/bin/python -c 'import optuna; print(optuna.__version__)'): $TRIALS trials x $SEEDS seeds, $JOBS jobs ==" >&2
.venv/bin/python optuna_bench.py "$TRIALS" "$SEEDS" "$JOBS" > results/optuna.txt

.venv/bin/python table.py results/hps.txt results/optuna.txt
