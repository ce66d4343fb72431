"""Optuna's samplers on the functions, domains, budget and seeds of the hps
sampler benchmark. Prints `function sampler seed regret` lines.

Usage: optuna_bench.py TRIALS SEEDS [JOBS]
"""

import math
import sys
import warnings
from multiprocessing import Pool

import optuna

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore")


def branin(x):
    x1, x2 = x
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


ALPHA = [1.0, 1.2, 3.0, 3.2]
A = [
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
]
P = [
    [1312, 1696, 5569, 124, 8283, 5886],
    [2329, 4135, 8307, 3736, 1004, 9991],
    [2348, 1451, 3522, 2883, 3047, 6650],
    [4047, 8828, 8732, 5743, 1091, 381],
]


def hartmann6(x):
    return -sum(
        ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j] * 1e-4) ** 2 for j in range(6)))
        for i in range(4)
    )


def rosenbrock(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def styblinski_tang(x):
    return 0.5 * sum(v**4 - 16 * v * v + 5 * v for v in x)


# name: (function, domain, optimum) -- as hps_common::functions.
FUNCTIONS = {
    "branin": (branin, [(-5.0, 10.0), (0.0, 15.0)], 0.397887357729738),
    "hartmann6": (hartmann6, [(0.0, 1.0)] * 6, -3.32236801141551),
    "styblinski_tang4": (styblinski_tang, [(-5.0, 5.0)] * 4, -39.16616570377141 * 4),
    "rosenbrock4": (rosenbrock, [(-5.0, 10.0)] * 4, 0.0),
}

SAMPLERS = {
    "optuna_random": lambda s: optuna.samplers.RandomSampler(seed=s),
    # Optuna 5's default TPE is multivariate for single-objective studies.
    "optuna_tpe": lambda s: optuna.samplers.TPESampler(seed=s),
    "optuna_tpe_indep": lambda s: optuna.samplers.TPESampler(seed=s, multivariate=False),
    "optuna_cmaes": lambda s: optuna.samplers.CmaEsSampler(seed=s),
}


def run(job):
    fname, sname, seed, trials = job
    f, domain, opt = FUNCTIONS[fname]

    def objective(trial):
        x = [trial.suggest_float(f"x{i}", lo, hi) for i, (lo, hi) in enumerate(domain)]
        return f(x)

    study = optuna.create_study(sampler=SAMPLERS[sname](seed))
    study.optimize(objective, n_trials=trials)
    return f"{fname} {sname} {seed} {study.best_value - opt:e}"


if __name__ == "__main__":
    trials, seeds = int(sys.argv[1]), int(sys.argv[2])
    jobs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    work = [(f, s, seed, trials) for f in FUNCTIONS for s in SAMPLERS for seed in range(seeds)]
    with Pool(jobs) as pool:
        for line in pool.imap(run, work):
            print(line, flush=True)
