#!/usr/bin/env bash
# Tracing overhead (issue 6, "Speed"): the predict benchmark of bench/service_bench.sh
# (POST /api/v1/models/bench/predict, 1 row x 10 features, 32 connections, wrk on the same
# machine, auth on) against `pynomaly serve` with traces off and with traces on, every
# span exported over OTLP/HTTP to a local receiver (bench/otlp_sink.py, which counts the
# spans it decodes; SINK=rust: bench-tools' otlp-sink instead). Off and on alternate ROUNDS
# times (which goes first alternates too), each with a fresh server, so both see the same
# machine; the ratio is taken per round and over the medians. KEEP=1 (SINK=rust only)
# starts the two servers and the receiver once and alternates the wrk runs between them:
# no start-up and training between runs, so off and on runs follow each other within
# seconds and a host whose speed drifts over minutes weighs on both alike; after each "on"
# run it waits FLUSH_WAIT=6 s (the batch processor's 5 s schedule) so that the spans of the
# run are counted, and sent, before the next. With KEEP=1, ALT_BIN=OTHER_PYNOMALY adds a
# third server, "alt": OTHER_PYNOMALY with traces on, measured in the same rounds (the
# order rotating), so two builds' tracing costs are compared against one traces-off
# server in the same minutes (the traces-off path being the same in both). The server's CPU time per
# request during the measured run (from /proc, steadier than throughput on a busy
# host) is reported too, and with traces on the receiver's.
#
#   bench/tracing_bench.sh [PATH_TO_PYNOMALY]   # default ${CARGO_TARGET_DIR:-target}/release/pynomaly
#
# Settings: DURATION=15s WARMUP=3s THREADS=2 CONNECTIONS=32 ROUNDS=3 CASES="predict_1"
#   ADDR=127.0.0.1:18090 ON_ADDR=127.0.0.1:18092 (KEEP=1's traced server) SINK_PORT=18091
#   BENCH_WORK=/tmp/pynomaly-tracing-bench KEEP=0 FLUSH_WAIT=6 ALT_BIN= ALT_ADDR=127.0.0.1:18093
#   SAMPLER=parentbased_always_on (OTEL_TRACES_SAMPLER when on; every request is traced)
#   SAMPLER_ARG= (OTEL_TRACES_SAMPLER_ARG, e.g. SAMPLER=parentbased_traceidratio SAMPLER_ARG=0.1)
#   SINK=python (the receiver: python = bench/otlp_sink.py; rust = the otlp-sink binary of
#   bench-tools, which costs the shared cores less: cargo build --release -p bench-tools --bin otlp-sink)
#   SINK_BIN=${CARGO_TARGET_DIR:-target}/release/otlp-sink
# Needs: curl, python3 with numpy (for the request bodies), wrk.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/pynomaly}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
CASES=${CASES:-predict_1}
ADDR=${ADDR:-127.0.0.1:18090}
ON_ADDR=${ON_ADDR:-127.0.0.1:18092}
KEEP=${KEEP:-0}
ALT_BIN=${ALT_BIN:-}
ALT_ADDR=${ALT_ADDR:-127.0.0.1:18093}
SINK_PORT=${SINK_PORT:-18091}
SAMPLER=${SAMPLER:-parentbased_always_on}
SAMPLER_ARG=${SAMPLER_ARG:-1.0}
WORK=${BENCH_WORK:-/tmp/pynomaly-tracing-bench}
SINK=${SINK:-python}
SINK_BIN=${SINK_BIN:-${CARGO_TARGET_DIR:-target}/release/otlp-sink}
case $SINK_BIN in /*) ;; *) SINK_BIN=$ROOT/$SINK_BIN ;; esac
LUA=$ROOT/bench/wrk/post_json.lua

log() { printf '[tracing_bench] %s\n' "$*" >&2; }
die() { printf '[tracing_bench] ERROR: %s\n' "$*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"
command -v curl >/dev/null || die "curl is needed"
[ -x "$BIN" ] || die "no pynomaly binary at $BIN (cargo build --release -p pynomaly)"
case $SINK in
  python) ;;
  rust) [ -x "$SINK_BIN" ] || die "no otlp-sink at $SINK_BIN (cargo build --release -p bench-tools --bin otlp-sink)" ;;
  *) die "SINK is python or rust, not $SINK" ;;
esac
[ "$KEEP" = 0 ] || [ "$SINK" = rust ] || die "KEEP=1 needs SINK=rust (the Python receiver reports its counts only when it stops)"
if [ -n "$ALT_BIN" ]; then
  [ "$KEEP" = 1 ] || die "ALT_BIN needs KEEP=1"
  case $ALT_BIN in /*) ;; *) ALT_BIN=$ROOT/$ALT_BIN ;; esac
  [ -x "$ALT_BIN" ] || die "no pynomaly binary at ALT_BIN=$ALT_BIN"
fi
log "receiver: $SINK"

SINK_PID=
declare -A PID_OF KEY_OF DIR_OF ADDR_OF
cleanup() {
  local rc=$? p d
  for p in $SINK_PID "${PID_OF[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for d in "${DIR_OF[@]}"; do rm -rf "$d"; done
  exit "$rc"
}
trap cleanup EXIT

mkdir -p "$WORK"
python3 "$ROOT/bench/fastapi_peer/bench_data.py" "$WORK/bodies" >/dev/null || die "cannot write the request bodies"
RESULTS=$WORK/results.tsv
THREADS_TSV=$WORK/threads.tsv
: >"$RESULTS"; : >"$THREADS_TSV"

wait_http() {  # url pid log
  for _ in $(seq 400); do
    kill -0 "$2" 2>/dev/null || { tail -20 "$3" >&2; die "process $2 exited"; }
    curl -sf -o /dev/null --max-time 2 "$1" && return 0
    sleep 0.05
  done
  die "$1 did not answer"
}

cpu_ticks() {  # pid: user + system CPU time so far, in clock ticks
  local stat; stat=$(<"/proc/$1/stat"); stat=${stat##*) }
  awk '{print $12 + $13}' <<<"$stat"
}

thread_ticks() {  # pid: "thread-name ticks" per thread (user + system), names as the kernel keeps them
  local t stat name
  for t in /proc/"$1"/task/*; do
    { read -r stat <"$t/stat"; } 2>/dev/null || continue
    name=${stat#*(}; name=${name%%) *}; stat=${stat##*) }
    printf '%s\t%s\n' "${name// /_}" "$(awk '{print $12 + $13}' <<<"$stat")"
  done
}

start_sink() {  # stats_file (python sink)
  if [ "$SINK" = rust ]; then
    "$SINK_BIN" --port "$SINK_PORT" >"$WORK/sink.log" 2>&1 &
  else
    python3 "$ROOT/bench/otlp_sink.py" --port "$SINK_PORT" --stats "$1" >"$WORK/sink.log" 2>&1 &
  fi
  SINK_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$SINK_PORT") 2>/dev/null && break; sleep 0.05; done
}

sink_spans() {  # stats_file -> the spans the receiver has decoded so far, or rejected:N
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); bad=s["rejected"]+s.get("invalid_spans",0); print(s["spans"] if not bad else "rejected:%d" % bad)' "$1"
}

start_server() {  # mode addr [binary]: a server with traces off or on/alt (the sink must run), trained
  local mode=$1 addr=$2 bin=${3:-$BIN} dir
  dir=$(mktemp -d /tmp/pynomaly-tracing-bench-data.XXXXXX)
  DIR_OF[$mode]=$dir ADDR_OF[$mode]=$addr
  # No rate limit unless asked: wrk would exceed the default per-key limit.
  local env=(PYNOMALY_BIND=$addr PYNOMALY_DATA_DIR=$dir LOG_LEVEL=warn
    PYNOMALY_RATE_LIMIT_PER_MINUTE=${PYNOMALY_RATE_LIMIT_PER_MINUTE:-0})
  if [ "$mode" != off ]; then
    env+=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT OTEL_SERVICE_NAME=pynomaly-bench OTEL_TRACES_SAMPLER=$SAMPLER OTEL_TRACES_SAMPLER_ARG=$SAMPLER_ARG)
  fi
  env "${env[@]}" "$bin" serve >"$WORK/server-$mode.log" 2>&1 </dev/null &
  PID_OF[$mode]=$!
  wait_http "http://$addr/health/live" "${PID_OF[$mode]}" "$WORK/server-$mode.log"
  for _ in $(seq 40); do [ -s "$dir/admin.key" ] && break; sleep 0.1; done
  KEY_OF[$mode]=$(tr -d ' \r\n' <"$dir/admin.key")
  local code
  code=$(curl -s -o "$WORK/train.json" -w '%{http_code}' -H "Authorization: Bearer ${KEY_OF[$mode]}" \
    -H 'Content-Type: application/json' --data-binary "@$WORK/bodies/train.json" "http://$addr/api/v1/models")
  [ "$code" = 201 ] || die "training answered $code: $(head -c 300 "$WORK/train.json")"
}

stop_server() {  # mode
  kill -TERM "${PID_OF[$1]}"; wait "${PID_OF[$1]}" || true
  rm -rf "${DIR_OF[$1]}"
  unset "PID_OF[$1]" "DIR_OF[$1]"
}

measure() {  # mode case round: wrk against the running server of `mode`, CPU read around it
  local mode=$1 cse=$2 round=$3 out line s0 k0=0 s1 k1=0
  local pid=${PID_OF[$mode]} key=${KEY_OF[$mode]}
  local url=http://${ADDR_OF[$mode]}/api/v1/models/bench/predict body=$WORK/bodies/$cse.json
  BODY_FILE=$body BENCH_TOKEN=$key wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$LUA" "$url" >/dev/null 2>&1 || true
  out=$WORK/wrk-$cse-$mode-$round.txt
  log "round $round, $cse, traces $mode (load $(cut -d' ' -f1 /proc/loadavg))"
  s0=$(cpu_ticks "$pid"); [ "$mode" = off ] || k0=$(cpu_ticks "$SINK_PID")
  thread_ticks "$pid" >"$WORK/threads-before.tsv"
  BODY_FILE=$body BENCH_TOKEN=$key wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "$url" >"$out" 2>&1 \
    || { cat "$out" >&2; die "wrk failed"; }
  s1=$(cpu_ticks "$pid"); [ "$mode" = off ] || k1=$(cpu_ticks "$SINK_PID")
  thread_ticks "$pid" >"$WORK/threads-after.tsv"
  # Per thread name: CPU ticks during the measured run (threads started meanwhile count whole).
  awk -v c="$cse" -v r="$round" -v m="$mode" 'NR == FNR {b[$1] += $2; next} {a[$1] += $2}
    END {for (n in a) printf "%s\t%s\t%s\t%s\t%d\n", c, r, m, n, a[n] - b[n]}' \
    "$WORK/threads-before.tsv" "$WORK/threads-after.tsv" >>"$THREADS_TSV"
  line=$(grep '^BENCH_RESULT' "$out") || { cat "$out" >&2; die "no BENCH_RESULT in $out"; }
  MEASURED="$((s1 - s0))"$'\t'"$((k1 - k0))"$'\t'"$line"
}

run_round() {  # mode case round: fresh server (and receiver), measure, stop
  local mode=$1 cse=$2 round=$3 spans=- sink_stats=$WORK/sink-$2-$3.json
  [ "$mode" = off ] || start_sink "$sink_stats"
  start_server "$mode" "$ADDR"
  measure "$mode" "$cse" "$round"
  stop_server "$mode"
  if [ "$mode" = on ]; then
    if [ "$SINK" = rust ]; then
      curl -sf -o "$sink_stats" "http://127.0.0.1:$SINK_PORT/stats" || die "the sink gave no stats"
    fi
    kill -TERM "$SINK_PID"; wait "$SINK_PID" || true; SINK_PID=
    spans=$(sink_spans "$sink_stats")
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$cse" "$round" "$mode" "$spans" "$MEASURED" >>"$RESULTS"
}

kept_round() {  # mode case round: measure the kept server; spans = what the receiver got since the last look
  local mode=$1 cse=$2 round=$3 spans=- now
  measure "$mode" "$cse" "$round"
  if [ "$mode" != off ]; then
    # Let the batch processor send what it holds (OTEL_BSP_SCHEDULE_DELAY, 5 s by default).
    sleep "${FLUSH_WAIT:-6}"
    curl -sf -o "$WORK/sink-now.json" "http://127.0.0.1:$SINK_PORT/stats" || die "the sink gave no stats"
    now=$(sink_spans "$WORK/sink-now.json")
    case $now in rejected:*) spans=$now ;; *) spans=$((now - SPANS_SEEN)); SPANS_SEEN=$now ;; esac
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$cse" "$round" "$mode" "$spans" "$MEASURED" >>"$RESULTS"
}

for cse in $CASES; do
  if [ "$KEEP" = 1 ]; then
    start_sink "$WORK/sink-kept.json"
    start_server off "$ADDR"
    start_server on "$ON_ADDR"
    [ -z "$ALT_BIN" ] || start_server alt "$ALT_ADDR" "$ALT_BIN"
    sleep "${FLUSH_WAIT:-6}"
    curl -sf -o "$WORK/sink-now.json" "http://127.0.0.1:$SINK_PORT/stats" || die "the sink gave no stats"
    SPANS_SEEN=$(sink_spans "$WORK/sink-now.json")
  fi
  for round in $(seq "$ROUNDS"); do
    # Odd rounds run "off" first, even rounds "on" first, so neither always runs second.
    if [ -n "$ALT_BIN" ]; then
      modes=$(printf '%s\n' off on alt off on | sed -n "$((round % 3 + 1)),+2p" | tr '\n' ' ')
    elif (( round % 2 )); then modes="off on"; else modes="on off"; fi
    for mode in $modes; do
      if [ "$KEEP" = 1 ]; then kept_round "$mode" "$cse" "$round"; else run_round "$mode" "$cse" "$round"; fi
    done
  done
  if [ "$KEEP" = 1 ]; then
    stop_server off; stop_server on
    [ -z "$ALT_BIN" ] || stop_server alt
    kill -TERM "$SINK_PID"; wait "$SINK_PID" || true; SINK_PID=
  fi
done

python3 - "$RESULTS" "$SINK" "$(getconf CLK_TCK)" "$THREADS_TSV" <<'PY'
import re, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
def f(line, key):
    return float(re.search(rf"\b{key}=([0-9.]+)", line).group(1))
tick_us = 1e6 / float(sys.argv[3])
print("| case | round | traces off: req/s | traces on: req/s | on / off | p99 ms off | p99 ms on "
      "| server CPU µs/req off | on | receiver CPU µs/req | spans exported (on) | requests (on) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
by = {}
for cse, rnd, mode, spans, server_ticks, sink_ticks, line in rows:
    n = int(f(line, "requests"))
    by.setdefault((cse, rnd), {})[mode] = dict(
        rps=f(line, "rps"), p99=f(line, "p99_ms"), spans=spans, n=n, non2xx=int(f(line, "non2xx")),
        cpu=int(server_ticks) * tick_us / n, sink=int(sink_ticks) * tick_us / n)
for (cse, rnd), m in by.items():
    off, on = m["off"], m["on"]
    assert off["non2xx"] == 0 and on["non2xx"] == 0, "non-2xx answers"
    print(f"| {cse} | {rnd} | {off['rps']:.0f} | {on['rps']:.0f} | {on['rps']/off['rps']:.3f} | {off['p99']:.2f} "
          f"| {on['p99']:.2f} | {off['cpu']:.2f} | {on['cpu']:.2f} | {on['sink']:.2f} | {on['spans']} | {on['n']} |")
for cse in sorted({k[0] for k in by}):
    runs = [m for k, m in by.items() if k[0] == cse]
    med = lambda mode, key: statistics.median(m[mode][key] for m in runs)
    ratios = ", ".join("%.3f" % (m["on"]["rps"] / m["off"]["rps"]) for m in runs)
    print(f"\n{cse} (receiver {sys.argv[2]}): median req/s off {med('off', 'rps'):.0f}, on {med('on', 'rps'):.0f}, "
          f"on/off {med('on', 'rps')/med('off', 'rps'):.3f}; per-round ratios {ratios}; median server CPU µs/req "
          f"off {med('off', 'cpu'):.2f}, on {med('on', 'cpu'):.2f}; receiver {med('on', 'sink'):.2f}")
    if all("alt" in m for m in runs):
        # ALT_BIN: the other build's traced server against the same traces-off runs. "Steady"
        # rounds: the machine's speed did not visibly change within the round (each traced
        # server's CPU a request at least the round's traces-off run's and at most 25% above).
        for m in runs:
            assert m["alt"]["non2xx"] == 0, "non-2xx answers"
        steady = [m for m in runs if m["off"]["cpu"] <= min(m["on"]["cpu"], m["alt"]["cpu"])
                  and max(m["on"]["cpu"], m["alt"]["cpu"]) <= 1.25 * m["off"]["cpu"]]
        alt = ", ".join("%.3f" % (m["alt"]["rps"] / m["off"]["rps"]) for m in runs)
        print(f"alt (ALT_BIN) per-round on/off {alt}; median of rounds: on "
              f"{statistics.median(m['on']['rps'] / m['off']['rps'] for m in runs):.3f}, alt "
              f"{statistics.median(m['alt']['rps'] / m['off']['rps'] for m in runs):.3f}")
        if steady:
            st = lambda mode: statistics.median(m[mode]["rps"] / m["off"]["rps"] for m in steady)
            sc = lambda mode: statistics.median(m[mode]["cpu"] - m["off"]["cpu"] for m in steady)
            print(f"steady rounds ({len(steady)} of {len(runs)}): median on/off {st('on'):.3f}, alt/off "
                  f"{st('alt'):.3f}; server CPU µs/req over the traces-off run: on {sc('on'):.2f}, alt {sc('alt'):.2f}")
# Where the server's CPU went, by thread name: µs per request, median over rounds.
threads = {}
for l in open(sys.argv[4]):
    cse, rnd, mode, name, ticks = l.rstrip("\n").split("\t")
    n = by[(cse, rnd)][mode]["n"]
    threads.setdefault((cse, mode, name), []).append(int(ticks) * tick_us / n)
print("\n| case | traces | server thread | CPU µs/req (median of rounds) |\n|---|---|---|---:|")
for (cse, mode, name), v in sorted(threads.items()):
    if statistics.median(v) >= 0.05:
        print(f"| {cse} | {mode} | {name} | {statistics.median(v):.2f} |")
PY
