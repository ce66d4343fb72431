#!/usr/bin/env bash
# Run presets on the real Fashion-MNIST with one master and two CPU workers
# (deploy/local.sh), one after another; time each, keep each study and its
# report, and screenshot the top of each report with headless Chromium.
#
#   docs/results/run.sh OUT PRESET...
#
# - OUT/<preset>/ is the study (report.html inside), OUT/times.tsv the
#   wall time of each run; a preset already finished in OUT is skipped.
# - Screenshots go to docs/results/<preset>.png.
# - Needs release binaries (cargo build --release -p hps-master -p
#   hps-worker, or $HPS_BIN_DIR) and the Debian package
#   dataset-fashion-mnist; Chromium for the screenshots.
# - hypothesis-transfer(-quick) starts from base-model(-quick)'s best trial:
#   list base-model first.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin_dir="${HPS_BIN_DIR:-$root/target/release}"
out="$1"; shift
mkdir -p "$out"
chromium="$(command -v chromium || command -v chromium-browser || true)"
for p in "$@"; do
  dir="$out/$p"
  if [[ -f "$dir/finished.json" ]]; then echo "$p: finished already"; continue; fi
  [[ -d "$dir" ]] || "$bin_dir/hps-master" init "$dir" --preset "$p"
  start=$(date +%s)
  HPS_BIN_DIR="$bin_dir" "$root/deploy/local.sh" "$dir" --workers 2 --cpu >"$out/$p.log" 2>&1
  end=$(date +%s)
  printf '%s\t%s\n' "$p" "$((end - start))" >>"$out/times.tsv"
  echo "$p: $((end - start)) s"
  if [[ -n "$chromium" ]]; then
    "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
      --window-size=1280,2400 --screenshot="$here/$p.png" "file://$(realpath "$dir/report.html")" \
      >/dev/null 2>&1 || echo "$p: no screenshot (chromium failed)"
  fi
done
