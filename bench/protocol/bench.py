#!/usr/bin/env python3
"""Throughput of the file protocol (not a test): zero-cost `function` trials
through hps (one master, W workers) and through Optuna's JournalFileBackend
(W processes sharing one journal), back to back in one run.

    bench.py --hps-bin DIR [--trials N] [--workers 2,4,8] [--out DIR] [--no-optuna]

Prints one table row per system and worker count: trials/s over the first
and the last 10 % of the trials (by completion time), the coordinator's CPU
per trial (hps: the master process; Optuna has no coordinator, so the
column is the workers' total CPU per trial), its peak RSS (hps: the master
process alone, sampled; Optuna: the largest worker), the time of
`hps-master status` at the end and of a master restart on the finished
study.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time

FUNCTION = "branin"


def rate(times, lo, hi):
    """Trials per second between the lo-th and hi-th completion."""
    times = sorted(times)
    n = len(times)
    a, b = times[int(lo * (n - 1))], times[int(hi * (n - 1))]
    k = int(hi * (n - 1)) - int(lo * (n - 1))
    return k / (b - a) if b > a else float("inf")


def study_json(trials, workers):
    return {
        "format_version": 1,
        "name": "protocol-bench",
        "space": {
            "x0": {"type": "float", "low": -5.0, "high": 10.0},
            "x1": {"type": "float", "low": 0.0, "high": 15.0},
        },
        "objective": {"metric": "value", "direction": "minimize"},
        "sampler": {"kind": "random", "seed": 1},
        "budget": {"trials": trials, "epochs": 1},
        "mode": {"kind": "async", "queue": workers},
        "trainer": {"kind": "function", "name": FUNCTION},
    }


class RssSampler(threading.Thread):
    """The peak resident memory of one process (not its children: the
    master writes its report in a child), sampled from /proc every 0.1 s."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.stop = pid, 0, False

    def run(self):
        while not self.stop:
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.1)


def wait_rusage(proc):
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru


def run_hps(bin_dir, out, trials, workers):
    d = os.path.join(out, f"hps-{workers}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    spec = os.path.join(out, f"study-{workers}.json")
    with open(spec, "w") as f:
        json.dump(study_json(trials, workers), f)
    master = os.path.join(bin_dir, "hps-master")
    worker = os.path.join(bin_dir, "hps-worker")
    subprocess.run([master, "init", d, "--study", spec], check=True, stdout=subprocess.DEVNULL)
    log = open(os.path.join(out, f"hps-{workers}.log"), "w")
    env = dict(os.environ, RUST_LOG="warn")
    t0 = time.time()
    m = subprocess.Popen([master, "run", d], stdout=log, stderr=log, env=env)
    rss = RssSampler(m.pid)
    rss.start()
    ws = [subprocess.Popen([worker, d, "--id", f"w{i}"], stdout=log, stderr=log, env=env)
          for i in range(workers)]
    ru = wait_rusage(m)
    wall = time.time() - t0
    rss.stop = True
    for w in ws:
        w.wait()
    if m.returncode != 0:
        sys.exit(f"hps master exited {m.returncode}; see {log.name}")
    results = os.path.join(d, "results")
    times = []
    for root, _, files in os.walk(results):
        times += [os.stat(os.path.join(root, f)).st_mtime for f in files if f.endswith(".json")]
    if len(times) != trials:
        sys.exit(f"hps: {len(times)} results for {trials} trials")
    t = time.time()
    subprocess.run([master, "status", d], check=True, stdout=subprocess.DEVNULL)
    status_s = time.time() - t
    # Ready: the restarted master has rebuilt its state ("recovered …" in
    # its log); it then finds the study finished and writes the report.
    os.remove(os.path.join(d, "finished.json"))
    rlog = os.path.join(out, f"hps-{workers}-restart.log")
    with open(rlog, "w") as f:
        t = time.time()
        p = subprocess.Popen([master, "run", d], stdout=f, stderr=f, env=dict(env, RUST_LOG="info"))
        while "recovered " not in open(rlog).read():
            if p.poll() is not None or time.time() - t > 300:
                sys.exit(f"the restarted master did not recover; see {rlog}")
            time.sleep(0.02)
        restart_s = time.time() - t
        p.wait()
    cpu = ru.ru_utime + ru.ru_stime
    return dict(system="hps", workers=workers, trials=trials, wall=wall,
                first=rate(times, 0.0, 0.1), last=rate(times, 0.9, 1.0),
                cpu_ms=1000 * cpu / trials, rss_mb=rss.peak_kb / 1024,
                status_s=status_s, restart_s=restart_s)


OPTUNA_WORKER = r"""
import math, sys, time, optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
optuna.logging.set_verbosity(optuna.logging.WARNING)
path, n_total = sys.argv[1], int(sys.argv[2])
storage = JournalStorage(JournalFileBackend(path))
study = optuna.load_study(study_name="bench", storage=storage,
                          sampler=optuna.samplers.RandomSampler())
def branin(t):
    x1 = t.suggest_float("x1", -5.0, 10.0); x2 = t.suggest_float("x2", 0.0, 15.0)
    b, c = 5.1 / (4 * math.pi ** 2), 5 / math.pi
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10
from optuna.study import MaxTrialsCallback
study.optimize(branin, callbacks=[MaxTrialsCallback(n_total, states=None)])
"""


def run_optuna(python, out, trials, workers):
    d = os.path.join(out, f"optuna-{workers}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    journal = os.path.join(d, "journal.log")
    script = os.path.join(d, "worker.py")
    with open(script, "w") as f:
        f.write(OPTUNA_WORKER)
    subprocess.run([python, "-c",
                    "import optuna,sys;from optuna.storages import JournalStorage;"
                    "from optuna.storages.journal import JournalFileBackend;"
                    "optuna.create_study(study_name='bench',storage=JournalStorage(JournalFileBackend(sys.argv[1])))",
                    journal], check=True)
    t0 = time.time()
    ps = [subprocess.Popen([python, script, journal, str(trials)]) for _ in range(workers)]
    cpu, rss = 0.0, 0
    for p in ps:
        ru = wait_rusage(p)
        cpu += ru.ru_utime + ru.ru_stime
        rss = max(rss, ru.ru_maxrss)
        if p.returncode != 0:
            sys.exit(f"optuna worker exited {p.returncode}")
    wall = time.time() - t0
    t = time.time()
    out_json = subprocess.run([python, "-c",
                    "import optuna,sys;from optuna.storages import JournalStorage;"
                    "from optuna.storages.journal import JournalFileBackend;"
                    "s=optuna.load_study(study_name='bench',storage=JournalStorage(JournalFileBackend(sys.argv[1])));"
                    "ts=[t.datetime_complete.timestamp() for t in s.trials if t.datetime_complete];"
                    "import json;print(json.dumps(ts))", journal], check=True, capture_output=True, text=True)
    load_s = time.time() - t
    times = json.loads(out_json.stdout)
    return dict(system="optuna", workers=workers, trials=len(times), wall=wall,
                first=rate(times, 0.0, 0.1), last=rate(times, 0.9, 1.0),
                cpu_ms=1000 * cpu / len(times), rss_mb=rss / 1024,
                status_s=load_s, restart_s=float("nan"))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def idle_cost(bin_dir, out, window):
    """CPU share of a master while 8 workers train (trials of 600 s) and of
    a ninth worker with nothing to claim, over `window` seconds."""
    d = os.path.join(out, "idle")
    shutil.rmtree(d, ignore_errors=True)
    spec = dict(study_json(8, 8), name="idle")
    spec["trainer"] = {"kind": "function", "name": FUNCTION, "sleep_s": 600}
    path = os.path.join(out, "study-idle.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    master = os.path.join(bin_dir, "hps-master")
    worker = os.path.join(bin_dir, "hps-worker")
    subprocess.run([master, "init", d, "--study", path], check=True, stdout=subprocess.DEVNULL)
    log = open(os.path.join(out, "idle.log"), "w")
    procs = [subprocess.Popen([master, "run", d], stdout=log, stderr=log)]
    procs += [subprocess.Popen([worker, d, "--id", f"w{i}"], stdout=log, stderr=log) for i in range(9)]
    try:
        deadline = time.time() + 60
        while len(os.listdir(os.path.join(d, "running"))) < 8:
            if time.time() > deadline:
                sys.exit("idle: the 8 trials did not all start")
            time.sleep(0.2)
        time.sleep(3)  # the ninth worker has looked and found nothing
        idle = procs[-1]
        m0, w0, t0 = cpu_seconds(procs[0].pid), cpu_seconds(idle.pid), time.time()
        time.sleep(window)
        t = time.time() - t0
        return (cpu_seconds(procs[0].pid) - m0) / t, (cpu_seconds(idle.pid) - w0) / t
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hps-bin", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--trials", type=int, default=20000)
    ap.add_argument("--workers", default="2,4,8")
    ap.add_argument("--out", default="target/bench-protocol")
    ap.add_argument("--no-optuna", action="store_true")
    ap.add_argument("--idle-window", type=float, default=60,
                    help="seconds to measure idle CPU over (0: skip)")
    a = ap.parse_args()
    rows = []
    print(f"{'system':7} {'workers':>7} {'trials':>7} {'wall s':>7} {'first 10% /s':>12} "
          f"{'last 10% /s':>11} {'last/first':>10} {'CPU ms/trial':>12} {'RSS MB':>7} "
          f"{'status s':>8} {'restart s':>9}", flush=True)
    for w in [int(x) for x in a.workers.split(",")]:
        todo = [("hps", lambda: run_hps(a.hps_bin, a.out, a.trials, w))]
        if not a.no_optuna:
            todo.append(("optuna", lambda: run_optuna(a.python, a.out, a.trials, w)))
        for _, f in todo:
            r = f()
            rows.append(r)
            print(f"{r['system']:7} {r['workers']:>7} {r['trials']:>7} {r['wall']:>7.1f} "
                  f"{r['first']:>12.1f} {r['last']:>11.1f} {r['last'] / r['first']:>10.2f} "
                  f"{r['cpu_ms']:>12.2f} {r['rss_mb']:>7.0f} {r['status_s']:>8.2f} "
                  f"{r['restart_s']:>9.2f}", flush=True)
    for w in sorted({r["workers"] for r in rows}):
        h = [r for r in rows if r["system"] == "hps" and r["workers"] == w]
        o = [r for r in rows if r["system"] == "optuna" and r["workers"] == w]
        if h and o:
            hr = h[0]["trials"] / h[0]["wall"]
            orr = o[0]["trials"] / o[0]["wall"]
            print(f"{w} workers: hps/optuna overall trials/s = {hr:.1f}/{orr:.1f} = {hr / orr:.2f}")
    with open(os.path.join(a.out, "rows.json"), "w") as f:
        json.dump(rows, f, indent=1)
    if a.idle_window > 0:
        m, w = idle_cost(a.hps_bin, a.out, a.idle_window)
        print(f"idle, over {a.idle_window:.0f} s: the master while 8 workers train: {100 * m:.2f} % of a core; "
              f"a worker with nothing to claim: {100 * w:.2f} % of a core", flush=True)


if __name__ == "__main__":
    main()
