#!/usr/bin/env bash
# Remake the screenshots of docs/report/: run the report's browser test
# (tests/tests/it/report.rs: real studies, real binaries, headless
# Chromium), keep its pages and section screenshots, copy one per section.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
keep="$(mktemp -d)"
(cd "$root" && cargo build -p hps-master -p hps-worker \
  && HPS_KEEP_REPORT="$keep" cargo test -p hps-tests --test it \
     report::reports_of_real_studies_show_every_figure_in_a_browser)
shots="$keep/shots"
copy() { cp "$shots/$1.png" "$here/$2.png"; }
copy compare-compare        compare
copy compare-s1-part-summary summary
copy compare-s1-part-best    best
copy compare-s1-part-history history
copy compare-s1-part-params  hyperparameters
copy compare-s1-part-timeline timeline
copy compare-s1-part-trials  trials
copy repeats-part-curves     learning-curves
copy repeats-part-params     final-metrics
copy repeats-part-settings   settings
copy repeats-part-instruments instruments
copy asha-part-fidelity      multi-fidelity
copy empty                   empty-study
rm -rf "$keep"
echo "screenshots written to $here"
