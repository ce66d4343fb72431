#!/usr/bin/env bash
# The README's main command: a small real search (Scenario 5's space, 8
# trials of 1 epoch on 5000 Fashion-MNIST examples) with one master and two
# CPU workers. Installs the dataset if missing, builds, runs, prints the best
# trials. Run it again to continue an interrupted search.
#
#   deploy/quickstart.sh [DIR]      (default DIR: runs/quickstart)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$here/runs/quickstart}"
data=/usr/share/datasets/fashion-mnist

if [[ ! -f "$data/train-images-idx3-ubyte.gz" ]]; then
  echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)..."
  sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_=sudo
  $sudo_ apt-get update -qq || true
  $sudo_ apt-get install -y -qq dataset-fashion-mnist
fi

echo "building (release)..."
(cd "$here" && cargo build --release --locked -p hps-master -p hps-worker)

exec "$here/deploy/local.sh" "$dir" --workers 2 --cpu --preset quickstart --data "$data"
