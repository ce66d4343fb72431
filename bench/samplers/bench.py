"""hps's samplers and Optuna's on the same problems, driven by one loop.

Usage: bench.py TRIALS JOBS  (which runs: env vars, see run.sh)

Every run, of either side, is driven here: the problem (its space, its
function and its optimum) is evaluated by this file, the same code for
both. Optuna's samplers run in this process through ask/tell; hps's run in
`bench-samplers serve` (one per worker process, release build), the
sampler alone in process, asked and told over a pipe: `ask` proposes with
every told result as history and every asked, untold setting as pending,
as the master passes them. So both sides see the same domains, budgets,
seeds and evaluation order.

Modes: `seq` (one at a time), `async4` (4 outstanding: ask 4, then each
time the oldest is told, ask one more; hps's study in async mode, queue 4)
and `sync4` (hps only: ask 4, tell all 4; the study in sync mode, batch 4,
which also sets CMA-ES's population).

Prints one line per run:
`problem sampler mode seed regret wall_s cpu_s dup near_pending near_any`:
`dup` counts the proposals with the same parameters as an earlier one of
their run; `near_pending` those within 1e-3 (Euclidean, in the unit cube
of the numeric parameters, categoricals equal) of a setting still
outstanding when they were asked for (what 4 workers should never get:
two of them evaluating the same point); `near_any` those within 1e-3 of
any earlier one (duplicates included; a sampler refining its best point
legitimately makes some).
"""

import collections
import json
import math
import os
import subprocess
import sys
import time
import warnings
from multiprocessing import Pool

import optuna

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
NEAR = 1e-3


# --- the original analytic functions (as hps_common::functions) ----------
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


ORIGINAL = {
    "branin": (branin, [(-5.0, 10.0), (0.0, 15.0)], 0.397887357729738),
    "hartmann6": (hartmann6, [(0.0, 1.0)] * 6, -3.32236801141551),
    "styblinski_tang4": (styblinski_tang, [(-5.0, 5.0)] * 4, -39.16616570377141 * 4),
    "rosenbrock4": (rosenbrock, [(-5.0, 10.0)] * 4, 0.0),
}


# --- the mixed, HPO-like space ------------------------------------------
# (name, type, low/choices, high, log). A made-up "validation loss" with
# the shapes of a training run: a log-scale learning rate whose best value
# depends on the optimizer, weight decay on a log scale, ints for depth and
# width (log), dropout. The optimum is 0 (adam, lr 10^-3.2, wd 10^-4,
# layers 4, units 256, dropout 0.2). sgd has a wide basin with a worse
# floor (0.05): a sampler that commits to it early is stuck above 0.05.
MIXED_SPACE = [
    ("dropout", "float", 0.0, 0.8, False),
    ("layers", "int", 1, 8, False),
    ("lr", "float", 1e-5, 1.0, True),
    ("optimizer", "categorical", ["sgd", "adam", "rmsprop"], None, False),
    ("units", "int", 16, 1024, True),
    ("weight_decay", "float", 1e-6, 1e-1, True),
]
OPTIMIZERS = {"sgd": (-1.5, 0.05, 0.1), "adam": (-3.2, 0.0, 0.4), "rmsprop": (-3.6, 0.02, 0.6)}


def mixed(p):
    best_lr, floor, curv = OPTIMIZERS[p["optimizer"]]
    return (
        floor
        + curv * (math.log10(p["lr"]) - best_lr) ** 2
        + 0.02 * (math.log10(p["weight_decay"]) + 4) ** 2
        + 0.01 * (p["layers"] - 4) ** 2
        + 0.01 * (math.log2(p["units"]) - 8) ** 2
        + 0.1 * (p["dropout"] - 0.2) ** 2
    )


class Problem:
    """A space [(name, type, low, high, log)], a function of the params
    dict and the optimum."""

    def __init__(self, space, f, optimum):
        self.space, self.f, self.optimum = space, f, optimum

    def unit(self, params):
        """(numeric unit-cube coordinates, categorical choices)."""
        num, cat = [], []
        for name, kind, lo, hi, log in self.space:
            v = params[name]
            if kind == "categorical":
                cat.append(v)
            elif log:
                num.append((math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)))
            else:
                num.append((v - lo) / (hi - lo))
        return num, cat


def vector_problem(f, domain, optimum):
    space = [(f"x{i}", "float", lo, hi, False) for i, (lo, hi) in enumerate(domain)]
    return Problem(space, lambda p: f([p[f"x{i}"] for i in range(len(domain))]), optimum)


def problem(name, seed):
    """The problem `name`; for BBOB (`bbob_fFF_dD`) the seed is the instance."""
    if name in ORIGINAL:
        return vector_problem(*ORIGINAL[name])
    if name == "mixed":
        return Problem(MIXED_SPACE, mixed, 0.0)
    if name.startswith("bbob_f"):
        import cocoex
        import numpy as np

        fid, dim = int(name[6:8]), int(name.split("_d")[1])
        bare = cocoex.BareProblem("bbob", fid, dim, seed)
        return vector_problem(lambda x: float(bare(np.array(x))), [(-5.0, 5.0)] * dim, bare.best_value())
    raise SystemExit(f"unknown problem {name!r}")


# --- hps, through `bench-samplers serve` -----------------------------------
HPS_MODE = {
    "seq": {"kind": "sync", "batch": 1},
    "async4": {"kind": "async", "queue": 4},
    "sync4": {"kind": "sync", "batch": 4},
}
_serve = None


def serve():
    global _serve
    if _serve is None:
        exe = os.path.join(HERE, "target", "release", "bench-samplers")
        _serve = subprocess.Popen([exe, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    return _serve


def hps_call(line):
    s = serve()
    s.stdin.write(line + "\n")
    s.stdin.flush()
    answer = s.stdout.readline()
    if not answer:
        raise SystemExit(f"bench-samplers serve died on {line[:200]!r}")
    return answer.strip()


def hps_cpu():
    """CPU seconds of the serve process so far."""
    with open(f"/proc/{serve().pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Hps:
    def __init__(self, prob, kind, seed, mode, trials):
        space = {}
        for name, t, lo, hi, log in prob.space:
            if t == "categorical":
                space[name] = {"type": "categorical", "choices": lo}
            else:
                space[name] = {"type": t, "low": lo, "high": hi, "log": log}
        study = {
            "format_version": 1,
            "name": "bench",
            "space": space,
            "objective": {"metric": "value", "direction": "minimize"},
            "mode": HPS_MODE[mode],
            "sampler": {"kind": kind, "seed": seed},
            "budget": {"trials": trials},
            "trainer": {"kind": "exec", "argv": ["true"]},
        }
        assert hps_call("study " + json.dumps(study)) == "ok"

    def ask(self):
        a = json.loads(hps_call("ask"))
        return a["config"], a["params"]

    def tell(self, handle, value):
        assert hps_call(f"tell {handle} {value!r}") == "ok"


# --- Optuna, through ask/tell ---------------------------------------------
OPTUNA_SAMPLERS = {
    "random": lambda s: optuna.samplers.RandomSampler(seed=s),
    # Optuna 5's default TPE: multivariate, constant liar on.
    "tpe": lambda s: optuna.samplers.TPESampler(seed=s),
    "tpe_indep": lambda s: optuna.samplers.TPESampler(seed=s, multivariate=False),
    "cmaes": lambda s: optuna.samplers.CmaEsSampler(seed=s),
    # Every problem here is noiseless: tell the GP so (its best setting).
    "gp": lambda s: optuna.samplers.GPSampler(seed=s, deterministic_objective=True),
}


class Optuna:
    def __init__(self, prob, kind, seed, mode, trials):
        self.space = prob.space
        self.study = optuna.create_study(sampler=OPTUNA_SAMPLERS[kind](seed))

    def ask(self):
        t = self.study.ask()
        params = {}
        for name, kind, lo, hi, log in self.space:
            if kind == "categorical":
                params[name] = t.suggest_categorical(name, lo)
            elif kind == "int":
                params[name] = t.suggest_int(name, lo, hi, log=log)
            else:
                params[name] = t.suggest_float(name, lo, hi, log=log)
        return t, params

    def tell(self, handle, value):
        self.study.tell(handle, value)


def cpu_now(side):
    return time.process_time() + (hps_cpu() if side == "hps" else 0.0)


def run(job):
    pname, sampler, mode, seed, trials = job
    side, kind = sampler.split("_", 1)
    if side == "optuna":
        import torch

        torch.set_num_threads(1)
    prob = problem(pname, seed)
    t0, c0 = time.perf_counter(), cpu_now(side)
    opt = (Hps if side == "hps" else Optuna)(prob, kind, seed, mode, trials)
    k = 1 if mode == "seq" else 4
    queue = collections.deque()
    seen, best, asked, dups, near_pending, near_any = [], math.inf, 0, 0, 0, 0

    def ask():
        nonlocal asked, dups, near_pending, near_any
        handle, params = opt.ask()
        num, cat = prob.unit(params)
        dups += any(c == cat and n == num for n, c in seen)
        near_pending += any(c == cat and math.dist(n, num) < NEAR for _, _, (n, c) in queue)
        near_any += any(c == cat and math.dist(n, num) < NEAR for n, c in seen)
        seen.append((num, cat))
        queue.append((handle, params, (num, cat)))
        asked += 1

    def tell_oldest():
        nonlocal best
        handle, params, _ = queue.popleft()
        y = prob.f(params)
        best = min(best, y)
        opt.tell(handle, y)

    while asked < trials or queue:
        if mode == "sync4":
            for _ in range(min(k, trials - asked)):
                ask()
            while queue:
                tell_oldest()
        else:
            while asked < trials and len(queue) < k:
                ask()
            tell_oldest()
    wall, cpu = time.perf_counter() - t0, cpu_now(side) - c0
    regret = max(best - prob.optimum, 0.0)
    return f"{pname} {sampler} {mode} {seed} {regret:e} {wall:.3f} {cpu:.3f} {dups} {near_pending} {near_any}"


def env_list(name, default):
    return [v for v in os.environ.get(name, default).split(",") if v]


def jobs(trials):
    seeds = int(os.environ.get("SEEDS", "10"))
    hps = env_list("HPS_SAMPLERS", "random,quasi_random,tpe,cmaes,gp,auto")
    # On a numeric space below 250 finished trials auto is the GP.
    bbob_hps = env_list("BBOB_HPS_SAMPLERS", ",".join(s for s in hps if s != "gp"))
    opt = env_list("OPTUNA_SAMPLERS", "random,tpe,tpe_indep,cmaes,gp")
    modes = env_list("MODES", "seq,async4,sync4")
    # random and quasi-random ignore pending settings: their parallel runs
    # would repeat the sequential ones.
    blind = {"random", "quasi_random"}

    def samplers(mode, hps):
        return [f"hps_{s}" for s in hps if mode == "seq" or s not in blind] + [
            f"optuna_{s}" for s in opt if mode != "sync4" and (mode == "seq" or s not in blind)
        ]

    problems = []  # (name, seeds, hps samplers)
    for f in env_list("FUNCS", "branin,hartmann6,styblinski_tang4,rosenbrock4,mixed"):
        problems.append((f, range(seeds), hps))
    lo, hi = map(int, os.environ.get("BBOB_INSTANCES", "6-6").split("-"))
    for d in env_list("BBOB_DIMS", "5"):
        for fid in env_list("BBOB_FUNCS", ",".join(map(str, range(1, 25)))):
            problems.append((f"bbob_f{int(fid):02d}_d{int(d)}", range(lo, hi + 1), bbob_hps))
    # The slowest sampler first within each problem, so that a pool of
    # several jobs does not end on one long run.
    slow = {"optuna_gp": 0, "hps_gp": 1, "hps_auto": 1}
    return [
        (p, s, m, seed, trials)
        for p, seeds_, hps_ in problems
        for m in modes
        for s in sorted(samplers(m, hps_), key=lambda s: slow.get(s, 2))
        for seed in seeds_
    ]


if __name__ == "__main__":
    trials, njobs = int(sys.argv[1]), int(sys.argv[2])
    work = jobs(trials)
    # RESUME=FILE: skip the runs FILE already has (an interrupted run).
    if os.environ.get("RESUME") and os.path.exists(os.environ["RESUME"]):
        done = {tuple(line.split()[:4]) for line in open(os.environ["RESUME"]) if len(line.split()) == 10}
        work = [j for j in work if (j[0], j[1], j[2], str(j[3])) not in done]
    print(f"{len(work)} runs", file=sys.stderr)
    with Pool(njobs) as pool:
        for line in pool.imap_unordered(run, work):
            print(line, flush=True)
