#!/usr/bin/env bash
# Scale-out benchmark (issue 4, "Speed"): the docs/scale-out.md topology on loopback -- two
# `pynomaly serve` instances behind nginx (the repository's nginx.conf, ports rewritten), a
# `pynomaly worker`, Postgres, Redis and an S3-compatible server (moto) -- measured three ways:
#
#   (a) predict, 1 row x 10 features, through nginx (2 instances) vs one instance direct
#       (wrk, $CONNECTIONS connections, $DURATION each after a $WARMUP warm-up);
#   (b) batch rows/s of one `pynomaly worker --concurrency 1`, source read from S3 vs a local
#       file (PYNOMALY_SOURCES_DIR), for $SMALL_ROWS and $LARGE_ROWS rows x 10 features, timed
#       submit -> succeeded by polling GET /api/v1/jobs/{id}, with the worker's peak RSS
#       (VmHWM) after each job;
#   (c) queue acceptance: $QUEUE_JOBS batch submissions (a 10-row source) as fast as
#       $QUEUE_CONCURRENCY concurrent clients can send them, with no worker
#       running (acceptance only: one Postgres insert + one Redis XADD each), through nginx and
#       direct, from a Python httpx client; then a worker runs the queued ones (at most
#       $DRAIN_S seconds), for the jobs/s one worker completes; then 5 s of wrk on
#       POST /api/v1/batch through nginx (the acceptance rate without a Python client).
#
#   bench/scaleout_bench.sh [PATH_TO_PYNOMALY]   # default ${CARGO_TARGET_DIR:-target}/release/pynomaly
#
# Model: IsolationForest, 100 trees, random_state 0, trained through nginx on the seeded
# 10,000 x 10 matrix of bench/fastapi_peer/bench_data.py.
#
# Needs: Postgres on 127.0.0.1:5432 (user postgres, trust auth), Redis on 127.0.0.1:6379,
# python3 with numpy, boto3, httpx and moto[server], nginx, wrk, curl, psql, redis-cli.
# Settings (environment): PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres
#   REDIS_URL=redis://127.0.0.1:6379 DURATION=10s WARMUP=2s THREADS=2 CONNECTIONS=32
#   SMALL_ROWS=300000 LARGE_ROWS=900000 QUEUE_JOBS=500 QUEUE_CONCURRENCY=16 DRAIN_S=60
#   KEEP_WORK=1 keeps the work directory (logs, wrk outputs, results.md).
# Everything it creates -- its database, its Redis keys, the moto server and its bucket,
# the processes, the work directory -- is removed on exit, also on failure or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pynomaly}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
PG_HOST=${PG_HOST:-127.0.0.1} PG_PORT=${PG_PORT:-5432} PG_USER=${PG_USER:-postgres}
REDIS=${REDIS_URL:-redis://127.0.0.1:6379}
DURATION=${DURATION:-10s} WARMUP=${WARMUP:-2s} THREADS=${THREADS:-2} CONNECTIONS=${CONNECTIONS:-32}
SMALL_ROWS=${SMALL_ROWS:-300000} LARGE_ROWS=${LARGE_ROWS:-900000}
QUEUE_JOBS=${QUEUE_JOBS:-500} QUEUE_CONCURRENCY=${QUEUE_CONCURRENCY:-16} DRAIN_S=${DRAIN_S:-60}
PYTHON=${PYTHON:-python3}
LUA=$ROOT/bench/wrk/post_json.lua

log() { printf '[scaleout_bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[scaleout_bench] ERROR: %s\n' "$*" >&2; exit 1; }
load1() { cut -d' ' -f1 /proc/loadavg; }

[ -x "$BIN" ] || die "no pynomaly binary at $BIN (cargo build --release -p pynomaly)"
for t in nginx wrk curl psql redis-cli; do command -v $t >/dev/null || die "$t is needed"; done
"$PYTHON" -c 'import numpy, boto3, httpx, moto' 2>/dev/null \
  || die "$PYTHON needs numpy, boto3, httpx and moto[server] (pip install numpy boto3 httpx 'moto[server]')"

TAG=scaleout_bench_$$_$(date +%s)
DB=pynomaly_$TAG
PREFIX=pynomaly-$TAG
BUCKET=pynomaly-${TAG//_/-}
WORK=$(mktemp -d /tmp/pynomaly-scaleout-bench.XXXXXX)
# nginx run as root drops its workers to `nobody`: they must reach nginx/tmp/ under WORK to
# buffer request bodies over client_body_buffer_size (the 10,000-row training body).
chmod 755 "$WORK"
PSQL=(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -v ON_ERROR_STOP=1 -qAt)
RCLI=(redis-cli -u "$REDIS")

# ---------------------------------------------------------------- cleanup on any exit
PIDS=() DB_MADE= WRK_PID=
stop_pid() {  # SIGTERM, then SIGKILL after 10 s
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  [ -z "$WRK_PID" ] || kill "$WRK_PID" 2>/dev/null || true
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
  if [ -n "$DB_MADE" ]; then
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 \
      || log "could not drop database $DB"
  fi
  "${RCLI[@]}" --scan --pattern "$PREFIX*" 2>/dev/null | xargs -r "${RCLI[@]}" del >/dev/null 2>&1 || true
  if [ -n "${KEEP_WORK:-}" ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_url() {  # what pid url logfile
  local deadline=$((SECONDS + 90))
  until curl -sf -o /dev/null --max-time 2 "$3"; do
    kill -0 "$2" 2>/dev/null || { tail -n 30 "$4" >&2; die "$1 exited during start-up"; }
    [ $SECONDS -lt $deadline ] || { tail -n 30 "$4" >&2; die "$1 not ready at $3 within 90 s"; }
    sleep 0.2
  done
}

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "work directory $WORK; database $DB; Redis prefix $PREFIX; bucket $BUCKET"

# ---------------------------------------------------------------- Postgres, moto
"${PSQL[@]}" -d postgres -c "CREATE DATABASE \"$DB\"" >/dev/null || die "cannot create database $DB"
DB_MADE=1
DATABASE_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$DB"
"${RCLI[@]}" ping >/dev/null || die "Redis at $REDIS does not answer"

S3_PORT=$(free_port)
"$PYTHON" -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 </dev/null &
PIDS+=($!)
S3=http://127.0.0.1:$S3_PORT
wait_url moto "${PIDS[-1]}" "$S3/moto-api/" "$WORK/moto.log"
curl -sf -X PUT "$S3/$BUCKET" >/dev/null || die "cannot create bucket $BUCKET on moto"

# ---------------------------------------------------------------- data
mkdir -p "$WORK/sources" "$WORK/bodies"
"$PYTHON" "$ROOT/bench/fastapi_peer/bench_data.py" "$WORK/bodies" >/dev/null
log "writing ${SMALL_ROWS}- and ${LARGE_ROWS}-row CSVs (10 features) and uploading them to S3"
"$PYTHON" - "$WORK/sources" "$SMALL_ROWS" "$LARGE_ROWS" "$S3" "$BUCKET" <<'PY'
import sys, numpy as np, boto3
out, small, large, endpoint, bucket = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench")
header = ",".join(f"f{i}" for i in range(10))
for name, n, seed in (("small.csv", small, 2), ("large.csv", large, 3), ("tiny.csv", 10, 4)):
    x = np.random.RandomState(seed).standard_normal((n, 10))
    path = f"{out}/{name}"
    np.savetxt(path, x, fmt="%.6f", delimiter=",", header=header, comments="")
    s3.upload_file(path, bucket, f"data/{name}")
PY
SMALL_MB=$(du -m "$WORK/sources/small.csv" | cut -f1); LARGE_MB=$(du -m "$WORK/sources/large.csv" | cut -f1)

# ---------------------------------------------------------------- instances, nginx
export DATABASE_URL REDIS_URL=$REDIS PYNOMALY_REDIS_PREFIX=$PREFIX
export PYNOMALY_STORAGE_URL=s3://$BUCKET/artifacts PYNOMALY_SOURCES_DIR=$WORK/sources
export PYNOMALY_SECRET_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')
# No rate limit unless asked: wrk would exceed the default per-key limit (issue 5).
export PYNOMALY_RATE_LIMIT_PER_MINUTE=${PYNOMALY_RATE_LIMIT_PER_MINUTE:-0}
export AWS_ENDPOINT_URL=$S3 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
export LOG_LEVEL=${LOG_LEVEL:-warn}
PORT_A=$(free_port) PORT_B=$(free_port) PORT_LB=$(free_port)
A=http://127.0.0.1:$PORT_A B=http://127.0.0.1:$PORT_B LB=http://127.0.0.1:$PORT_LB
start_instance() {  # name port
  PYNOMALY_BIND=127.0.0.1:$2 PYNOMALY_DATA_DIR=$WORK/$1 "$BIN" serve >"$WORK/$1.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_url "instance $1" "${PIDS[-1]}" "http://127.0.0.1:$2/health/ready" "$WORK/$1.log"
}
start_instance api-a "$PORT_A"   # the first start on the empty database creates the admin key
KEY=$(tr -d ' \r\n' <"$WORK/api-a/admin.key")
start_instance api-b "$PORT_B"
PID_A=${PIDS[-2]} PID_B=${PIDS[-1]}

mkdir -p "$WORK/nginx/tmp"
grep -q 'server 127.0.0.1:8001' "$ROOT/nginx.conf" && grep -q 'listen 8080' "$ROOT/nginx.conf" \
  || die "nginx.conf no longer has the 'server 127.0.0.1:8001' / 'listen 8080' lines this script rewrites"
sed -e "s/server 127.0.0.1:8001/server 127.0.0.1:$PORT_A/" \
    -e "s/server 127.0.0.1:8002/server 127.0.0.1:$PORT_B/" \
    -e "s/listen 8080/listen 127.0.0.1:$PORT_LB/" "$ROOT/nginx.conf" >"$WORK/nginx/nginx.conf"
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e stderr -g 'daemon off;' >"$WORK/nginx.log" 2>&1 </dev/null &
PIDS+=($!)
wait_url nginx "${PIDS[-1]}" "$LB/health/ready" "$WORK/nginx.log"
log "cluster up: nginx $LB -> $A (pid $PID_A), $B (pid $PID_B); moto $S3"

AUTH=(-H "Authorization: Bearer $KEY" -H 'Content-Type: application/json')
code=$(curl -s -o "$WORK/train.out" -w '%{http_code}' --max-time 300 "${AUTH[@]}" \
  --data-binary "@$WORK/bodies/train.json" "$LB/api/v1/models")
[ "$code" = 201 ] || die "training through nginx answered $code: $(head -c 400 "$WORK/train.out")"
for base in "$A" "$B" "$LB"; do
  code=$(curl -s -o "$WORK/check.out" -w '%{http_code}' "${AUTH[@]}" \
    --data-binary "@$WORK/bodies/predict_1.json" "$base/api/v1/models/bench/predict")
  [ "$code" = 200 ] || die "predict on $base answered $code: $(head -c 400 "$WORK/check.out")"
done
log "model 'bench' trained through nginx and served by both instances"

RESULTS=$WORK/results.md
: >"$RESULTS"
out() { printf '%s\n' "$*" >>"$RESULTS"; }

# ---------------------------------------------------------------- (a) predict
wrk_run() {  # label url -> one table row
  local label=$1 url=$2 load res
  if [ "$WARMUP" != 0 ]; then
    BODY_FILE=$WORK/bodies/predict_1.json BENCH_TOKEN=$KEY wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" \
      -s "$LUA" "$url" >/dev/null 2>&1 || true
  fi
  load=$(load1)
  log "(a) $label: wrk -t$THREADS -c$CONNECTIONS -d$DURATION $url (load $load)"
  BODY_FILE=$WORK/bodies/predict_1.json BENCH_TOKEN=$KEY wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" \
    --timeout 30s --latency -s "$LUA" "$url" >"$WORK/wrk-$label.txt" 2>&1 &
  WRK_PID=$!; wait "$WRK_PID" || { cat "$WORK/wrk-$label.txt" >&2; die "wrk failed on $url"; }; WRK_PID=
  res=$(grep '^BENCH_RESULT' "$WORK/wrk-$label.txt") || die "no BENCH_RESULT in $WORK/wrk-$label.txt"
  awk -v label="$label" -v ld="$load" -v after="$(load1)" '{
    for (i = 2; i <= NF; i++) { split($i, p, "="); v[p[1]] = p[2] }
    err = v["non2xx"] + v["connect_err"] + v["read_err"] + v["write_err"] + v["timeouts"]
    printf "| %s | %.0f | %.2f | %.2f | %d | %s / %s |\n", label, v["rps"], v["p50_ms"], v["p99_ms"], err, ld, after
  }' <<<"$res" >>"$RESULTS"
}
out "### (a) predict, 1 row x 10 features, $CONNECTIONS connections, wrk -t$THREADS, $DURATION"
out
out "| path | requests/s | p50 ms | p99 ms | errors | load 1-min before / after |"
out "|---|---:|---:|---:|---:|---|"
wrk_run "nginx -> 2 instances" "$LB/api/v1/models/bench/predict"
wrk_run "instance A direct" "$A/api/v1/models/bench/predict"
wrk_run "nginx -> 2 instances (again)" "$LB/api/v1/models/bench/predict"

# ---------------------------------------------------------------- helper for jobs
cat >"$WORK/jobs.py" <<'PY'
import asyncio, json, os, sys, time, urllib.request
import httpx
base, key = os.environ["LB"], os.environ["KEY"]
H = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

def req(method, path, body=None):
    r = urllib.request.Request(base + path, method=method, headers=H,
                               data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(r, timeout=60) as resp:
        return resp.status, json.load(resp)

def run_one(source):
    """submit one batch job and poll it to the end: prints rows seconds"""
    t0 = time.perf_counter()
    code, sub = req("POST", "/api/v1/batch", {"data_source": source, "model_name": "bench", "output_format": "csv"})
    assert code == 202, (code, sub)
    while True:
        _, job = req("GET", f"/api/v1/jobs/{sub['job_id']}")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.05)
    dt = time.perf_counter() - t0
    if job["status"] != "succeeded":
        sys.exit(f"job {sub['job_id']} on {source}: {job['status']}: {job.get('error')}")
    print(job["result"]["n_samples"], f"{dt:.3f}", job.get("attempts", ""))

async def flood(n, conc, source):
    """n submissions, conc at a time: prints accepted seconds p50_ms p99_ms"""
    lat, codes = [], {}
    queue = list(range(n))
    async with httpx.AsyncClient(base_url=base, headers=H, timeout=60,
                                 limits=httpx.Limits(max_connections=conc)) as c:
        body = {"data_source": source, "model_name": "bench", "output_format": "csv"}
        await c.post("/api/v1/batch", json=body)  # warm the connection path (counted below as extra)
        async def client():
            while queue:
                queue.pop()
                t = time.perf_counter()
                r = await c.post("/api/v1/batch", json=body)
                lat.append(time.perf_counter() - t)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(conc)))
        dt = time.perf_counter() - t0
    lat.sort()
    print(codes.get(202, 0), f"{dt:.3f}", f"{lat[len(lat)//2]*1e3:.1f}", f"{lat[int(len(lat)*0.99)]*1e3:.1f}",
          json.dumps(codes).replace(" ", ""))

if sys.argv[1] == "run":
    run_one(sys.argv[2])
else:
    asyncio.run(flood(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
PY
export LB KEY
wait_workers() {  # n: until /health counts n live workers
  local deadline=$((SECONDS + 30)) n
  while :; do
    n=$(curl -sf "${AUTH[@]}" "$LB/health" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["checks"]["workers"]["active"])' || echo -1)
    [ "$n" = "$1" ] && return 0
    [ $SECONDS -lt $deadline ] || die "/health counts $n live workers, expected $1"
    sleep 0.2
  done
}

# ---------------------------------------------------------------- (b) batch per worker
PYNOMALY_DATA_DIR=$WORK/worker "$BIN" worker --concurrency 1 >"$WORK/worker.log" 2>&1 </dev/null &
PIDS+=($!)
WPID=${PIDS[-1]}
wait_workers 1
"$PYTHON" "$WORK/jobs.py" run tiny.csv >/dev/null || die "warm-up job failed (worker log: $WORK/worker.log)"
log "(b) worker pid $WPID up, warm-up job done; VmHWM now $(awk '/VmHWM/{print $2}' /proc/$WPID/status) kB"
out
out "### (b) batch, one \`pynomaly worker --concurrency 1\`, CSV 10 features in, CSV out to S3 (moto)"
out
out "| source | rows | MB | seconds (submit -> succeeded) | rows/s | worker VmHWM after | worker VmRSS after | load 1-min before |"
out "|---|---:|---:|---:|---:|---:|---:|---|"
for src in sources:small.csv sources:large.csv s3:small.csv s3:large.csv; do
  kind=${src%%:*} file=${src#*:}
  if [ "$kind" = s3 ]; then uri=s3://$BUCKET/data/$file; else uri=$file; fi
  mb=$SMALL_MB; [ "$file" = large.csv ] && mb=$LARGE_MB
  load=$(load1)
  log "(b) batch $uri (load $load)"
  read -r rows secs _ < <("$PYTHON" "$WORK/jobs.py" run "$uri") || die "batch job on $uri failed (worker log: $WORK/worker.log)"
  hwm=$(awk '/VmHWM/{printf "%.1f MiB", $2/1024}' /proc/$WPID/status)
  rss=$(awk '/VmRSS/{printf "%.1f MiB", $2/1024}' /proc/$WPID/status)
  label="local file"; [ "$kind" = s3 ] && label="S3 (moto)"
  awk -v l="$label" -v r="$rows" -v s="$secs" -v mb="$mb" -v h="$hwm" -v rss="$rss" -v ld="$load" \
    'BEGIN { printf "| %s | %d | %d | %.2f | %.0f | %s | %s | %s |\n", l, r, mb, s, r / s, h, rss, ld }' >>"$RESULTS"
done
stop_pid "$WPID"
log "(b) worker stopped"

# ---------------------------------------------------------------- (c) queue acceptance
out
out "### (c) queue: batch submissions (10-row source) with no worker running, $QUEUE_CONCURRENCY concurrent clients; then one worker runs the queued ones"
out
out "| what | jobs | seconds | jobs/s | p50 ms | p99 ms | status codes | load 1-min before |"
out "|---|---:|---:|---:|---:|---:|---|---|"
flood() {  # label base_url
  local load acc secs p50 p99 codes
  sleep 2
  load=$(load1)
  log "(c) $1: submitting $QUEUE_JOBS jobs, $QUEUE_CONCURRENCY at a time (load $load)"
  read -r acc secs p50 p99 codes < <(LB=$2 "$PYTHON" "$WORK/jobs.py" flood "$QUEUE_JOBS" "$QUEUE_CONCURRENCY" tiny.csv) \
    || die "submission flood to $2 failed"
  [ "$acc" = "$QUEUE_JOBS" ] || log "warning: $acc of $QUEUE_JOBS submissions accepted ($codes)"
  awk -v l="$1" -v a="$acc" -v s="$secs" -v p50="$p50" -v p99="$p99" -v c="$codes" -v ld="$load" \
    'BEGIN { printf "| accepted (202), %s, Python httpx client | %d | %.2f | %.0f | %s | %s | `%s` | %s |\n", l, a, s, a / s, p50, p99, c, ld }' >>"$RESULTS"
}
flood "through nginx" "$LB"
flood "instance A direct" "$A"
queued=$("${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM jobs WHERE status = 'queued'")
stream=$("${RCLI[@]}" --scan --pattern "$PREFIX*" | while read -r k; do
  [ "$("${RCLI[@]}" type "$k")" = stream ] && echo "$k=$("${RCLI[@]}" xlen "$k")"; done | tr '\n' ' ')
log "(c) Postgres: $queued jobs queued; Redis streams: $stream"
# Drain: one worker, concurrency 1, until every queued job has ended (DRAIN_S at most).
ended() { "${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled')"; }
done0=$(ended)
PYNOMALY_DATA_DIR=$WORK/worker2 "$BIN" worker --concurrency 1 >"$WORK/worker2.log" 2>&1 </dev/null &
PIDS+=($!)
WPID=${PIDS[-1]}
load=$(load1)
total=$queued
t0=$(date +%s.%N)
deadline=$((SECONDS + DRAIN_S))
while :; do
  done1=$(ended)
  [ $((done1 - done0)) -ge "$total" ] || [ $SECONDS -ge $deadline ] && break
  sleep 0.2
done
t1=$(date +%s.%N)
stop_pid "$WPID"
awk -v d="$((done1 - done0))" -v t0="$t0" -v t1="$t1" -v ld="$load" \
  'BEGIN { printf "| run to the end by 1 worker (concurrency 1), 10-row jobs, incl. its start-up | %d | %.2f | %.1f | | | | %s |\n", d, t1 - t0, d / (t1 - t0), ld }' >>"$RESULTS"
# The same acceptance with wrk as the client (no Python on the client side), no worker.
printf '{"data_source":"tiny.csv","model_name":"bench","output_format":"csv"}' >"$WORK/bodies/batch_tiny.json"
sleep 2
load=$(load1)
before=$("${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM jobs")
log "(c) wrk -t$THREADS -c$QUEUE_CONCURRENCY -d5s POST $LB/api/v1/batch (load $load)"
BODY_FILE=$WORK/bodies/batch_tiny.json BENCH_TOKEN=$KEY wrk -t"$THREADS" -c"$QUEUE_CONCURRENCY" -d5s \
  --timeout 30s --latency -s "$LUA" "$LB/api/v1/batch" >"$WORK/wrk-batch.txt" 2>&1 &
WRK_PID=$!; wait "$WRK_PID" || { cat "$WORK/wrk-batch.txt" >&2; die "wrk failed on /api/v1/batch"; }; WRK_PID=
made=$(( $("${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM jobs") - before ))
grep '^BENCH_RESULT' "$WORK/wrk-batch.txt" | awk -v ld="$load" -v made="$made" '{
  for (i = 2; i <= NF; i++) { split($i, p, "="); v[p[1]] = p[2] }
  err = v["non2xx"] + v["connect_err"] + v["read_err"] + v["write_err"] + v["timeouts"]
  printf "| accepted, through nginx, wrk as the client (5 s) | %d | %.2f | %.0f | %.1f | %.1f | %d errors; %d rows in jobs | %s |\n", v["requests"], v["duration_s"], v["rps"], v["p50_ms"], v["p99_ms"], err, made, ld
}' >>"$RESULTS"
out
out "Postgres after the flood: $queued jobs queued; Redis: $stream"

# ---------------------------------------------------------------- report
{
  echo "## Scale-out benchmark (bench/scaleout_bench.sh)"
  echo
  echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')); load average at start: $LOAD_AT_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- $("$BIN" --version 2>/dev/null || echo "$BIN"); $(nginx -v 2>&1 | sed 's/.*: //'); $(psql --version); $(redis-cli --version); moto $("$PYTHON" -c 'import moto; print(moto.__version__)'); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "- 2 \`pynomaly serve\` instances (no jobs in them) behind nginx (repository nginx.conf, ports rewritten), Postgres database $DB, Redis prefix $PREFIX, artifacts s3://$BUCKET/artifacts on moto"
  echo
  cat "$RESULTS"
} | tee "$WORK/report.md"
