#!/usr/bin/env bash
# HTTP service benchmark (issue 3, "Speed"): `pynomaly serve` against the FastAPI +
# scikit-learn peer an ML engineer would run (bench/fastapi_peer/app.py), both
# with auth on, the load generator (wrk) on the same machine.
#
#   bench/service_bench.sh [PATH_TO_PYNOMALY]     # default ${CARGO_TARGET_DIR:-target}/release/pynomaly
#
# Cases (each run for both servers, one after the other, so both see the same machine):
#   predict_1     POST /api/v1/models/bench/predict, 1 row x 10 features   ($CONNECTIONS conns)
#   predict_1000  the same with 1,000 rows per request                     ($CONNECTIONS conns)
#   detect_10000  POST /api/v1/detect, 10,000 x 10 rows, 100 trees         ($DETECT_CONNECTIONS conns)
# The model `bench` is IsolationForest(n_estimators=100, random_state=0) trained on the
# seeded 10,000 x 10 matrix of bench/fastapi_peer/bench_data.py (RandomState(0) normal):
# trained through POST /api/v1/models on pynomaly, at start-up in every peer worker.
#
# Settings (environment):
#   DURATION=20s  WARMUP=3s (0: none)  THREADS=2  CONNECTIONS=32  DETECT_CONNECTIONS=4
#   PEER_WORKERS=2  OURS_ADDR=127.0.0.1:18080  PEER_ADDR=127.0.0.1:18081
#   SERVERS=both|ours|peer  CASES="predict_1 predict_1000 detect_10000"
#   BENCH_WORK=/tmp/pynomaly-service-bench (request bodies, logs, wrk outputs, results.md)
#   PYTHON=python3  READY_TIMEOUT=120 (seconds)  KEEP_DATA=1 keeps pynomaly's data dir
# Needs: curl, python3 (pip), wrk (installed with apt-get when missing and run as root).
# Exit status: 0 when every run completed; non-zero, with the reason, when a server does
# not come up, a sanity request fails or wrk fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/pynomaly}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac

DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
DETECT_CONNECTIONS=${DETECT_CONNECTIONS:-4}
PEER_WORKERS=${PEER_WORKERS:-2}
OURS_ADDR=${OURS_ADDR:-127.0.0.1:18080}
PEER_ADDR=${PEER_ADDR:-127.0.0.1:18081}
SERVERS=${SERVERS:-both}
CASES=${CASES:-predict_1 predict_1000 detect_10000}
WORK=${BENCH_WORK:-/tmp/pynomaly-service-bench}
PYTHON=${PYTHON:-python3}
READY_TIMEOUT=${READY_TIMEOUT:-120}
LUA=$ROOT/bench/wrk/post_json.lua
PEER_DIR=$ROOT/bench/fastapi_peer

log() { printf '[service_bench] %s\n' "$*" >&2; }
die() { printf '[service_bench] ERROR: %s\n' "$*" >&2; exit 1; }

case $SERVERS in both|ours|peer) ;; *) die "SERVERS must be both, ours or peer (got '$SERVERS')" ;; esac
want() { [ "$SERVERS" = both ] || [ "$SERVERS" = "$1" ]; }

# ---------------------------------------------------------------- cleanup on any exit
OURS_PID= PEER_PID= WRK_PID= DATA_DIR=
stop_group() {  # pid: each server runs in its own session (setsid), so its pid is its group
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$WRK_PID" ] || kill "$WRK_PID" 2>/dev/null || true
  stop_group "$OURS_PID"
  stop_group "$PEER_PID"
  if [ -n "$DATA_DIR" ] && [ -z "${KEEP_DATA:-}" ]; then rm -rf "$DATA_DIR"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
command -v curl >/dev/null || die "curl is needed"
if ! command -v wrk >/dev/null; then
  log "wrk not found: installing it with apt-get"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  { $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } >&2 \
    || die "could not install wrk (apt-get install wrk)"
fi
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=...)"
if ! "$PYTHON" - <<'EOF' 2>/dev/null
import fastapi, uvicorn, uvloop, httptools, numpy, sklearn
assert sklearn.__version__ == "1.9.1", sklearn.__version__
EOF
then
  log "installing the peer's requirements: $PYTHON -m pip install -r bench/fastapi_peer/requirements.txt"
  "$PYTHON" -m pip install -q -r "$PEER_DIR/requirements.txt" >&2 || die "pip install of the peer's requirements failed"
fi

if want ours; then
  [ -x "$BIN" ] || die "pynomaly binary not found at $BIN.
  Build it:  cargo build --release -p pynomaly   (it lands in \${CARGO_TARGET_DIR:-target}/release/)
  or pass its path as the first argument; SERVERS=peer measures the peer alone."
  "$BIN" serve --help >/dev/null 2>&1 || die "$BIN has no working 'serve' command ('$BIN serve --help' failed): the HTTP service is not built into this binary yet. SERVERS=peer measures the peer alone."
fi

mkdir -p "$WORK"
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
BODIES=$WORK/bodies
log "writing request bodies to $BODIES"
"$PYTHON" "$PEER_DIR/bench_data.py" "$BODIES" >/dev/null || die "could not generate the request bodies"

# ---------------------------------------------------------------- helpers
port_busy() {  # host:port -> 0 when something listens there
  local host=${1%:*} port=${1##*:}
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}
wait_ready() {  # name pid addr logfile
  local name=$1 pid=$2 addr=$3 logf=$4 deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited during start-up; the end of its log ($logf):"
      tail -n 30 "$logf" >&2 || true
      die "$name did not come up on $addr"
    fi
    if curl -sf -o /dev/null --max-time 2 "http://$addr/health"; then return 0; fi
    if [ $SECONDS -ge $deadline ]; then
      log "the end of $name's log ($logf):"
      tail -n 30 "$logf" >&2 || true
      die "$name did not answer GET http://$addr/health within ${READY_TIMEOUT}s"
    fi
    sleep 0.25
  done
}
post() {  # token url bodyfile outfile -> prints the HTTP status
  curl -s -o "$4" -w '%{http_code}' --max-time 120 -H "Authorization: Bearer $1" \
    -H 'Content-Type: application/json' --data-binary "@$3" "$2" || echo 000
}

# ---------------------------------------------------------------- start pynomaly
if want ours; then
  port_busy "$OURS_ADDR" && die "something already listens on $OURS_ADDR (set OURS_ADDR)"
  DATA_DIR=$(mktemp -d /tmp/pynomaly-bench-data.XXXXXX)
  log "starting $BIN serve on $OURS_ADDR (data dir $DATA_DIR)"
  # Rate limiting off unless asked (PYNOMALY_RATE_LIMIT_PER_MINUTE): wrk would exceed a default limit.
  PYNOMALY_RATE_LIMIT_PER_MINUTE=${PYNOMALY_RATE_LIMIT_PER_MINUTE:-0} \
  PYNOMALY_BIND=$OURS_ADDR PYNOMALY_DATA_DIR=$DATA_DIR LOG_LEVEL=${LOG_LEVEL:-warn} \
    setsid "$BIN" serve >"$WORK/pynomaly.log" 2>&1 </dev/null &
  OURS_PID=$!
  wait_ready "pynomaly serve" "$OURS_PID" "$OURS_ADDR" "$WORK/pynomaly.log"
  for _ in $(seq 40); do [ -s "$DATA_DIR/admin.key" ] && break; sleep 0.25; done
  [ -s "$DATA_DIR/admin.key" ] || die "pynomaly serve is up but wrote no $DATA_DIR/admin.key"
  OURS_KEY=$(tr -d ' \r\n' <"$DATA_DIR/admin.key")
  code=$(post "$OURS_KEY" "http://$OURS_ADDR/api/v1/models" "$BODIES/train.json" "$WORK/ours-train.json")
  [ "$code" = 201 ] || { cat "$WORK/ours-train.json" >&2; echo >&2; die "training 'bench' on pynomaly answered $code, not 201"; }
  log "pynomaly: trained model 'bench' ($(tr -d '\n' <"$WORK/ours-train.json" | head -c 160)...)"
fi

# ---------------------------------------------------------------- start the peer
if want peer; then
  port_busy "$PEER_ADDR" && die "something already listens on $PEER_ADDR (set PEER_ADDR)"
  PEER_KEY=pk_$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')
  log "starting the FastAPI peer on $PEER_ADDR (uvicorn, $PEER_WORKERS workers)"
  PEER_API_KEY=$PEER_KEY setsid "$PYTHON" -m uvicorn app:app --app-dir "$PEER_DIR" \
    --host "${PEER_ADDR%:*}" --port "${PEER_ADDR##*:}" --workers "$PEER_WORKERS" \
    --no-access-log --log-level warning >"$WORK/peer.log" 2>&1 </dev/null &
  PEER_PID=$!
  wait_ready "the FastAPI peer" "$PEER_PID" "$PEER_ADDR" "$WORK/peer.log"
  # every worker trains `bench` in its start-up hook and accepts connections only after it:
  # ask /health (which names the answering worker's pid) until every worker has answered.
  pids=
  for _ in $(seq $((READY_TIMEOUT * 10))); do
    pid=$(curl -sf --max-time 2 "http://$PEER_ADDR/health" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p') || true
    case " $pids " in *" $pid "*) ;; *) [ -n "$pid" ] && pids="$pids $pid" ;; esac
    [ "$(wc -w <<<"$pids")" -ge "$PEER_WORKERS" ] && break
    sleep 0.1
  done
  [ "$(wc -w <<<"$pids")" -ge "$PEER_WORKERS" ] \
    || log "warning: only $(wc -w <<<"$pids") of $PEER_WORKERS peer workers answered /health so far"
  code=$(post "$PEER_KEY" "http://$PEER_ADDR/api/v1/models/bench/predict" "$BODIES/predict_1.json" "$WORK/peer-check.json")
  [ "$code" = 200 ] || die "the peer's predict answered $code: $(cat "$WORK/peer-check.json")"
  log "peer: workers up (pids$pids), model 'bench' trained in each"
fi

# ---------------------------------------------------------------- the runs
case_path()  { case $1 in predict_1|predict_1000) echo /api/v1/models/bench/predict ;; detect_10000) echo /api/v1/detect ;; *) die "unknown case $1" ;; esac; }
case_rows()  { case $1 in predict_1) echo 1 ;; predict_1000) echo 1000 ;; detect_10000) echo 10000 ;; esac; }
case_conns() { case $1 in detect_10000) echo "$DETECT_CONNECTIONS" ;; *) echo "$CONNECTIONS" ;; esac; }
case_body()  { echo "$BODIES/$1.json"; }

RESULTS=$WORK/results.tsv
: >"$RESULTS"
# CPU accounting over each run, to tell how much of the machine the benchmark really had:
# all CPU time spent (/proc/stat) = the two servers' + wrk's + everything else's.
CLK=$(getconf CLK_TCK)
now_s() { date +%s.%N; }
busy_s() { awk -v clk="$CLK" '/^cpu /{ printf "%.2f\n", ($2+$3+$4+$7+$8+$9)/clk; exit }' /proc/stat; }
servers_cpu_s() {  # CPU seconds used so far by every process of the servers' sessions
  local sid p
  for sid in $OURS_PID $PEER_PID; do
    for p in $(ps -s "$sid" -o pid= 2>/dev/null); do
      awk -v clk="$CLK" '{ sub(/.*\) /, ""); printf "%.2f\n", ($12+$13)/clk }' "/proc/$p/stat" 2>/dev/null || true
    done
  done | awk '{ s += $1 } END { printf "%.2f\n", s + 0 }'
}
server_cpu_s() {  # server -> CPU seconds of that server's session
  local sid p; if [ "$1" = ours ]; then sid=$OURS_PID; else sid=$PEER_PID; fi
  for p in $(ps -s "$sid" -o pid= 2>/dev/null); do
    awk -v clk="$CLK" '{ sub(/.*\) /, ""); printf "%.2f\n", ($12+$13)/clk }' "/proc/$p/stat" 2>/dev/null || true
  done | awk '{ s += $1 } END { printf "%.2f\n", s + 0 }'
}
children_s() {  # CHILD_S = CPU seconds of this shell's reaped children (wrk, curl): `times`'
  # 2nd line; called directly, not in $( ), which would run `times` in a subshell
  times >"$WORK/.times"
  CHILD_S=$(awk 'NR == 2 { n = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); n += a[1] * 60 + a[2] } printf "%.2f\n", n }' "$WORK/.times")
}
run_case() {  # server case
  local server=$1 cse=$2 addr token url body conns threads rows out line code
  if [ "$server" = ours ]; then addr=$OURS_ADDR token=$OURS_KEY; else addr=$PEER_ADDR token=$PEER_KEY; fi
  url=http://$addr$(case_path "$cse")
  body=$(case_body "$cse")
  conns=$(case_conns "$cse")
  threads=$THREADS; [ "$threads" -le "$conns" ] || threads=$conns
  rows=$(case_rows "$cse")
  code=$(post "$token" "$url" "$body" "$WORK/$server-$cse.check.json")
  [ "$code" = 200 ] || die "$server: POST $url answered $code, not 200: $(head -c 400 "$WORK/$server-$cse.check.json")"
  if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
    BODY_FILE=$body BENCH_TOKEN=$token wrk -t"$threads" -c"$conns" -d"$WARMUP" --timeout 60s \
      -s "$LUA" "$url" >/dev/null 2>&1 &
    WRK_PID=$!; wait "$WRK_PID" || true; WRK_PID=
  fi
  local load t0 b0 s0 a0 c0 t1 b1 s1 a1 c1 cpu
  load=$(cut -d' ' -f1 /proc/loadavg)
  out=$WORK/wrk-$server-$cse.txt
  log "$server $cse: wrk -t$threads -c$conns -d$DURATION --latency $url (load $load)"
  t0=$(now_s) b0=$(busy_s) s0=$(server_cpu_s "$server") a0=$(servers_cpu_s); children_s; c0=$CHILD_S
  # wrk runs in the background and the script waits for it, so INT/TERM stop it at once
  BODY_FILE=$body BENCH_TOKEN=$token wrk -t"$threads" -c"$conns" -d"$DURATION" --timeout 60s --latency \
    -s "$LUA" "$url" >"$out" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID" || { cat "$out" >&2; die "wrk failed against $server ($url)"; }
  WRK_PID=
  t1=$(now_s) b1=$(busy_s) s1=$(server_cpu_s "$server") a1=$(servers_cpu_s); children_s; c1=$CHILD_S
  # cores used on average during the run: by this server, by wrk, by all other processes
  cpu=$(awk -v t="$t1-$t0" -v b="$b1-$b0" -v s="$s1-$s0" -v a="$a1-$a0" -v c="$c1-$c0" 'BEGIN {
    split(t, T, "-"); split(b, B, "-"); split(s, S, "-"); split(a, A, "-"); split(c, C, "-")
    w = T[1] - T[2]; srv = (S[1] - S[2]) / w; wrk = (C[1] - C[2]) / w
    oth = ((B[1] - B[2]) - (A[1] - A[2]) - (C[1] - C[2])) / w; if (oth < 0) oth = 0
    printf "server_cores=%.2f wrk_cores=%.2f other_cores=%.2f", srv, wrk, oth }')
  line=$(grep '^BENCH_RESULT' "$out") || { cat "$out" >&2; die "no BENCH_RESULT line in $out"; }
  printf '%s\t%s\t%s\t%s\t%s\t%s %s\n' "$server" "$cse" "$rows" "$conns" "$load" "$line" "$cpu" >>"$RESULTS"
}

for cse in $CASES; do
  want ours && run_case ours "$cse"
  want peer && run_case peer "$cse"
done

# ---------------------------------------------------------------- report
report() {
  echo "## pynomaly serve vs FastAPI + scikit-learn peer"
  echo
  echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load average before the servers started: $LOAD_AT_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  want ours && echo "- pynomaly: $("$BIN" --version 2>/dev/null || echo "$BIN")"
  want peer && echo "- peer: $("$PYTHON" -c 'import fastapi, uvicorn, sklearn, numpy, sys; print(f"python {sys.version.split()[0]}, fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}, scikit-learn {sklearn.__version__}, numpy {numpy.__version__}")') (uvicorn --workers $PEER_WORKERS, uvloop/httptools)"
  echo "- $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), -t$THREADS, ${DURATION} per run after a ${WARMUP} warm-up, auth on (Bearer key) on both"
  echo
  echo "| case | server | conns | requests/s | rows/s | p50 ms | p99 ms | errors | server cores | wrk cores | other procs' cores | load before |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' '{
    split($6, kv, " "); for (i in kv) { split(kv[i], p, "="); v[p[1]] = p[2] }
    err = v["non2xx"] + v["connect_err"] + v["read_err"] + v["write_err"] + v["timeouts"]
    name = ($1 == "ours") ? "pynomaly" : "fastapi peer"
    printf "| %s | %s | %d | %.1f | %.0f | %.2f | %.2f | %d | %.2f | %.2f | %.2f | %s |\n", $2, name, $4, v["rps"], v["rps"] * $3, v["p50_ms"], v["p99_ms"], err, v["server_cores"], v["wrk_cores"], v["other_cores"], $5
  }' "$RESULTS"
  if [ "$SERVERS" = both ]; then
    echo
    echo "| case | requests/s ours/peer | p50 latency peer/ours | p99 latency peer/ours |"
    echo "|---|---:|---:|---:|"
    awk -F'\t' '{
      split($6, kv, " "); for (i in kv) { split(kv[i], p, "="); v[p[1]] = p[2] }
      rps[$1, $2] = v["rps"]; p50[$1, $2] = v["p50_ms"]; p99[$1, $2] = v["p99_ms"]
      if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 }
    } END {
      for (i = 1; i <= n; i++) { c = order[i]
        printf "| %s | %.1fx | %.1fx | %.1fx |\n", c, rps["ours", c] / rps["peer", c], p50["peer", c] / p50["ours", c], p99["peer", c] / p99["ours", c]
      }
    }' "$RESULTS"
  fi
  if want ours; then
    echo
    echo "Targets (issue 3, Speed), pynomaly:"
    awk -F'\t' -v both="$([ "$SERVERS" = both ] && echo 1 || echo 0)" -v conns="$CONNECTIONS" '
      function mark(c) { return c ? "met" : "NOT met" }
      {
        split($6, kv, " "); for (i in kv) { split(kv[i], p, "="); v[p[1]] = p[2] }
        rps[$1, $2] = v["rps"]; p99[$1, $2] = v["p99_ms"]; rows[$2] = $3; have[$1, $2] = 1
      } END {
        if (have["ours", "predict_1"]) {
          printf "- predict, 1 row, %d conns: >= 10,000 requests/s: %.0f (%s); p99 < 5 ms: %.2f ms (%s)\n", conns, rps["ours", "predict_1"], mark(rps["ours", "predict_1"] >= 10000), p99["ours", "predict_1"], mark(p99["ours", "predict_1"] < 5)
          if (both && have["peer", "predict_1"]) printf "- predict, 1 row: >= 150x the peer: %.1fx (%s)\n", rps["ours", "predict_1"] / rps["peer", "predict_1"], mark(rps["ours", "predict_1"] >= 150 * rps["peer", "predict_1"])
        }
        if (have["ours", "predict_1000"]) printf "- predict, 1,000 rows/request: >= 500,000 rows/s: %.0f (%s)\n", rps["ours", "predict_1000"] * 1000, mark(rps["ours", "predict_1000"] * 1000 >= 500000)
      }' "$RESULTS"
  fi
  echo
  echo "Cores: average CPU cores used during the run (of $(nproc)) by the server measured, by wrk, and by"
  echo "every other process on the machine (other builds and tests): with other procs' cores"
  echo "well above 0 the numbers are lower than on a quiet machine. Load before: the 1-minute load"
  echo "average just before the run (it still counts the previous run's wrk and server threads)."
  echo
  echo "wrk's full outputs: $WORK/wrk-*.txt; server logs: $WORK/pynomaly.log, $WORK/peer.log"
}
report | tee "$WORK/results.md"
