#!/usr/bin/env python3
"""An example `exec` trainer for hps: softmax regression on MNIST-format
IDX data, in plain Python (standard library only), so it runs anywhere.

hps runs it once per trial (see exec-logreg.json). It reads the trial's
hyperparameters from $HPS_PARAMS_FILE, appends one JSON line per epoch to
$HPS_REPORT_FILE and writes its final metrics to $HPS_RESULT_FILE. Replace
the training loop with your own PyTorch code and keep those three files.

    train_logreg.py --data DIR     (IDX files, as in /usr/share/datasets/fashion-mnist)
"""
import argparse
import gzip
import json
import math
import os
import random
import struct
import sys


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def load(dirname, prefix, n):
    for ext in (".gz", ""):
        img = os.path.join(dirname, f"{prefix}-images-idx3-ubyte{ext}")
        lab = os.path.join(dirname, f"{prefix}-labels-idx1-ubyte{ext}")
        if os.path.exists(img) and os.path.exists(lab):
            break
    else:
        sys.exit(f"no {prefix} IDX files in {dirname}")
    (count, rows, cols), pixels = read_idx(img)
    _, labels = read_idx(lab)
    n = min(n, count)
    xs = []
    for i in range(n):
        im = pixels[i * rows * cols:(i + 1) * rows * cols]
        # 2x2 average pooling: 784 -> 196 features keeps pure Python fast.
        feats = [
            (im[(2 * r) * cols + 2 * c] + im[(2 * r) * cols + 2 * c + 1]
             + im[(2 * r + 1) * cols + 2 * c] + im[(2 * r + 1) * cols + 2 * c + 1]) / 1020.0
            for r in range(rows // 2) for c in range(cols // 2)
        ]
        xs.append(feats)
    return xs, list(labels[:n])


def softmax_loss(w, b, x, y):
    logits = [sum(wi * xi for wi, xi in zip(row, x)) + bk for row, bk in zip(w, b)]
    m = max(logits)
    exps = [math.exp(v - m) for v in logits]
    z = sum(exps)
    probs = [e / z for e in exps]
    return -math.log(max(probs[y], 1e-12)), probs


def evaluate(w, b, xs, ys):
    loss, wrong = 0.0, 0
    for x, y in zip(xs, ys):
        l, p = softmax_loss(w, b, x, y)
        loss += l
        wrong += max(range(10), key=p.__getitem__) != y
    return loss / len(xs), wrong / len(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--val", type=int, default=300)
    args = ap.parse_args()

    trial = json.load(open(os.environ["HPS_PARAMS_FILE"]))
    p = trial["params"]
    lr = float(p.get("lr", 0.1))
    l2 = float(p.get("weight_decay", 0.0))
    epochs = int(trial["epochs"])
    if lr <= 0:
        json.dump({"status": "invalid"}, open(os.environ["HPS_RESULT_FILE"], "w"))
        return
    rng = random.Random(trial["seed"])

    xs, ys = load(args.data, "train", args.train + args.val)
    xtr, ytr, xva, yva = xs[:args.train], ys[:args.train], xs[args.train:], ys[args.train:]
    d = len(xtr[0])
    w = [[0.0] * d for _ in range(10)]
    b = [0.0] * 10
    order = list(range(len(xtr)))
    best = None
    for epoch in range(1, epochs + 1):
        rng.shuffle(order)
        total = 0.0
        for i in order:
            x, y = xtr[i], ytr[i]
            l, probs = softmax_loss(w, b, x, y)
            total += l
            for k in range(10):
                g = probs[k] - (1.0 if k == y else 0.0)
                row = w[k]
                for j in range(d):
                    row[j] -= lr * (g * x[j] + l2 * row[j])
                b[k] -= lr * g
        val_loss, val_error = evaluate(w, b, xva, yva)
        report = {"epoch": epoch, "train_loss": total / len(xtr), "val_loss": val_loss, "val_error": val_error}
        with open(os.environ["HPS_REPORT_FILE"], "a") as f:
            f.write(json.dumps(report) + "\n")
        print(json.dumps(report), flush=True)
        if not math.isfinite(val_loss):
            json.dump({"status": "diverged"}, open(os.environ["HPS_RESULT_FILE"], "w"))
            return
        if best is None or val_loss < best["val_loss"]:
            best = report
    result = {"val_loss": best["val_loss"], "val_error": best["val_error"], "best_epoch": best["epoch"],
              "last_val_error": report["val_error"]}
    tmp = os.environ["HPS_RESULT_FILE"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, os.environ["HPS_RESULT_FILE"])


if __name__ == "__main__":
    main()
