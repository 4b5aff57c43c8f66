#!/usr/bin/env bash
# What a canary or shadow rollout costs the 1-row predict (issue "Model lifecycle"):
# `pynomaly serve` with the model `bench` (version 1 production, version 2 staging, both
# IsolationForest(100 trees) on the same seeded 10,000 x 10 matrix as service_bench.sh),
# measured with wrk, the settings one after the other on one server (each round starting
# one setting later), ROUNDS times:
#   none    no rollout
#   canary  PUT .../canary {"version": 2, "traffic_percent": 10}   (requests keyed by wrk)
#   shadow10  PUT .../canary {"version": 2, "mode": "shadow", "traffic_percent": 10}
#                                                       (a tenth of the predicts shadowed)
#   shadow  PUT .../canary {"version": 2, "mode": "shadow"}         (every predict shadowed)
#
#   bench/rollout_bench.sh [PATH_TO_PYNOMALY]   # default ${CARGO_TARGET_DIR:-target}/release/pynomaly
#
# Settings: DURATION=10s THREADS=2 CONNECTIONS=32 ROUNDS=2 ADDR=127.0.0.1:18090
#   BENCH_WORK=/tmp/pynomaly-rollout-bench PYTHON=python3 (with numpy, for the bodies)
# Prints a table of requests per second per setting and round, each setting's median
# relative to `none` and the median of each round's ratio to that round's `none` (the
# figure that moves least with a noisy machine), and how many shadowed predicts each
# shadow run compared and dropped (the shadow thread runs at the lowest CPU priority: a
# saturated server drops samples).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/pynomaly}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-2}
ADDR=${ADDR:-127.0.0.1:18090}
WORK=${BENCH_WORK:-/tmp/pynomaly-rollout-bench}
PYTHON=${PYTHON:-python3}

die() { echo "rollout_bench: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "no pynomaly binary at $BIN (cargo build --release -p pynomaly)"
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
"$PYTHON" -c 'import numpy' 2>/dev/null || die "$PYTHON has no numpy (the request bodies need it)"

mkdir -p "$WORK"
"$PYTHON" "$ROOT/bench/fastapi_peer/bench_data.py" "$WORK/bodies" >/dev/null
DATA=$(mktemp -d /tmp/pynomaly-rollout-data.XXXXXX)
PYNOMALY_RATE_LIMIT_PER_MINUTE=0 PYNOMALY_BIND=$ADDR PYNOMALY_DATA_DIR=$DATA LOG_LEVEL=warn \
  setsid "$BIN" serve >"$WORK/pynomaly.log" 2>&1 </dev/null &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 200); do curl -sf -o /dev/null "http://$ADDR/health" && break; sleep 0.1; done
for _ in $(seq 40); do [ -s "$DATA/admin.key" ] && break; sleep 0.25; done
KEY=$(tr -d ' \r\n' <"$DATA/admin.key")
call() {  # method path [body] -> status
  curl -s -o "$WORK/last.json" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "http://$ADDR$2"
}
[ "$(call POST /api/v1/models "@$WORK/bodies/train.json")" = 201 ] || die "training v1: $(cat "$WORK/last.json")"
"$PYTHON" - "$WORK/bodies/train.json" "$WORK/train-manual.json" <<'PY'
import json, sys
body = json.load(open(sys.argv[1]))
body["promote"] = "manual"
json.dump(body, open(sys.argv[2], "w"))
PY
[ "$(call POST /api/v1/models "@$WORK/train-manual.json")" = 201 ] || die "training v2: $(cat "$WORK/last.json")"

run() {  # setting -> requests/s
  case $1 in
    none) call DELETE /api/v1/models/bench/canary >/dev/null ;;
    canary) [ "$(call PUT /api/v1/models/bench/canary '{"version": 2, "traffic_percent": 10}')" = 200 ] || die "canary: $(cat "$WORK/last.json")" ;;
    shadow10) [ "$(call PUT /api/v1/models/bench/canary '{"version": 2, "mode": "shadow", "traffic_percent": 10}')" = 200 ] || die "shadow10: $(cat "$WORK/last.json")" ;;
    shadow) [ "$(call PUT /api/v1/models/bench/canary '{"version": 2, "mode": "shadow"}')" = 200 ] || die "shadow: $(cat "$WORK/last.json")" ;;
  esac
  BODY_FILE=$WORK/bodies/predict_1.json BENCH_TOKEN=$KEY \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$ROOT/bench/wrk/post_json.lua" \
    "http://$ADDR/api/v1/models/bench/predict" >"$WORK/wrk-$1.txt" 2>&1
  case $1 in
    shadow*) call GET /api/v1/models/bench/canary >/dev/null
             "$PYTHON" -c 'import json, sys; s = json.load(open(sys.argv[1]))["comparison"]["shadow"]; print("%s %s compared, %s dropped" % (sys.argv[2], s["rows_compared"], s["dropped"]))' \
               "$WORK/last.json" "$1" >>"$WORK/shadow-samples.txt" ;;
  esac
  grep -E '^Requests/sec' "$WORK/wrk-$1.txt" | awk '{print $2}'
}
: >"$WORK/shadow-samples.txt"

declare -A results ratios
echo "| round | none | canary 10% | shadow 10% | shadow 100% |"
echo "|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  # Each round starts one setting later, so a drift of the machine within a round does
  # not always fall on the same setting.
  settings=(none canary shadow10 shadow)
  declare -A got=()
  for i in 0 1 2 3; do
    s=${settings[$(( (i + r - 1) % 4 ))]}
    got[$s]=$(run "$s")
  done
  line="| $r"
  for s in none canary shadow10 shadow; do
    results[$s]="${results[$s]:-} ${got[$s]}"
    line="$line | ${got[$s]}"
    # Each setting against the same round's `none`.
    [ "$s" = none ] || ratios[$s]="${ratios[$s]:-} $(awk -v a="${got[$s]}" -v b="${got[none]}" 'BEGIN {printf "%.4f", a / b}')"
  done
  echo "$line |"
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
base=$(echo "${results[none]}" | median)
for s in canary shadow10 shadow; do
  m=$(echo "${results[$s]}" | median)
  paired=$(echo "${ratios[$s]}" | median)
  echo "$s: median $m req/s, $(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.1f", 100 * a / b}')% of no rollout ($base req/s); median of the rounds' ratios to their own none: $(awk -v r="$paired" 'BEGIN {printf "%.1f", 100 * r}')%"
done
echo "shadowed predicts per shadow run: $(paste -sd';' "$WORK/shadow-samples.txt")"
load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average at the end: $load"
