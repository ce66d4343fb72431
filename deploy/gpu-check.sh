#!/usr/bin/env bash
# The GPU check: is the CUDA hps-worker correct on a GPU, how fast is it
# against PyTorch on the same GPU, and how many trials per GPU do --slots
# give. One command on the GPU host, under 8 minutes, writing
# OUT/gpu-check.json (every figure) and OUT/gpu-check.log. See docs/gpu.md.
#
#   deploy/gpu-check.sh --pack              # here: build and pack what the GPU host needs
#   deploy/gpu-check.sh --out OUT           # on the GPU host, in this tree with gpu-pack/
#   deploy/gpu-check.sh --dry-run --out OUT # anywhere: the whole check on the CPU, tiny sizes
#
# --pack builds the CUDA worker (deploy/build-cuda.sh: 15-50 min the first
#   time) and the CPU master, strips both and compresses them with xz into
#   gpu-pack/ (git-ignored), with the first 10,000 training and the 10,000
#   test examples of Fashion-MNIST (/usr/share/datasets/fashion-mnist,
#   Debian package dataset-fashion-mnist) for the correctness runs. It
#   fails if the folder would exceed 60 MiB (64 MiB travel to a device).
# The check needs python3 (the standard library; PyTorch for the PyTorch
#   rows: PYTHON names a python that has it) and nvidia-smi. It finds the
#   CUDA 13 runtime libraries in a CUDA install or in PyTorch's nvidia wheels
#   and puts them on LD_LIBRARY_PATH for the worker.
# --dry-run runs every phase on the CPU with target/release (or $HPS_BIN_DIR)
#   and tiny sizes, and records the GPU-only phases as skipped.
# Other flags go to deploy/gpu/check.py (--budget-s, --phase-s, --nfs,
#   --slots, --slots-trials, --only PHASES, ...; see its --help).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
pack="$here/gpu-pack"
die() { echo "gpu-check.sh: $*" >&2; exit 1; }
usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
fmnist="${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
python="${PYTHON:-python3}"

mode=check dry=() out="" rest=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pack) mode=pack ;;
    --dry-run) dry=(--dry-run) ;;
    --out) out="${2:?--out needs a directory}"; shift ;;
    -h|--help) usage ;;
    *) rest+=("$1") ;;
  esac
  shift
done

# First N examples of an IDX file (images or labels), gzip-compressed.
idx_head() { # src.gz dst.gz n
  "$python" - "$@" <<'PY'
import gzip, struct, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
raw = gzip.open(src).read()
magic, count = struct.unpack(">II", raw[:8])
if magic == 0x803:
    head, size = 16, 784
elif magic == 0x801:
    head, size = 8, 1
else:
    sys.exit(f"{src}: not an IDX file (magic {magic:#x})")
n = min(n, count)
with gzip.open(dst, "wb", compresslevel=9) as f:
    f.write(raw[:4] + struct.pack(">I", n) + raw[8:head] + raw[head:head + n * size])
PY
}

if [[ $mode == pack ]]; then
  [[ -f "$fmnist/t10k-images-idx3-ubyte.gz" ]] \
    || die "Fashion-MNIST not found in $fmnist: apt-get install dataset-fashion-mnist (or set FASHION_MNIST)"
  command -v xz >/dev/null || die "xz not found: apt-get install xz-utils"
  "$here/deploy/build-cuda.sh"
  (cd "$here" && cargo build --release --locked -q -p hps-master)
  rm -rf "$pack.tmp" && mkdir -p "$pack.tmp/bin" "$pack.tmp/data"
  for b in target/cuda/release/hps-worker target/release/hps-master; do
    strip -o "$pack.tmp/bin/$(basename "$b")" "$here/$b"
    xz -T0 -6 "$pack.tmp/bin/$(basename "$b")"
  done
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte; do
    idx_head "$fmnist/$f.gz" "$pack.tmp/data/$f.gz" 10000
  done
  cp "$fmnist"/t10k-*-idx*-ubyte.gz "$pack.tmp/data/"
  git -C "$here" rev-parse HEAD > "$pack.tmp/COMMIT" 2>/dev/null || echo unknown > "$pack.tmp/COMMIT"
  size=$(du -sm "$pack.tmp" | cut -f1)
  (( size <= 60 )) || die "gpu-pack would be ${size} MiB, over 60 MiB"
  rm -rf "$pack" && mv "$pack.tmp" "$pack"
  echo "gpu-pack/: ${size} MiB"; ls -l "$pack/bin" "$pack/data"
  exit 0
fi

[[ -n "$out" ]] || die "--out DIR is required (where gpu-check.json and gpu-check.log go)"
command -v "$python" >/dev/null || die "$python not found: install python3 or set PYTHON"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ ${#dry[@]} -gt 0 ]]; then
  bins="${HPS_BIN_DIR:-$here/target/release}"
  for b in hps-master hps-worker; do
    [[ -x "$bins/$b" ]] || die "$bins/$b not found: cargo build --release (or set HPS_BIN_DIR)"
  done
  data="$work/data"; mkdir -p "$data"
  [[ -f "$fmnist/t10k-images-idx3-ubyte.gz" ]] \
    || die "Fashion-MNIST not found in $fmnist: apt-get install dataset-fashion-mnist (or set FASHION_MNIST)"
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    idx_head "$fmnist/$f.gz" "$data/$f.gz" 10000
  done
  set -- --correct-train 2000 --speed-train 2000 --nfs 8 --slots 1,2 --slots-trials 4 \
         --slots-train 500 --budget-s 300
else
  [[ -d "$pack/bin" ]] || die "$pack not found: run deploy/gpu-check.sh --pack on a build machine first"
  bins="$work/bin"; mkdir -p "$bins"
  for b in hps-master hps-worker; do
    if command -v xz >/dev/null; then xz -dc "$pack/bin/$b.xz" > "$bins/$b"
    else "$python" -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' \
           "$pack/bin/$b.xz" > "$bins/$b"; fi
    chmod +x "$bins/$b"
  done
  data="$pack/data"
  # The CUDA 13 runtime: a CUDA install, else the nvidia wheels of PyTorch.
  libs="$("$python" - <<'PY' 2>/dev/null || true
import glob, os, site
dirs = set()
roots = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
roots += glob.glob("/usr/local/cuda-13*/lib64")
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    roots += glob.glob(os.path.join(sp, "nvidia", "*", "lib"))
for r in roots:
    for lib in ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10"):
        if os.path.exists(os.path.join(r, lib)):
            dirs.add(r)
print(":".join(sorted(dirs)))
PY
)"
  export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "gpu-check.sh: LD_LIBRARY_PATH=$LD_LIBRARY_PATH; pack of commit $(cat "$pack/COMMIT")"
  set --
fi
status=0
"$python" "$here/deploy/gpu/check.py" "${dry[@]}" --out "$out" --bin-dir "$bins" \
  --real-data "$data" --python "$python" "$@" "${rest[@]}" || status=$?
exit "$status"
