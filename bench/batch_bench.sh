#!/usr/bin/env bash
# Batch job benchmark (issue 3, "Speed"): a batch job scoring an http.csv.gz-sized CSV
# (567,498 rows) and one twice that size with a trained 100-tree isolation forest, on the
# embedded default. Prints rows/s and the server's peak resident memory (VmHWM) after each
# job: the job streams its source chunk by chunk, so the peak must not grow with the file.
# Then it downloads the job's output (GET /api/v1/jobs/{id}/result) and times that too.
# The server inherits the environment: with PYNOMALY_ENCRYPTION_KEY set, outputs are
# encrypted at rest and decrypted on download (the cost of encryption at rest).
#   bench/batch_bench.sh [DATASETS_DIR] [PATH_TO_PYNOMALY]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${1:-$ROOT/../shared/datasets}
BIN=${2:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pynomaly}
ADDR=127.0.0.1:18090
WORK=$(mktemp -d /tmp/pynomaly-batch-bench.XXXXXX)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/data/sources"
zcat "$DATA/http.csv.gz" > "$WORK/data/sources/http.csv"
{ zcat "$DATA/http.csv.gz"; zcat "$DATA/http.csv.gz" | tail -n +2; } > "$WORK/data/sources/http_x2.csv"
PYNOMALY_DATA_DIR=$WORK/data PYNOMALY_BIND=$ADDR LOG_LEVEL=warn "$BIN" serve > "$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://$ADDR/health/live" >/dev/null && break; sleep 0.2; done
curl -sf "http://$ADDR/health/live" >/dev/null || { cat "$WORK/server.log"; echo "server did not start" >&2; exit 1; }
KEY=$(cat "$WORK/data/admin.key")
H=(-H "Authorization: Bearer $KEY" -H 'Content-Type: application/json')
# Train on the first 10,000 rows of http (features only).
python3 - "$WORK" <<'PY'
import csv, json, sys
rows = []
with open(sys.argv[1] + "/data/sources/http.csv") as f:
    r = csv.reader(f); next(r)
    for i, line in enumerate(r):
        if i >= 10000: break
        rows.append([float(v) for v in line[:-1]])
json.dump({"model_name": "http", "algorithm": "isolation_forest", "random_state": 0, "data": rows}, open(sys.argv[1] + "/train.json", "w"))
PY
curl -sf "${H[@]}" -d @"$WORK/train.json" "http://$ADDR/api/v1/models" >/dev/null
echo "| source | rows | seconds | rows/s | server peak RSS after the job | output download s (MB) |"
echo "|---|---:|---:|---:|---:|---:|"
for src in http.csv http_x2.csv; do
  rows=$(($(wc -l < "$WORK/data/sources/$src") - 1))
  t0=$(date +%s.%N)
  job=$(curl -sf "${H[@]}" -d "{\"data_source\": \"$src\", \"model_name\": \"http\", \"output_format\": \"csv\"}" "http://$ADDR/api/v1/batch" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
  while :; do
    status=$(curl -sf "${H[@]}" "http://$ADDR/api/v1/jobs/$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    case $status in succeeded) break ;; failed|cancelled) echo "job $job $status" >&2; exit 1 ;; esac
    sleep 0.05
  done
  t1=$(date +%s.%N)
  hwm=$(grep VmHWM /proc/$PID/status | awk '{print $2/1024 " MiB"}')
  t2=$(date +%s.%N)
  bytes=$(curl -sf "${H[@]}" -o /dev/null -w '%{size_download}' "http://$ADDR/api/v1/jobs/$job/result")
  t3=$(date +%s.%N)
  python3 -c "r=$rows; s=$t1-$t0; d=$t3-$t2; print(f'| {\"$src\"} | {r} | {s:.2f} | {r/s:,.0f} | $hwm | {d:.2f} ({$bytes/1e6:.1f}) |')"
done
