#!/usr/bin/env bash
# Where the server's CPU goes on the 1-row predict of bench/service_bench.sh: one release
# `pynomaly serve` under wrk (-t2 -c32, 10 s), `perf record -F 499 -g` on the server for 6 s
# of it, then the top symbols and the CPU per request. TRACES=on exports every span to
# bench/otlp_sink.py (as bench/tracing_bench.sh does; SINK=rust: bench-tools' otlp-sink,
# SINK_BIN as there); TRACES=off (default) makes none.
#   TRACES=off bench/profile_predict.sh [PATH_TO_PYNOMALY]
# Needs perf (linux-perf), wrk, curl, python3 with numpy. Output in $BENCH_WORK (/tmp/pynomaly-profile).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pynomaly}
W=${BENCH_WORK:-/tmp/pynomaly-profile}; ADDR=${ADDR:-127.0.0.1:18190}; SINK_PORT=${SINK_PORT:-18191}
[ -x "$BIN" ] || { echo "no pynomaly binary at $BIN" >&2; exit 1; }
rm -rf "$W"; mkdir -p "$W/data"
python3 "$ROOT/bench/fastapi_peer/bench_data.py" "$W/bodies" >/dev/null
pids=(); trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
env=(PYNOMALY_BIND=$ADDR PYNOMALY_DATA_DIR=$W/data LOG_LEVEL=warn PYNOMALY_RATE_LIMIT_PER_MINUTE=0)
if [ "${TRACES:-off}" = on ]; then
  if [ "${SINK:-python}" = rust ]; then
    "${SINK_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/otlp-sink}" --port "$SINK_PORT" >"$W/sink.log" 2>&1 &
  else
    python3 "$ROOT/bench/otlp_sink.py" --port "$SINK_PORT" --stats "$W/sink.json" >"$W/sink.log" 2>&1 &
  fi
  pids+=($!); sleep 1
  env+=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT OTEL_SERVICE_NAME=pynomaly-profile)
fi
env "${env[@]}" "$BIN" serve >"$W/server.log" 2>&1 &
S=$!; pids+=($S)
for _ in $(seq 100); do curl -sf -o /dev/null "http://$ADDR/health/live" && break; sleep 0.1; done
for _ in $(seq 40); do [ -s "$W/data/admin.key" ] && break; sleep 0.1; done
KEY=$(tr -d ' \r\n' <"$W/data/admin.key")
curl -sf -o /dev/null -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  --data-binary "@$W/bodies/train.json" "http://$ADDR/api/v1/models"
BODY_FILE=$W/bodies/predict_1.json BENCH_TOKEN=$KEY wrk -t2 -c32 -d10s -s "$ROOT/bench/wrk/post_json.lua" \
  "http://$ADDR/api/v1/models/bench/predict" >"$W/wrk.txt" 2>&1 &
WRK=$!
sleep 2
t0=$(awk '{print $14+$15}' "/proc/$S/stat")
perf record -o "$W/perf.data" -F 499 -g -p "$S" -- sleep 6 >/dev/null 2>&1
t1=$(awk '{print $14+$15}' "/proc/$S/stat")
wait "$WRK"
rps=$(awk '/Requests\/sec/ {print $2}' "$W/wrk.txt")
echo "traces ${TRACES:-off}: $rps requests/s (wrk, under perf); server CPU in the 6 s: $(( t1 - t0 )) ticks of 1/$(getconf CLK_TCK) s"
perf report -i "$W/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -${TOP:-25}
