"""The hps cnn trainer's model and training loop in PyTorch, for timing.

Same model as worker/src/trainers/cnn/model.rs (the seed's Lasagne build_cnn(nf)):
input 1x28x28 scaled to [0, 1], conv 5x5 nf valid + ReLU, max-pool 2x2,
conv 5x5 nf + ReLU, max-pool 2x2, dropout 0.5, dense 256 + ReLU, dropout 0.5,
dense 10, cross-entropy; Glorot-uniform weights, zero biases; SGD with
momentum (PyTorch's form, v = m*v + g; w -= lr*v, is Lasagne's with a
constant lr); a fresh shuffle every epoch, last partial batch included.

Data as hps takes them: training examples from the start of the training
file, validation examples from its end, test examples from the start of the
test file (0 = all). Read from the gzip IDX files; nothing is downloaded.

Timed: the training batches of each epoch (the shuffle included), as the
hps example does; loading and evaluation are not. The loop is the plain one
a PyTorch user writes for data held in memory (a permutation per epoch,
batches by indexing, CrossEntropyLoss, zero_grad/backward/step), with the
loss summed on the device rather than read back every step. Prints one JSON line with the fields of
worker/examples/train_epoch.rs, plus `steady_epoch_time_s` (the mean over
the epochs after the first, which carries the warm-up) and the minor page
faults of each epoch (see bench/train/run.sh on GLIBC_TUNABLES).
"""

import argparse
import gzip
import json
import os
import resource
import struct
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

DATA_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = struct.unpack(">I", raw[:4])[0]
    if magic == 0x00000803:
        n, rows, cols = struct.unpack(">III", raw[4:16])
        assert (rows, cols) == (28, 28), f"{path}: images are {rows}x{cols}"
        return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, 28, 28)
    if magic == 0x00000801:
        (n,) = struct.unpack(">I", raw[4:8])
        return np.frombuffer(raw, dtype=np.uint8, offset=8, count=n)
    raise ValueError(f"{path}: bad IDX magic {magic:#010x}")


def load(data_dir, name):
    images = read_idx(os.path.join(data_dir, f"{name}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{name}-labels-idx1-ubyte.gz"))
    # As hps: f32 pixel times f32(1/255).
    x = torch.from_numpy(images.astype(np.float32) * np.float32(1.0 / 255.0))
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def build_cnn(nf):
    model = nn.Sequential(
        nn.Conv2d(1, nf, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(nf, nf, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(nf * 4 * 4, 256),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(256, 10),
    )
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            # Fans as Lasagne's: a conv's include the 5x5 receptive field.
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def minor_faults():
    """Page faults so far: glibc's malloc hands PyTorch's large activation
    buffers back to the kernel and faults them in again every step."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@torch.no_grad()
def evaluate(model, x, y, chunk=1000):
    """Mean loss and accuracy without dropout; NaN for an empty set."""
    n = y.shape[0]
    if n == 0:
        return float("nan"), float("nan")
    model.eval()
    loss_sum, right = 0.0, 0
    for s in range(0, n, chunk):
        logits = model(x[s : s + chunk])
        ys = y[s : s + chunk]
        loss_sum += F.cross_entropy(logits, ys, reduction="sum").item()
        right += (logits.argmax(1) == ys).sum().item()
    return loss_sum / n, right / n


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nf", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-size", type=int, default=60000)
    p.add_argument("--val-size", type=int, default=0)
    p.add_argument("--test-size", type=int, default=0, help="0 = all")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=DATA_DIR)
    p.add_argument("--configs", help="a JSON list of settings (nf, batch_size, lr, momentum "
                   "override the flags), trained one after the other in this process, one "
                   "JSON line each: several trials share one start-up, as hps's --slots do")
    a = p.parse_args()
    if a.configs:
        with open(a.configs) as f:
            configs = json.load(f)
        for cfg in configs:
            b = argparse.Namespace(**vars(a))
            for k in ("nf", "batch_size", "lr", "momentum"):
                if k in cfg:
                    setattr(b, k, type(getattr(a, k))(cfg[k]))
            run(b)
    else:
        run(a)


def run(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {a.device}: this torch sees no GPU")

    train_x, train_y = load(a.data, "train")
    test_x, test_y = load(a.data, "t10k")
    n_file = train_y.shape[0]
    if a.train_size + a.val_size > n_file:
        raise SystemExit(f"train size {a.train_size} + val size {a.val_size} > {n_file}")
    test_n = a.test_size or test_y.shape[0]
    x = train_x[: a.train_size].to(device)
    y = train_y[: a.train_size].to(device)
    val_x = train_x[n_file - a.val_size :].to(device)
    val_y = train_y[n_file - a.val_size :].to(device)
    test_x, test_y = test_x[:test_n].to(device), test_y[:test_n].to(device)

    model = build_cnn(a.nf).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    loss_fn = nn.CrossEntropyLoss()
    # The plain loop for a dataset held in memory (on the device): a fresh
    # permutation every epoch, batches taken by indexing, last partial batch
    # included, as hps. (A DataLoader over a TensorDataset would fetch and
    # stack 128 single examples per batch: the same speed on the CPU here,
    # within noise, and 128 tiny copies per step on a GPU.)
    n, bs = a.train_size, a.batch_size
    epoch_times, faults, train_loss, val_acc, steps = [], [], float("nan"), float("nan"), 0
    for _ in range(a.epochs):
        model.train()
        sync(device)
        t0, f0 = time.perf_counter(), minor_faults()
        # Summed on the device: no host synchronisation per step.
        loss_sum, batches = torch.zeros((), device=device), 0
        perm = torch.randperm(n, device=device)
        for s in range(0, n, bs):
            idx = perm[s : s + bs]
            xb, yb = x[idx], y[idx]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            batches += 1
            steps += 1
        train_loss = loss_sum.item() / batches
        sync(device)
        epoch_times.append(time.perf_counter() - t0)
        faults.append(minor_faults() - f0)
        val_acc = evaluate(model, val_x, val_y)[1]
    test_acc = evaluate(model, test_x, test_y)[1]

    total = sum(epoch_times)
    steady = epoch_times[1:] or epoch_times
    nan_none = lambda v: None if v != v else v
    print(
        json.dumps(
            {
                "impl": "pytorch",
                "framework": f"torch {torch.__version__}",
                "device": a.device,
                "threads": torch.get_num_threads(),
                "nf": a.nf,
                "batch_size": a.batch_size,
                "lr": a.lr,
                "momentum": a.momentum,
                "seed": a.seed,
                "epochs": len(epoch_times),
                "train_size": n,
                "val_size": a.val_size,
                "test_size": test_n,
                "epoch_times_s": epoch_times,
                "epoch_time_s": total / len(epoch_times),
                "steady_epoch_time_s": sum(steady) / len(steady),
                "samples_per_s": n * len(steady) / sum(steady),
                "minor_faults_per_epoch": faults,
                "malloc": os.environ.get("GLIBC_TUNABLES") or "glibc defaults",
                "train_loss": nan_none(train_loss),
                "val_accuracy": nan_none(val_acc),
                "test_accuracy": test_acc,
                "steps": steps,
                "status": "complete",
            }
        )
    )


if __name__ == "__main__":
    main()
