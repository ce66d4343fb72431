"""Side-by-side table of mean log10 simple regret from `function sampler
seed regret` lines (bench-samplers and optuna_bench.py output)."""

import collections
import math
import sys

FUNCTIONS = ["branin", "hartmann6", "styblinski_tang4", "rosenbrock4"]
HPS = ["hps_random", "hps_quasi_random", "hps_tpe", "hps_cmaes", "hps_gp", "hps_auto"]
OPTUNA = ["optuna_random", "optuna_tpe", "optuna_tpe_indep", "optuna_cmaes"]
HEAD = {
    "hps_random": "random",
    "hps_quasi_random": "qrs",
    "hps_tpe": "tpe",
    "hps_cmaes": "cmaes",
    "hps_gp": "gp",
    "hps_auto": "auto",
    "optuna_random": "random",
    "optuna_tpe": "tpe(mv)",
    "optuna_tpe_indep": "tpe(ind)",
    "optuna_cmaes": "cmaes",
}
FLOOR = 1e-12  # a regret of exactly 0 counts as 1e-12

runs = collections.defaultdict(list)
for path in sys.argv[1:]:
    for line in open(path):
        f, s, _seed, r = line.split()
        runs[(f, s)].append(math.log10(max(float(r), FLOOR)))


def mean(f, s):
    v = runs.get((f, s))
    return sum(v) / len(v) if v else float("nan")


seeds = sorted({len(v) for v in runs.values()})
print(f"mean log10 simple regret over {'/'.join(map(str, seeds))} seeds (lower is better)\n")
cols = [HEAD[s] for s in HPS] + [HEAD[s] for s in OPTUNA]
print("| function | " + " | ".join(f"hps {c}" for c in cols[:4]) + " | " + " | ".join(f"optuna {c}" for c in cols[4:]) + " | best hps - best optuna |")
print("|---" * (len(cols) + 2) + "|")
for f in FUNCTIONS:
    h = [mean(f, s) for s in HPS]
    o = [mean(f, s) for s in OPTUNA]
    bh, bo = min(h), min(o)
    cell = lambda v, best: f"**{v:+.2f}**" if v == best else f"{v:+.2f}"
    print(f"| {f} | " + " | ".join(cell(v, bh) for v in h) + " | " + " | ".join(cell(v, bo) for v in o) + f" | {bh - bo:+.2f} |")
