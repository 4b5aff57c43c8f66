#!/usr/bin/env bash
# What drift accounting costs a predict (issue 6, "Speed": at most 5%).
#
#   bench/drift_bench.sh [PATH_TO_PYNOMALY]   # default ${CARGO_TARGET_DIR:-target}/release/pynomaly
#
# Two `pynomaly serve` from the same binary, one with PYNOMALY_DRIFT_MONITORING=false and
# one with it on (the default), each trained with service_bench.sh's model `bench`
# (IsolationForest, 100 trees, the seeded 10,000 x 10 matrix) and loaded with the same
# wrk run: 1-row predicts (`predict_1.json`), $CONNECTIONS connections. The runs alternate
# (off, on, on, off, off, on, ...) for $ROUNDS rounds so slow drifts of the host's load
# hit both sides alike; only one server is under load at a time. Printed: one line
# per run, then the median requests/s, p50/p99 and server CPU time per request (from
# /proc/PID/stat: steadier than throughput on a busy host, where throughput mostly
# says how much CPU the server was given) of each side, and the ratios on/off.
# At the end the drift endpoint of the "on" server must report the rows it saw: proof the
# accounting really ran.
#
# Settings: CASE=predict_1 (or predict_1000) DURATION=10s WARMUP=2s THREADS=2 CONNECTIONS=32 ROUNDS=3
#           OFF_ADDR=127.0.0.1:18190 ON_ADDR=127.0.0.1:18191 BENCH_WORK=/tmp/pynomaly-drift-bench
# Needs: curl, python3 with numpy (bench_data.py), wrk.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/pynomaly}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
CASE=${CASE:-predict_1}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
OFF_ADDR=${OFF_ADDR:-127.0.0.1:18190}
ON_ADDR=${ON_ADDR:-127.0.0.1:18191}
WORK=${BENCH_WORK:-/tmp/pynomaly-drift-bench}
LUA=$ROOT/bench/wrk/post_json.lua

log() { printf '[drift_bench] %s\n' "$*" >&2; }
die() { printf '[drift_bench] ERROR: %s\n' "$*" >&2; exit 1; }
[ -x "$BIN" ] || die "no pynomaly binary at $BIN (cargo build --release -p pynomaly)"
command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"

PIDS=() DIRS=()
cleanup() {
  local rc=$? p
  trap - EXIT
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  for d in "${DIRS[@]}"; do rm -rf "$d"; done
  exit "$rc"
}
trap cleanup EXIT

mkdir -p "$WORK"
python3 "$ROOT/bench/fastapi_peer/bench_data.py" "$WORK/bodies" >/dev/null || die "bench_data.py failed (numpy?)"

start() {  # name addr drift(true|false) -> sets KEY_<name>
  local name=$1 addr=$2 drift=$3 dir i
  if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
    die "something already listens on $addr (set OFF_ADDR / ON_ADDR)"
  fi
  dir=$(mktemp -d /tmp/pynomaly-drift-bench-data.XXXXXX); DIRS+=("$dir")
  PYNOMALY_BIND=$addr PYNOMALY_DATA_DIR=$dir PYNOMALY_DRIFT_MONITORING=$drift LOG_LEVEL=warn \
    PYNOMALY_RATE_LIMIT_PER_MINUTE=${PYNOMALY_RATE_LIMIT_PER_MINUTE:-0} \
    setsid "$BIN" serve >"$WORK/$name.log" 2>&1 </dev/null &
  PIDS+=($!)
  for i in $(seq 200); do curl -sf -o /dev/null "http://$addr/health" && break; sleep 0.25; done
  curl -sf -o /dev/null "http://$addr/health" || { tail "$WORK/$name.log" >&2; die "$name did not start"; }
  for i in $(seq 40); do [ -s "$dir/admin.key" ] && break; sleep 0.25; done
  local key; key=$(tr -d ' \r\n' <"$dir/admin.key")
  local code
  code=$(curl -s -o "$WORK/$name-train.json" -w '%{http_code}' -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' --data-binary "@$WORK/bodies/train.json" "http://$addr/api/v1/models")
  [ "$code" = 201 ] || die "$name: training answered $code: $(head -c 300 "$WORK/$name-train.json")"
  printf -v "KEY_$name" '%s' "$key"
}
start off "$OFF_ADDR" false
start on "$ON_ADDR" "${ON_SETTING:-true}"

CLK=$(getconf CLK_TCK)
cpu_s() {  # session id (the server's setsid pid) -> CPU seconds (user + system) used so far
  local p
  for p in $(ps -s "$1" -o pid= 2>/dev/null); do
    awk -v clk="$CLK" '{ sub(/.*\) /, ""); printf "%.2f\n", ($12 + $13) / clk }' "/proc/$p/stat" 2>/dev/null || true
  done | awk '{ s += $1 } END { printf "%.2f\n", s + 0 }'
}
run() {  # name addr key round
  local name=$1 addr=$2 key=$3 round=$4 url out pid c0 c1
  if [ "$name" = off ]; then pid=${PIDS[0]}; else pid=${PIDS[1]}; fi
  url=http://$addr/api/v1/models/bench/predict
  BODY_FILE=$WORK/bodies/$CASE.json BENCH_TOKEN=$key \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$LUA" "$url" >/dev/null 2>&1 || true
  out=$WORK/wrk-$name-$round.txt
  c0=$(cpu_s "$pid")
  BODY_FILE=$WORK/bodies/$CASE.json BENCH_TOKEN=$key \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "$url" >"$out" 2>&1 \
    || { cat "$out" >&2; die "wrk failed on $name"; }
  c1=$(cpu_s "$pid")
  local line; line=$(grep '^BENCH_RESULT' "$out") || die "no BENCH_RESULT in $out"
  printf '%s\t%s\t%s\t%s server_cpu_s=%s\n' "$name" "$round" "$(cut -d' ' -f1 /proc/loadavg)" "$line" \
    "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')" | tee -a "$WORK/results.tsv"
}
: >"$WORK/results.tsv"
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then
    run off "$OFF_ADDR" "$KEY_off" "$r"; run on "$ON_ADDR" "$KEY_on" "$r"
  else
    run on "$ON_ADDR" "$KEY_on" "$r"; run off "$OFF_ADDR" "$KEY_off" "$r"
  fi
done

python3 - "$WORK/results.tsv" <<'EOF'
import re, statistics, sys
runs = {"off": [], "on": []}
for line in open(sys.argv[1]):
    name, rnd, load, rest = line.rstrip("\n").split("\t")
    kv = dict(re.findall(r"(\w+)=([\d.]+)", rest))
    cpu_us = float(kv["server_cpu_s"]) / float(kv["requests"]) * 1e6
    runs[name].append((float(kv["rps"]), float(kv["p50_ms"]), float(kv["p99_ms"]), int(kv["non2xx"]), cpu_us))
for name, rs in runs.items():
    assert all(r[3] == 0 for r in rs), f"{name}: non-2xx answers"
med = {n: [statistics.median(r[i] for r in rs) for i in (0, 1, 2, 4)] for n, rs in runs.items()}
print("| drift accounting | runs | median requests/s | median p50 ms | median p99 ms | median server CPU µs / request |")
print("|---|---:|---:|---:|---:|---:|")
for n in ("off", "on"):
    print(f"| {n} | {len(runs[n])} | {med[n][0]:.0f} | {med[n][1]:.3f} | {med[n][2]:.3f} | {med[n][3]:.1f} |")
print()
print(f"throughput on/off: {med['on'][0] / med['off'][0]:.3f} (pairs: "
      + ", ".join(f"{a[0] / b[0]:.3f}" for a, b in zip(runs['on'], runs['off'])) + "); "
      f"server CPU per request on/off: {med['on'][3] / med['off'][3]:.3f} (pairs: "
      + ", ".join(f"{a[4] / b[4]:.3f}" for a, b in zip(runs['on'], runs['off'])) + ")")
EOF

seen=$(curl -sf -H "Authorization: Bearer $KEY_on" "http://$ON_ADDR/api/v1/models/bench/drift")
python3 - "$seen" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
assert d["monitoring"] == "active", d
n = d["window"]["n_samples"]
print(f"drift window of the 'on' server: {n} rows, verdict {d['verdict']} "
      f"(max PSI {max(f['psi'] for f in d['features']):.4f})")
assert n > 0, "drift accounting saw nothing"
EOF
off=$(curl -sf -H "Authorization: Bearer $KEY_off" "http://$OFF_ADDR/api/v1/models/bench/drift")
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["monitoring"]=="disabled", d; print("the off server reports monitoring:", d["monitoring"])' "$off"
