#!/usr/bin/env python3
"""Print the ASHA-versus-random table from bench/asha/run.sh's output."""
import glob
import json
import os
import sys

out = sys.argv[1]
targets = [0.25, 0.22, 0.21, 0.20, 0.195, 0.19, 0.185]
runs = {}
for kind in ("random", "asha"):
    start = float(open(os.path.join(out, kind + ".start")).read())
    rows = []
    # results/t012/t012345.json (directory format 2) or results/t012345.json (1)
    for f in glob.glob(os.path.join(out, kind, "results", "**", "*.json"), recursive=True):
        r = json.load(open(f))
        v = r.get("metrics", {}).get("val_error")
        if v is not None:
            rows.append((r["finished_at_unix"] - start, v, r["status"], len(r.get("curve", []))))
    rows.sort()
    runs[kind] = rows

def first_time(rows, target):
    for t, v, _, _ in rows:
        if v <= target:
            return t
    return None

print("| | random | asha |")
print("|---|---|---|")
for kind_line, f in [
    ("trials finished", lambda rows: str(len(rows))),
    ("trials trained to 9 epochs", lambda rows: str(sum(1 for r in rows if r[3] == 9))),
    ("epochs trained", lambda rows: str(sum(r[3] for r in rows))),
    ("best val_error", lambda rows: "%.3f" % min((r[1] for r in rows), default=float("nan"))),
]:
    print("| %s | %s | %s |" % (kind_line, f(runs["random"]), f(runs["asha"])))
for target in targets:
    a = first_time(runs["random"], target)
    b = first_time(runs["asha"], target)
    fmt = lambda t: "—" if t is None else "%.0f s" % t
    ratio = ""
    if a is not None and b is not None and b > 0:
        ratio = " (%.1fx)" % (a / b)
    print("| time to val_error ≤ %.3f | %s | %s%s |" % (target, fmt(a), fmt(b), ratio))
