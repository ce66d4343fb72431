"""Tables from bench.py's lines (`problem sampler mode seed regret wall_s
cpu_s dup near_pending near_any`): mean log10 simple regret (lower is
better) with the mean CPU seconds per 100-trial run beside it, one
sequential and one parallel table per problem set, the duplicate counts,
and the issue's bar and moonshot checked.

Usage: table.py FILE... (later lines for the same run replace earlier ones)
"""

import collections
import math
import sys

FLOOR = 1e-12  # a regret of exactly 0 counts as 1e-12
TRIALS = 100
ORIGINAL = ["branin", "hartmann6", "styblinski_tang4", "rosenbrock4"]
HPS = ["random", "quasi_random", "tpe", "cmaes", "gp", "auto"]
OPT = ["random", "tpe", "tpe_indep", "cmaes", "gp"]
SHORT = {"quasi_random": "qrs", "tpe_indep": "tpe(ind)", "tpe": "tpe(mv)"}
PAR_HPS = ["tpe", "cmaes", "gp", "auto"]
PAR_OPT = ["tpe", "tpe_indep", "cmaes", "gp"]

runs = {}  # (problem, sampler, mode, seed) -> fields
for path in sys.argv[1:]:
    for line in open(path):
        f = line.split()
        if len(f) == 10:
            runs[tuple(f[:4])] = f[4:]

cells = collections.defaultdict(list)  # (problem, sampler, mode) -> rows
for (p, s, m, _seed), (r, wall, cpu, dup, npend, nany) in runs.items():
    cells[(p, s, m)].append((math.log10(max(float(r), FLOOR)), float(cpu), int(dup), int(npend), int(nany), float(wall)))


def mean(p, s, m, i=0):
    v = cells.get((p, s, m))
    return sum(x[i] for x in v) / len(v) if v else None


def fmt(v, best):
    if v is None:
        return "–"
    t = f"{v:+.2f}"
    return f"**{t}**" if best is not None and v == best else t


def cell(p, s, m, best):
    v = mean(p, s, m)
    if v is None:
        return "–"
    return f"{fmt(v, best)} ({mean(p, s, m, 1) * 100 / TRIALS:.1f}s)"


def best_of(p, side, names, m):
    vals = [mean(p, f"{side}_{n}", m) for n in names]
    vals = [v for v in vals if v is not None]
    return min(vals) if vals else None


def counts(p_list, label, names_by_mode):
    """Number of runs per cell, as a short string."""
    ns = sorted({len(cells[(p, s, m)]) for p in p_list for m, ss in names_by_mode for s in ss if (p, s, m) in cells})
    return "/".join(map(str, ns)) or "0"


def group(title, problems):
    problems = [p for p in problems if any(k[0] == p for k in cells)]
    if not problems:
        return
    print(f"### {title}\n")
    seq_names = [f"hps_{s}" for s in HPS] + [f"optuna_{s}" for s in OPT]
    n = counts(problems, title, [("seq", seq_names)])
    print(f"Sequential: mean log10 simple regret after {TRIALS} trials over {n} runs (lower is better), mean CPU seconds per run in brackets (the sampler's process; the functions cost nothing).\n")
    head = [f"hps {SHORT.get(s, s)}" for s in HPS] + [f"optuna {SHORT.get(s, s)}" for s in OPT]
    print("| function | " + " | ".join(head) + " | best hps − best optuna |")
    print("|---" * (len(head) + 2) + "|")
    seq_win, seq_moon = [], []
    for p in problems:
        bh, bo = best_of(p, "hps", HPS, "seq"), best_of(p, "optuna", OPT, "seq")
        row = [cell(p, f"hps_{s}", "seq", bh) for s in HPS] + [cell(p, f"optuna_{s}", "seq", bo) for s in OPT]
        diff = f"{bh - bo:+.2f}" if bh is not None and bo is not None else "–"
        print(f"| {p} | " + " | ".join(row) + f" | {diff} |")
        if bh is not None and bo is not None:
            seq_win.append((p, bh < bo))
            a = mean(p, "hps_auto", "seq")
            if a is not None:
                seq_moon.append((p, a <= bo))
    print()

    par_modes = [("async4", PAR_HPS), ("sync4", PAR_HPS)]
    par_names = [("async4", [f"hps_{s}" for s in PAR_HPS] + [f"optuna_{s}" for s in PAR_OPT]), ("sync4", [f"hps_{s}" for s in PAR_HPS])]
    n = counts(problems, title, par_names)
    print(
        f"4 workers: 4 proposals outstanding (hps async: queue 4; hps sync: batches of 4; Optuna: ask/tell with 4 trials running), over {n} runs.\n"
    )
    head = [f"hps async {s}" for s in PAR_HPS] + [f"hps sync {s}" for s in PAR_HPS] + [f"optuna {SHORT.get(s, s)}" for s in PAR_OPT]
    print("| function | " + " | ".join(head) + " | best hps async − best optuna | best hps sync − best optuna |")
    print("|---" * (len(head) + 3) + "|")
    par_win = {"async4": [], "sync4": []}
    par_moon = []
    for p in problems:
        bo = best_of(p, "optuna", PAR_OPT, "async4")
        ba, bs = best_of(p, "hps", PAR_HPS, "async4"), best_of(p, "hps", PAR_HPS, "sync4")
        row = [cell(p, f"hps_{s}", "async4", ba) for s in PAR_HPS]
        row += [cell(p, f"hps_{s}", "sync4", bs) for s in PAR_HPS]
        row += [cell(p, f"optuna_{s}", "async4", bo) for s in PAR_OPT]
        diffs = []
        for m, b in (("async4", ba), ("sync4", bs)):
            if b is not None and bo is not None:
                diffs.append(f"{b - bo:+.2f}")
                par_win[m].append((p, b < bo))
            else:
                diffs.append("–")
        a = mean(p, "hps_auto", "async4")
        if a is not None and bo is not None:
            par_moon.append((p, a <= bo))
        print(f"| {p} | " + " | ".join(row) + " | " + " | ".join(diffs) + " |")
    print()

    # Duplicates, summed over the group's runs.
    print("Duplicate proposals, summed over the runs above (dup: same parameters as an earlier proposal of the run; near pending: within 1e-3 in the unit cube of a setting still outstanding; near any: within 1e-3 of any earlier one):\n")
    print("| sampler | mode | runs | dup | near pending | near any |")
    print("|---|---|---|---|---|---|")
    keys = sorted({(s, m) for (p, s, m) in cells if p in problems}, key=lambda k: (k[1] != "seq", k[1], k[0]))
    for s, m in keys:
        rows = [x for p in problems for x in cells.get((p, s, m), [])]
        d, npd, na = (sum(x[i] for x in rows) for i in (2, 3, 4))
        print(f"| {s.replace('_', ' ', 1)} | {m} | {len(rows)} | {d} | {npd} | {na} |")
    print()

    def verdict(wins):
        w = [p for p, ok in wins if ok]
        return f"{len(w)} of {len(wins)}" + (f" ({', '.join(w)})" if w and len(w) < len(wins) else "")

    print(f"hps's best sampler beats Optuna's best: sequential {verdict(seq_win)}; 4 workers async {verdict(par_win['async4'])}, sync {verdict(par_win['sync4'])}.")
    lost = [p for p, ok in seq_moon + par_moon if not ok]
    def ratio(i):
        a = [mean(p, "hps_auto", m, i) for p in problems for m in ("seq", "async4")]
        g = [mean(p, "optuna_gp", m, i) for p in problems for m in ("seq", "async4")]
        a, g = [t for t in a if t is not None], [t for t in g if t is not None]
        return (sum(a) / len(a)) / (sum(g) / len(g)) if a and g else float("nan")

    print(
        f"Moonshot: auto at least as good as Optuna's best on {len(seq_moon) - sum(not ok for _, ok in seq_moon)} of {len(seq_moon)} sequential, "
        f"{len(par_moon) - sum(not ok for _, ok in par_moon)} of {len(par_moon)} async"
        + (f" (not on: {', '.join(sorted(set(lost)))})" if lost else "")
        + f"; auto's time per run is {ratio(1):.3f} of Optuna GPSampler's in CPU seconds, {ratio(5):.3f} in wall seconds.\n"
    )


problems = sorted({k[0] for k in cells})
group("The original functions", ORIGINAL)
group("Mixed HPO-like space (log floats, ints, a categorical)", ["mixed"])
for d in sorted({int(p.split("_d")[1]) for p in problems if p.startswith("bbob_")}):
    insts = sorted({int(k[3]) for k in runs if k[0].startswith("bbob_") and k[0].endswith(f"_d{d}")})
    group(f"BBOB, {d}-D, instances {','.join(map(str, insts))} (one run each, seed = instance)", [f"bbob_f{f:02d}_d{d}" for f in range(1, 25)])
