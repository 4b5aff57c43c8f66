#!/usr/bin/env bash
# The speed comparison of BENCHMARKS.md ("Speed"): `pynomaly detect` (whole process,
# reading included) beside scikit-learn (fit + score only), back to back in one run.
#   bench/detect_speed.sh [DATASETS_DIR]      (default ../shared/datasets)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${1:-$repo/../shared/datasets}"
bin="${CARGO_TARGET_DIR:-$repo/target}/release/pynomaly"
(cd "$repo" && cargo build --release -p pynomaly --quiet)
echo "# $(date -u +%FT%TZ)  $(nproc) CPUs  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # label, then the pynomaly detect arguments
    local label=$1; shift
    /usr/bin/time -f "$label: %e s wall, %U s user, %M KiB peak RSS" "$bin" detect "$@" --output /dev/null 2>&1 \
        | grep -E "^$label:|time  "
}
for s in 0 1 2 3 4; do run "IF http seed $s" "$data/http.csv.gz" --random-state "$s"; done
run "LOF shuttle" "$data/shuttle.csv" --algorithm lof
run "LOF http" "$data/http.csv.gz" --algorithm lof
echo "# scikit-learn, same machine, right after:"
python3 "$repo/bench/sklearn_speed.py" "$data"
