#!/usr/bin/env bash
# Tracing overhead of two builds, compared in the same minutes: PAIRS times, one round of
# bench/tracing_bench.sh (traces off, then on, fresh servers) for each build, the order
# alternating, so that the host's drift falls on both. Prints one line per run
# (on/off ratio, server CPU µs per request off and on, the request threads' and the
# SDK's batch thread's µs with traces on) and the medians per build.
#
#   bench/tracing_ab.sh OLD_BINARY NEW_BINARY
#
# Settings: PAIRS=4 DURATION=10s SINK=rust (as bench/tracing_bench.sh; the Rust receiver
# costs the shared cores least). Full output of every run appended to $BENCH_WORK/ab.log
# (default /tmp/pynomaly-tracing-ab).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
A=$1 B=$2
PAIRS=${PAIRS:-4}
WORK=${BENCH_WORK:-/tmp/pynomaly-tracing-ab}
mkdir -p "$WORK"
SUMMARY=$WORK/summary.tsv
: >"$SUMMARY"
for i in $(seq "$PAIRS"); do
  if (( i % 2 )); then order=("$A" "$B"); else order=("$B" "$A"); fi
  for bin in "${order[@]}"; do
    out=$(SINK=${SINK:-rust} ROUNDS=1 DURATION=${DURATION:-10s} BENCH_WORK=$WORK/run \
      "$ROOT/bench/tracing_bench.sh" "$bin" 2>&1) || { echo "$out" >&2; exit 1; }
    echo "$out" >>"$WORK/ab.log"
    OUT=$out python3 - "$bin" "$i" "$SUMMARY" <<'PY'
import os, re, sys
out = os.environ["OUT"]
bin, pair, summary = sys.argv[1:]
m = re.search(r"on/off ([0-9.]+);.*median server CPU µs/req off ([0-9.]+), on ([0-9.]+)", out)
threads = dict(re.findall(r"\| predict_1 \| on \| (\S+) \| ([0-9.]+) \|", out))
req = threads.get("pynomaly-async", "nan")
batch = next((v for k, v in threads.items() if k.startswith("OpenTelemetry")), "nan")
print(f"{bin} pair {pair}: on/off {m[1]}, server CPU µs/req off {m[2]} on {m[3]} "
      f"(request threads {req}, batch thread {batch})")
open(summary, "a").write(f"{bin}\t{m[1]}\t{m[2]}\t{m[3]}\t{req}\t{batch}\n")
PY
  done
done
python3 - "$SUMMARY" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
for b in dict.fromkeys(r[0] for r in rows):
    mine = [list(map(float, r[1:])) for r in rows if r[0] == b]
    med = lambda i: statistics.median(r[i] for r in mine)
    extra = statistics.median(r[2] - r[1] for r in mine)
    print(f"{b}: median on/off {med(0):.3f} over {len(mine)} runs; server CPU with traces on "
          f"minus off {extra:.2f} µs/req (median); batch thread {med(4):.2f} µs/req")
PY
