"""The GPU check of docs/gpu.md, run by deploy/gpu-check.sh: correctness of
the CUDA worker against the CPU, checkpoint resume, device errors and
pinning, epoch speed against PyTorch on the same GPU, and throughput per GPU
with --slots. Writes DIR/gpu-check.json (every figure) and DIR/gpu-check.log
(every command and its output).

Standard library only, so it runs on any GPU host with python3; PyTorch is
needed for the PyTorch rows only (bench/train/train_torch.py), and nvidia-smi
for utilisation, memory and pinning. Each phase has its own time limit and
records what it finished; a phase that fails or times out does not stop the
others.

With --dry-run everything runs on the CPU with tiny sizes, so the whole
script, the studies, the comparisons and the JSON can be checked on a machine
without a GPU: the correctness phase then compares the CPU with 1 thread
against the CPU with 2 threads, and the phases that need a GPU (device
errors, pinning, utilisation) are recorded as skipped, with the reason.
"""

import argparse
import gzip
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TORCH_TRAINER = ROOT / "bench" / "train" / "train_torch.py"


class Check:
    """The run: its sizes, binaries, log and JSON."""

    def __init__(self, args):
        self.a = args
        self.dry = args.dry_run
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="hps-gpu-check-"))
        self.log_file = open(self.out / "gpu-check.log", "w")
        self.started = time.monotonic()
        self.report = {
            "format_version": 1,
            "dry_run": self.dry,
            "started_unix": int(time.time()),
            "host": socket.gethostname(),
            "phases": {},
        }
        self.master = self.worker = None
        self.device = "cpu" if self.dry else "cuda:0"
        self.python = args.python or sys.executable

    # ---- logging and processes -------------------------------------------

    def log(self, msg):
        line = f"[{time.monotonic() - self.started:7.1f}s] {msg}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def run(self, cmd, timeout=120, env=None, check=True):
        """Run `cmd`, log it and its output; return (exit status, output)."""
        self.log("$ " + " ".join(str(c) for c in cmd))
        try:
            p = subprocess.run(
                [str(c) for c in cmd], capture_output=True, text=True,
                timeout=timeout, env=self.env(env),
            )
        except subprocess.TimeoutExpired as e:
            self.log(f"  timed out after {timeout} s")
            raise Timeout(f"{cmd[0]} ran past {timeout} s") from e
        text = (p.stdout or "") + (p.stderr or "")
        for line in text.splitlines()[-40:]:
            self.log("  | " + line)
        if check and p.returncode != 0:
            raise Failed(f"{Path(str(cmd[0])).name} exited with {p.returncode}: {tail(text)}")
        return p.returncode, text

    def env(self, extra=None):
        e = dict(os.environ)
        e.setdefault("RUST_LOG", "warn")
        if extra:
            e.update(extra)
        return e

    def spawn(self, cmd, log_name, env=None):
        self.log("$ " + " ".join(str(c) for c in cmd) + f"  (background, log {log_name})")
        f = open(self.work / log_name, "w")
        return subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT,
                                env=self.env(env), start_new_session=True)

    def phase(self, name, fn):
        """Run one phase; record its result, its status and its seconds."""
        left = self.a.budget_s - (time.monotonic() - self.started)
        if left < 20:
            self.report["phases"][name] = {"status": "skipped", "why": "the time budget is spent"}
            self.log(f"== {name}: skipped, the time budget is spent")
            return
        self.log(f"== {name}")
        t0 = time.monotonic()
        try:
            r = fn() or {}
            r.setdefault("status", "ok")
        except Timeout as e:
            r = {"status": "timed_out", "why": str(e)}
        except (Failed, OSError, ValueError, KeyError) as e:
            r = {"status": "failed", "why": str(e)}
        r["seconds"] = round(time.monotonic() - t0, 1)
        self.report["phases"][name] = r
        why = f": {r['why']}" if "why" in r else ""
        self.log(f"== {name}: {r['status']} in {r['seconds']} s{why}")
        self.write_json()

    def write_json(self):
        self.report["seconds"] = round(time.monotonic() - self.started, 1)
        tmp = self.out / ".gpu-check.json.tmp"
        tmp.write_text(json.dumps(self.report, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.out / "gpu-check.json")

    # ---- studies -------------------------------------------------------------

    def study(self, name, space, defaults, trials, epochs, sampler=None, mode=None):
        """`hps-master init` a cnn study in the work directory; its path."""
        d = self.work / name
        spec = {
            "format_version": 1,
            "name": name,
            "space": space,
            "objective": {"metric": "val_error", "direction": "minimize"},
            "sampler": sampler or {"kind": "grid"},
            "seed": 7,
            "budget": {"trials": trials, "epochs": epochs},
            "mode": mode or {"kind": "async", "queue": 4},
            "trainer": {"kind": "cnn", "defaults": defaults},
        }
        f = self.work / f"{name}.study.json"
        f.write_text(json.dumps(spec, indent=2))
        self.run([self.master_bin, "init", d, "--study", f], timeout=30)
        return d

    def run_study(self, d, worker_args, timeout, env=None, tag="w"):
        """A master and one worker on study `d` until it finishes; wall s."""
        t0 = time.monotonic()
        m = self.spawn([self.master_bin, "run", d, "--rescan", "0.2"], f"{d.name}-master.log")
        w = self.spawn([self.worker_bin, d, "--id", tag, "--rescan", "0.2", *worker_args],
                       f"{d.name}-{tag}.log", env=env)
        try:
            wait_procs([m, w], timeout, what=f"study {d.name}")
        finally:
            for p in (m, w):
                stop(p)
        self.log_tail(f"{d.name}-{tag}.log")
        for p, who in ((m, "hps-master run"), (w, "hps-worker")):
            if p.returncode != 0:
                self.log_tail(f"{d.name}-master.log")
                raise Failed(f"{who} on {d.name} exited with {p.returncode}; see gpu-check.log")
        return time.monotonic() - t0

    def log_tail(self, name, n=15):
        p = self.work / name
        if p.exists():
            for line in p.read_text(errors="replace").splitlines()[-n:]:
                self.log(f"  {name} | {line}")

    # ---- data ------------------------------------------------------------------

    def generated_data(self, n_train, n_test):
        """Random IDX files (pixels and labels): speed runs need no real data."""
        d = self.work / f"gen-{n_train}"
        if d.exists():
            return d
        d.mkdir()
        rng = random.Random(3)
        for prefix, n in (("train", n_train), ("t10k", n_test)):
            with gzip.open(d / f"{prefix}-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
                f.write(struct.pack(">IIII", 0x803, n, 28, 28))
                f.write(rng.randbytes(n * 784))
            with gzip.open(d / f"{prefix}-labels-idx1-ubyte.gz", "wb", compresslevel=1) as f:
                f.write(struct.pack(">II", 0x801, n))
                f.write(bytes(rng.randrange(10) for _ in range(n)))
        return d


class Timeout(Exception):
    pass


class Failed(Exception):
    pass


def tail(text, n=3):
    return " / ".join(text.strip().splitlines()[-n:])


def stop(p):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def wait_procs(procs, timeout, what):
    end = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired as e:
            raise Timeout(f"{what} ran past {timeout} s") from e


def results(d, epochs=None):
    """Every result file of study `d` (flat or sharded layout), by trial
    id; each must be `complete` (with all `epochs`, if given)."""
    out = {}
    for p in sorted((d / "results").rglob("*.json")):
        if not p.name.startswith("."):
            r = json.loads(p.read_text())
            if r["status"] != "complete":
                raise Failed(f"{p}: trial {r['status']}: {r.get('error')}")
            if epochs is not None and len(r["curve"]) != epochs:
                raise Failed(f"{p}: {len(r['curve'])} epochs, not {epochs}")
            out[r["trial_id"]] = r
    if not out:
        raise Failed(f"{d}: no results")
    return out


def settings(d):
    out = {}
    for p in sorted((d / "settings").rglob("*.json")):
        if not p.name.startswith("."):
            s = json.loads(p.read_text())
            out[s["trial_id"]] = s
    return out


def steady_epoch_s(curve):
    """Seconds of the epochs after the first (the first carries warm-up)."""
    t = [c["elapsed_s"] for c in curve]
    steps = [b - a for a, b in zip([0.0] + t, t)]
    rest = steps[1:] or steps
    return sum(rest) / len(rest), steps


class Sampler:
    """nvidia-smi sampled every 200 ms while a run goes: utilisation and
    memory of GPU 0, and the compute processes' memory."""

    def __init__(self, chk):
        self.chk, self.rows, self.apps = chk, [], {}
        self.stop_flag = threading.Event()
        self.ok = shutil.which("nvidia-smi") is not None and not chk.dry

    def __enter__(self):
        if self.ok:
            self.t = threading.Thread(target=self.loop, daemon=True)
            self.t.start()
        return self

    def loop(self):
        q = ["nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu,memory.used",
             "--format=csv,noheader,nounits"]
        a = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
        while not self.stop_flag.wait(0.2):
            try:
                u, m = subprocess.run(q, capture_output=True, text=True, timeout=5).stdout.split(",")[:2]
                self.rows.append((float(u), float(m)))
                for line in subprocess.run(a, capture_output=True, text=True, timeout=5).stdout.splitlines():
                    pid, mem = [x.strip() for x in line.split(",")[:2]]
                    self.apps[pid] = max(self.apps.get(pid, 0.0), float(mem))
            except (ValueError, subprocess.SubprocessError, OSError):
                pass

    def __exit__(self, *exc):
        self.stop_flag.set()
        if self.ok:
            self.t.join(5)

    def summary(self):
        if not self.ok:
            return {"gpu_util_mean_pct": None, "gpu_mem_peak_mib": None,
                    "why_none": "dry run" if self.chk.dry else "nvidia-smi not found"}
        us = [u for u, _ in self.rows]
        return {
            "gpu_util_mean_pct": round(sum(us) / len(us), 1) if us else None,
            "gpu_mem_peak_mib": max((m for _, m in self.rows), default=None),
            "process_mem_peak_mib": self.apps,
            "samples": len(self.rows),
        }


# ---- the phases ------------------------------------------------------------------


def phase_env(c):
    r = {"python": sys.version.split()[0]}
    if shutil.which("nvidia-smi"):
        _, r["nvidia_smi_L"] = c.run(["nvidia-smi", "-L"], timeout=30, check=False)
        _, q = c.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                      "--format=csv,noheader"], timeout=30, check=False)
        r["gpus"] = [l.strip() for l in q.splitlines() if l.strip()]
    else:
        r["gpus"] = []
        r["nvidia_smi"] = "not found"
    code, t = c.run([c.python, "-c",
                     "import torch; print(torch.__version__, torch.cuda.is_available(), "
                     "torch.cuda.device_count())"], timeout=60, check=False)
    r["torch"] = t.strip().splitlines()[-1] if code == 0 else f"not usable: {tail(t, 1)}"
    r["worker_binary"] = str(c.worker_bin)
    _, r["worker_version"] = c.run([c.worker_bin, "--version"], timeout=30)
    if shutil.which("ldd"):
        _, l = c.run(["ldd", c.worker_bin], timeout=30, check=False)
        r["ldd_not_found"] = [x.strip() for x in l.splitlines() if "not found" in x]
        if r["ldd_not_found"]:
            raise Failed("libraries not found: " + "; ".join(r["ldd_not_found"]))
    if not c.dry and not r["gpus"]:
        raise Failed("no GPU: nvidia-smi lists none (use --dry-run on a machine without one)")
    return r


ARCHS = {
    # The grid: default (max-pool, relu), avg-pool, tanh, batch norm and
    # their combinations.
    "convnets": {
        "space": {
            "pool": {"type": "categorical", "choices": ["max", "avg"]},
            "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
            "batchnorm": {"type": "categorical", "choices": [False, True]},
        },
        "trials": 8,
    },
    # Seed 004's MLP.
    "mlp": {
        "space": {"conv_layers": {"type": "fixed", "value": 0},
                  "dense_widths": {"type": "fixed", "value": [128, 64]}},
        "trials": 1,
    },
}


def compare_curves(ref, got, keys=("train_loss", "val_loss", "val_error")):
    """Largest difference per key over all epochs of all trials: relative
    for the losses, absolute for val_error (a fraction of examples)."""
    worst = {k: 0.0 for k in keys}
    where = {}
    for tid, r in ref.items():
        g = got.get(tid)
        if g is None:
            raise Failed(f"trial {tid} has a result on one side only")
        for a, b in zip(r["curve"], g["curve"]):
            for k in keys:
                x, y = a[k], b[k]
                if x is None or y is None:
                    d = 0.0 if x == y else float("inf")
                else:
                    d = abs(x - y) if k == "val_error" else abs(x - y) / max(abs(x), 1e-3)
                if d > worst[k]:
                    worst[k], where[k] = d, f"{tid} epoch {a['epoch']}: {x} vs {y}"
    return worst, where


def within(worst, tol):
    """Losses within `tol` relative; val_error within 3 examples in 1,000."""
    return all(v <= (0.003 if k == "val_error" else tol) for k, v in worst.items())


def phase_correctness(c):
    """Every architecture, 2 epochs, same seed: CPU against the GPU."""
    n = c.a.correct_train
    defaults = {"nf": 16, "train_size": n, "val_size": c.a.val_size, "test_size": 0,
                "batch_size": 64, "lr": 0.02, "momentum": 0.9}
    ref_args = ["--device", "cpu", "--threads", "1" if c.dry else str(min(8, os.cpu_count() or 1))]
    got_args = ["--device", "cpu", "--threads", "2"] if c.dry else ["--device", c.device]
    r = {"reference": " ".join(ref_args), "candidate": " ".join(got_args),
         "data": str(c.real_data), "train_size": n, "epochs": 2, "archs": {}}
    tol = c.a.tolerance
    r["tolerance"] = {"train_loss, val_loss (relative)": tol, "val_error (absolute)": 0.003}
    bad = []
    for name, a in ARCHS.items():
        side = {}
        for tag, args in (("ref", ref_args), ("got", got_args)):
            d = c.study(f"correct-{name}-{tag}", a["space"], defaults, a["trials"], 2)
            c.run_study(d, ["--data", c.real_data, *args], timeout=c.a.phase_s)
            side[tag] = results(d, 2)
        worst, where = compare_curves(side["ref"], side["got"])
        ok = within(worst, tol)
        r["archs"][name] = {
            "trials": sorted(side["ref"]),
            "params": {t: x["params"] for t, x in side["ref"].items()},
            "max_rel_diff": {k: round(v, 8) for k, v in worst.items()},
            "worst_at": where,
            "devices": sorted({x["device"] for x in side["got"].values()}),
            "within_tolerance": ok,
        }
        if not ok:
            bad.append(name)
    if bad:
        r["status"] = "failed"
        r["why"] = f"differences above {tol} in: {', '.join(bad)}"
    return r


def phase_resume(c):
    """A trial killed after a checkpoint and resumed ends as an
    uninterrupted run of it does, on the GPU."""
    defaults = {"nf": 16, "train_size": c.a.correct_train, "val_size": c.a.val_size, "test_size": 0,
                "batch_size": 64, "lr": 0.02, "momentum": 0.9}
    space = {"nf": {"type": "fixed", "value": 16}}
    epochs = 4
    dev = ["--device", c.device, "--data", c.real_data] + (["--threads", "2"] if c.dry else [])
    whole = c.study("resume-whole", space, defaults, 1, epochs)
    c.run_study(whole, dev, timeout=c.a.phase_s)
    cut = c.study("resume-cut", space, defaults, 1, epochs)
    m = c.spawn([c.master_bin, "run", cut, "--rescan", "0.2"], "resume-cut-master.log")
    try:
        w = c.spawn([c.worker_bin, cut, "--id", "r0", "--rescan", "0.2", *dev], "resume-cut-r0.log")
        ckpt = None
        end = time.monotonic() + c.a.phase_s
        while time.monotonic() < end and ckpt is None:
            for p in (cut / "checkpoints").rglob("checkpoint.json"):
                ckpt = json.loads(p.read_text())
            if w.poll() is not None:
                break
            time.sleep(0.05)
        if ckpt is None:
            stop(w)
            raise Failed("the worker wrote no checkpoint before it ended or the time ran out")
        os.killpg(w.pid, signal.SIGKILL)
        w.wait()
        ckpt = {"epoch": ckpt.get("epoch"), "tensors": ckpt.get("tensors", {}).get("name")}
        c.log(f"killed the worker (SIGKILL) after its checkpoint of epoch {ckpt['epoch']}")
        w2 = c.spawn([c.worker_bin, cut, "--id", "r0", "--rescan", "0.2", *dev], "resume-cut-r0b.log")
        wait_procs([m, w2], c.a.phase_s, "the resumed study")
    finally:
        stop(m)
    c.log_tail("resume-cut-r0b.log")
    a, b = results(whole, epochs), results(cut, epochs)
    if len(b) != 1:
        raise Failed(f"the resumed study has {len(b)} results")
    rb = next(iter(b.values()))
    worst, where = compare_curves(a, b)
    log = (cut / "logs").rglob("*.log")
    resumed = any("resum" in p.read_text(errors="replace") for p in log)
    keys = ("objective",)
    ra = next(iter(a.values()))
    same = all(ra.get(k) == rb.get(k) for k in keys) and max(worst.values()) == 0.0
    return {
        "epochs": epochs,
        "killed_after": ckpt,
        "trial_log_says_resumed": resumed,
        "objective_uninterrupted": ra.get("objective"),
        "objective_resumed": rb.get("objective"),
        "max_rel_diff": worst,
        "worst_at": where,
        "identical": same,
        "status": "ok" if within(worst, c.a.tolerance) else "failed",
    }


def phase_device_errors(c):
    """--device cuda:N past the last GPU, and CUDA_VISIBLE_DEVICES pinning."""
    if c.dry:
        return {"status": "skipped", "why": "dry run: no GPU"}
    ngpu = len(c.report["phases"].get("env", {}).get("gpus", [])) or 1
    d = c.study("device-errors", {"nf": {"type": "fixed", "value": 8}},
                {"train_size": 512, "val_size": 256, "test_size": 256}, 1, 1)
    r = {"gpus": ngpu}
    code, text = c.run([c.worker_bin, d, "--device", f"cuda:{ngpu}", "--once"], timeout=60, check=False)
    r["past_last_gpu"] = {"device": f"cuda:{ngpu}", "exit": code, "message": tail(text, 2)}
    code, text = c.run([c.worker_bin, d, "--device", "cuda:1", "--once"], timeout=60, check=False,
                       env={"CUDA_VISIBLE_DEVICES": "0"})
    r["visible_0_asks_cuda_1"] = {"exit": code, "message": tail(text, 2)}
    code, text = c.run([c.worker_bin, d, "--device", "cuda:0", "--once"], timeout=60, check=False,
                       env={"CUDA_VISIBLE_DEVICES": str(ngpu)})
    r["visible_missing_gpu"] = {"CUDA_VISIBLE_DEVICES": str(ngpu), "exit": code, "message": tail(text, 2)}
    ok = all(r[k]["exit"] != 0 and "cannot open the GPU" in r[k]["message"]
             for k in ("past_last_gpu", "visible_0_asks_cuda_1", "visible_missing_gpu"))
    # Pinning: one worker per visible GPU, each with CUDA_VISIBLE_DEVICES=i,
    # while nvidia-smi lists the compute processes.
    pins = []
    with Sampler(c) as s:
        d2 = c.study("pinning", {"nf": {"type": "fixed", "value": 32}},
                     {"train_size": 20000, "val_size": 1000, "test_size": 1000}, max(2, ngpu), 2)
        m = c.spawn([c.master_bin, "run", d2, "--rescan", "0.2"], "pinning-master.log")
        ws = []
        for i in range(max(2, ngpu)):
            vis = str(i)
            w = c.spawn([c.worker_bin, d2, "--id", f"gpu{i}", "--device", "cuda:0",
                         "--data", c.generated_data(21000, 1000), "--once"], f"pinning-gpu{i}.log",
                        env={"CUDA_VISIBLE_DEVICES": vis})
            ws.append((vis, w))
        # Until worker 0 shows in nvidia-smi's process list (or ends).
        apps, end = "", time.monotonic() + 60
        while time.monotonic() < end:
            _, apps = c.run(["nvidia-smi", "--query-compute-apps=pid,gpu_uuid,used_memory",
                             "--format=csv,noheader"], timeout=30, check=False)
            if str(ws[0][1].pid) in apps or ws[0][1].poll() is not None:
                break
            time.sleep(0.5)
        for vis, w in ws:
            try:
                w.wait(c.a.phase_s)
            except subprocess.TimeoutExpired:
                stop(w)
            text = (c.work / f"pinning-gpu{vis}.log").read_text(errors="replace")
            pins.append({"CUDA_VISIBLE_DEVICES": vis, "pid": w.pid, "exit": w.returncode,
                         "listed_by_nvidia_smi": str(w.pid) in apps,
                         "message": tail(text, 2) if w.returncode else ""})
        stop(m)
    r["pinning"] = {"workers": pins, "nvidia_smi_compute_apps": apps.strip().splitlines(),
                    **s.summary()}
    # On a 1-GPU host worker 0 trains on GPU 0 and worker 1 (CUDA_VISIBLE_DEVICES=1)
    # must fail to open a GPU rather than share GPU 0 or fall back to the CPU.
    pin_ok = pins[0]["exit"] == 0 and all(
        (p["exit"] == 0) == (int(p["CUDA_VISIBLE_DEVICES"]) < ngpu) for p in pins)
    r["status"] = "ok" if ok and pin_ok else "failed"
    return r


def torch_ok(c):
    code, _ = c.run([c.python, "-c", "import torch"], timeout=60, check=False)
    return code == 0


def phase_speed(c):
    """Epoch time at nf 8, 32, 64, batch 128, SGD momentum, 2 epochs each
    (the second is the steady state), hps then PyTorch on the same device."""
    n = c.a.speed_train
    data = c.generated_data(n + 1000, 1000)
    rows = []
    has_torch = torch_ok(c)
    for nf in c.a.nfs:
        defaults = {"nf": nf, "train_size": n, "val_size": 1000, "test_size": 1000,
                    "batch_size": 128, "lr": 0.01, "momentum": 0.9}
        d = c.study(f"speed-nf{nf}", {"nf": {"type": "fixed", "value": nf}}, defaults, 1, 2)
        with Sampler(c) as s:
            c.run_study(d, ["--device", c.device, "--data", data] +
                        (["--threads", "2"] if c.dry else []), timeout=c.a.phase_s)
        res = next(iter(results(d).values()))
        steady, steps = steady_epoch_s(res["curve"])
        rows.append({"impl": "hps", "nf": nf, "device": c.device, "epoch_times_s": steps,
                     "steady_epoch_time_s": steady, "samples_per_s": n / steady, **s.summary()})
        if has_torch:
            with Sampler(c) as s:
                _, out = c.run([c.python, TORCH_TRAINER, "--nf", nf, "--epochs", 2, "--train-size", n,
                                "--val-size", 0, "--test-size", 1000, "--device", c.device,
                                "--data", data, "--threads", 2 if c.dry else 8],
                               timeout=c.a.phase_s, env={"OMP_NUM_THREADS": "2" if c.dry else "8"})
            t = json.loads(out.strip().splitlines()[-1])
            rows.append({"impl": "pytorch", "nf": nf, "device": c.device,
                         "epoch_times_s": t["epoch_times_s"],
                         "steady_epoch_time_s": t["steady_epoch_time_s"],
                         "samples_per_s": t["samples_per_s"], "torch": t["framework"], **s.summary()})
    r = {"train_size": n, "batch_size": 128, "rows": rows}
    if not has_torch:
        r["pytorch"] = "skipped: torch cannot be imported by " + c.python
    return r


def s5_space():
    # Scenario 5's space (examples/s5.json).
    return {
        "batch_size": {"type": "transform", "offset": 4, "scale": 4, "base": 2, "int": True},
        "lr": {"type": "transform", "offset": -2, "scale": 1.5, "base": 10},
        "momentum": {"type": "transform"},
        "nf": {"type": "transform", "offset": 10, "scale": 90, "int": True},
    }


def phase_slots(c):
    """S5-like trials (nf 10-100, batch 16-256), one epoch each: hps with
    --slots S, then PyTorch as S parallel processes over the same settings."""
    n, trials = c.a.slots_train, c.a.slots_trials
    data = c.generated_data(n + 500, 1000)
    defaults = {"train_size": n, "val_size": 500, "test_size": 1000}
    has_torch = torch_ok(c)
    rows = []
    for slots in c.a.slots:
        d = c.study(f"slots-{slots}", s5_space(), defaults, trials, 1,
                    sampler={"kind": "random", "seed": 2016},
                    mode={"kind": "async", "queue": max(2 * slots, 4)})
        with Sampler(c) as s:
            wall = c.run_study(d, ["--device", c.device, "--data", data, "--slots", slots] +
                               (["--threads", "1"] if c.dry else []), timeout=c.a.phase_s)
        done = results(d)
        rows.append({"impl": "hps", "slots": slots, "trials": len(done), "wall_s": round(wall, 2),
                     "samples_per_s": round(len(done) * n / wall, 1),
                     "trials_per_hour": round(len(done) * 3600 / wall, 1), **s.summary()})
        if not has_torch:
            continue
        # The same settings, dealt round-robin to `slots` processes.
        sets = [s["params"] for _, s in sorted(settings(d).items())]
        procs = []
        t0 = time.monotonic()
        with Sampler(c) as s:
            for k in range(slots):
                cfg = c.work / f"slots-{slots}-torch-{k}.json"
                cfg.write_text(json.dumps(sets[k::slots]))
                procs.append(c.spawn([c.python, TORCH_TRAINER, "--configs", cfg, "--epochs", 1,
                                      "--train-size", n, "--val-size", 0, "--test-size", 500,
                                      "--device", c.device, "--data", data, "--threads", 1],
                                     f"slots-{slots}-torch-{k}.log", env={"OMP_NUM_THREADS": "1"}))
            wait_procs(procs, c.a.phase_s, f"PyTorch with {slots} processes")
        wall = time.monotonic() - t0
        bad = [p.returncode for p in procs if p.returncode != 0]
        if bad:
            c.log_tail(f"slots-{slots}-torch-0.log")
            raise Failed(f"PyTorch processes exited with {bad}")
        rows.append({"impl": "pytorch", "processes": slots, "trials": len(sets),
                     "wall_s": round(wall, 2), "samples_per_s": round(len(sets) * n / wall, 1),
                     "trials_per_hour": round(len(sets) * 3600 / wall, 1), **s.summary()})
    return {"train_size": n, "trials": trials, "epochs": 1, "rows": rows}


def goals(ph):
    """The issue's two speed goals, from the rows measured."""
    g = {}
    rows = ph.get("speed", {}).get("rows", [])
    h = [r for r in rows if r["impl"] == "hps" and r["nf"] == 32]
    t = [r for r in rows if r["impl"] == "pytorch" and r["nf"] == 32]
    if h and t:
        ratio = h[0]["steady_epoch_time_s"] / t[0]["steady_epoch_time_s"]
        g["epoch_nf32_hps_over_pytorch"] = round(ratio, 3)
        g["epoch_nf32_met"] = ratio <= 1.0
    rows = ph.get("slots", {}).get("rows", [])
    hb = max((r["samples_per_s"] for r in rows if r["impl"] == "hps"), default=None)
    tb = max((r["samples_per_s"] for r in rows if r["impl"] == "pytorch"), default=None)
    if hb and tb:
        g["best_throughput_hps_over_pytorch"] = round(hb / tb, 3)
        g["best_throughput_met"] = hb >= tb
    return g


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--bin-dir", required=True, help="holds hps-master and hps-worker")
    p.add_argument("--real-data", required=True, help="Fashion-MNIST IDX files (a subset will do)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--python", help="the python with torch (default: this one)")
    p.add_argument("--budget-s", type=float, default=450)
    p.add_argument("--phase-s", type=float, default=150, help="limit of one study or run")
    p.add_argument("--tolerance", type=float, default=1e-3)
    p.add_argument("--correct-train", type=int, default=4000)
    p.add_argument("--val-size", type=int, default=1000, help="of the correctness and resume runs")
    p.add_argument("--speed-train", type=int, default=60000)
    p.add_argument("--nfs", type=lambda s: [int(x) for x in s.split(",")], default=[8, 32, 64])
    p.add_argument("--slots", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 16])
    p.add_argument("--slots-trials", type=int, default=16)
    p.add_argument("--slots-train", type=int, default=10000)
    p.add_argument("--only", help="comma-separated phases to run (default: all)")
    a = p.parse_args()
    c = Check(a)
    b = Path(a.bin_dir)
    c.master_bin, c.worker_bin = b / "hps-master", b / "hps-worker"
    c.real_data = Path(a.real_data)
    c.log(f"gpu check: {'dry run on the CPU' if c.dry else 'cuda:0'}; work dir {c.work}; out {c.out}")
    phases = [("env", phase_env), ("correctness", phase_correctness), ("resume", phase_resume),
              ("device_errors", phase_device_errors), ("speed", phase_speed), ("slots", phase_slots)]
    only = set(a.only.split(",")) if a.only else None
    for name, fn in phases:
        if only is None or name in only:
            c.phase(name, lambda fn=fn: fn(c))
    c.report["goals"] = goals(c.report["phases"])
    c.write_json()
    statuses = {k: v["status"] for k, v in c.report["phases"].items()}
    c.log(f"done in {c.report['seconds']} s: {statuses}; {c.out / 'gpu-check.json'}")
    shutil.rmtree(c.work, ignore_errors=True)
    return 0 if all(s in ("ok", "skipped") for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
