#!/usr/bin/env bash
# Build the CUDA hps-worker on a machine without a GPU or a CUDA install.
#
#   deploy/build-cuda.sh
#
# - Installs NVIDIA's CUDA 13 toolkit wheels from PyPI (nvcc, headers, cudart,
#   cuBLAS, cuRAND, NVRTC) into a venv under target/cuda-toolkit/, adds the
#   unversioned .so links and the lib64 link the build expects, and a
#   libcuda.so.1 stub in lib/stubs for the linker (no wheel ships the driver
#   library). Steps already done are skipped; run it again at any time.
# - Builds `cargo build --release --locked --features cuda -p hps-worker
#   --target-dir target/cuda`, so target/release (the CPU build) is untouched.
# - Environment: CUDA_COMPUTE_CAP (default 90: H100/H200; 80 = A100,
#   86 = RTX 30xx/A40, 89 = L4/L40/RTX 40xx), PYTHON (default python3).
# - Takes 15 to 50 minutes on 2 cores (nvcc compiling candle's kernels is
#   most of it) and about 2.5 GB of disk; on a shared machine run it as
#   `nice -n 19 deploy/build-cuda.sh`.
# The binary needs an NVIDIA driver (libcuda.so.1) and the CUDA 13 runtime
# libraries on the GPU host; see docs/gpu.md.
set -euo pipefail

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -eq 0 ]] || usage

die() { echo "build-cuda.sh: $*" >&2; exit 1; }
step() { echo "==> $*"; }

here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"

cuda_version="13.2.2"   # cudarc 0.19 supports up to CUDA 13.4
cap="${CUDA_COMPUTE_CAP:-90}"
[[ "$cap" =~ ^[0-9]{2,3}$ ]] || die "CUDA_COMPUTE_CAP must be a number like 90 (sm_90), got '$cap'"
python="${PYTHON:-python3}"
tk="$here/target/cuda-toolkit"
venv="$tk/venv"

# --- prerequisites -----------------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo not found; install a Rust toolchain (https://rustup.rs)"
command -v "$python" >/dev/null 2>&1 \
  || die "$python not found; install Python 3 (Debian/Ubuntu: apt-get install python3 python3-venv) or set PYTHON"
command -v gcc >/dev/null 2>&1 \
  || die "gcc not found; nvcc needs it as host compiler and it builds the libcuda stub (Debian/Ubuntu: apt-get install build-essential)"
command -v g++ >/dev/null 2>&1 \
  || die "g++ not found; nvcc compiles candle's kernels with it (Debian/Ubuntu: apt-get install g++)"

# --- 1. the toolkit wheels in a venv ------------------------------------------
if [[ ! -x "$venv/bin/python" ]]; then
  step "creating the venv $venv"
  mkdir -p "$tk"
  "$python" -m venv "$venv" 2>"$tk/venv.err" || {
    cat "$tk/venv.err" >&2; rm -rf "$venv"
    die "'$python -m venv' failed; install the venv module (Debian/Ubuntu: apt-get install python3-venv)"
  }
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
root="$site/nvidia/cu13"
stamp="$tk/.installed-cuda-toolkit-$cuda_version"
if [[ ! -f "$stamp" || ! -x "$root/bin/nvcc" ]]; then
  step "installing cuda-toolkit $cuda_version wheels from PyPI (about 1 GB download)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install \
    "cuda-toolkit[nvcc,cudart,cublas,curand,nvrtc,cccl,crt,nvvm]==$cuda_version"
  [[ -x "$root/bin/nvcc" ]] || die "no nvcc at $root/bin/nvcc after installing the wheels; did the wheel layout change?"
  touch "$stamp"
else
  step "cuda-toolkit $cuda_version already installed in $venv"
fi

# --- 2. the links the build expects -------------------------------------------
# The wheels ship only versioned libraries (libcublas.so.13); the linker's -lcublas
# wants libcublas.so.
for lib in "$root"/lib/lib*.so.*; do
  [[ -e "$lib" ]] || continue
  base="$(basename "$lib")"
  plain="${base%%.so.*}.so"
  [[ -e "$root/lib/$plain" || -L "$root/lib/$plain" ]] || ln -s "$base" "$root/lib/$plain"
done
[[ -e "$root/lib64" ]] || ln -s lib "$root/lib64"

# --- 3. a libcuda.so.1 stub for the linker --------------------------------------
# No wheel ships the driver library. The stub defines every cu* driver function
# that cudarc's bindings declare, so the link succeeds and the binary records
# NEEDED libcuda.so.1. It lives in lib/stubs, which cudarc adds to the linker's
# search path (link time only): the binary has no rpath, so at run time the
# real driver's libcuda.so.1 is loaded.
stubs="$root/lib/stubs"
if [[ ! -f "$stubs/libcuda.so.1" ]]; then
  step "generating the libcuda.so.1 link stub"
  cargo fetch --locked >/dev/null
  cudarc_version="$(awk '/^name = "cudarc"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)"
  [[ -n "$cudarc_version" ]] || die "cudarc is not in Cargo.lock; has the worker's cuda feature changed?"
  sys_dir=""
  for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc_version"/src/driver/sys; do
    [[ -d "$d" ]] && sys_dir="$d"
  done
  [[ -n "$sys_dir" ]] || die "cudarc $cudarc_version sources not found under ${CARGO_HOME:-$HOME/.cargo}/registry/src"
  mkdir -p "$stubs"
  grep -rhoE '\bfn cu[A-Z][A-Za-z0-9_]*\(' "$sys_dir" | sed 's/^fn //; s/($//' | sort -u \
    | awk 'BEGIN { print "/* Link-time stub of libcuda.so.1; never load it. */" }
           { printf "int %s(void) { return 999; }\n", $1 }' > "$stubs/libcuda-stub.c"
  n="$(grep -c '^int ' "$stubs/libcuda-stub.c")"
  (( n > 100 )) || die "found only $n cu* functions in $sys_dir; the stub would be incomplete"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so.1" "$stubs/libcuda-stub.c"
  ln -sf libcuda.so.1 "$stubs/libcuda.so"
  echo "    $n functions from cudarc $cudarc_version"
fi

# --- 4. the build -------------------------------------------------------------
export CUDA_HOME="$root" CUDA_PATH="$root" CUDA_ROOT="$root"
export PATH="$root/bin:$PATH"
export CUDA_COMPUTE_CAP="$cap"
step "building hps-worker with --features cuda for sm_$cap (nvcc $("$root/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"
start=$SECONDS
cargo build --release --locked --features cuda -p hps-worker --target-dir target/cuda
bin="$here/target/cuda/release/hps-worker"
[[ -x "$bin" ]] || die "cargo succeeded but $bin is missing"

cat <<EOF

Built in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s:
  $bin  ($(du -h "$bin" | cut -f1), CUDA 13, sm_$cap)

It needs, on the GPU host:
  - an NVIDIA driver for CUDA >= ${cuda_version%.*} (nvidia-smi shows "CUDA Version: ${cuda_version%.*}" or later);
  - the CUDA 13 runtime libraries it links:
$(ldd "$bin" | grep -E 'lib(cudart|cublas|curand|nvrtc)\.so' | awk '{ print "      " $1 }' || true)
      libcublasLt.so.13 (loaded by libcublas)
    e.g. python3 -m venv ~/cuda13 && ~/cuda13/bin/pip install "cuda-toolkit[cudart,cublas,curand]==$cuda_version"
    then LD_LIBRARY_PATH=~/cuda13/lib/python3.X/site-packages/nvidia/cu13/lib (not lib/stubs).

Copy it to a GPU host and run one worker per GPU:
  scp $bin gpuhost:hps/bin/hps-worker
  ssh gpuhost 'CUDA_VISIBLE_DEVICES=0 hps/bin/hps-worker STUDY_DIR --device cuda:0 --id gpu0'
deploy/local.sh takes it from \$HPS_BIN_DIR next to an hps-master (any build).
See docs/gpu.md.
EOF
