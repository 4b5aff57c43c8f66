#!/usr/bin/env bash
# Streaming benchmark (issue 7, "Speed"): `pynomaly stream` end to end, produce → score →
# alert, through Redis Streams and through Kafka (tansu), the broker running locally.
#
#   bench/stream_bench.sh            # both brokers; BROKERS=redis or BROKERS=kafka for one
#
# Per broker:
#   passthrough  read → write unchanged → commit, no parsing or scoring: the broker's and
#                the client's own cost (stream_bench example, same Source/Sink code)
#   throughput   N events already in the source, then `pynomaly stream --model bench`
#                (a registry isolation forest, 100 trees, over the 10 features of each
#                event, 5 of them in a nested object): events/s from first to last alert
#   soak         a producer paced at RATE events/s for SOAK seconds while the stream runs:
#                per-event added latency (broker time of the alert minus broker time of
#                the event) and the stream process's RSS sampled every 5 s
#   seed         the Python streaming loop of bench/seed_stream_loop.py (redis-py or
#                confluent-kafka + scikit-learn, per message) for SEED_SECONDS on a backlog
# Settings: N=500000 KAFKA_N=100000 RATE=20000 SOAK=120 SEED_SECONDS=30 BATCH=2000
#   REDIS=redis://127.0.0.1:6379  TANSU=/var/tmp/pynomaly-tools/bin/tansu  KAFKA_PORT=19092
#   STREAM_ARGS= (more `pynomaly stream` flags, e.g. "--kafka-config fetch.wait.max.ms=5")
# Builds the release binaries itself (or takes BIN=path/pynomaly TOOL=path/stream_bench). Results: $BENCH_WORK/results.txt
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${N:-500000}
# tansu's in-memory storage times out producers well before 500,000 events on 2 cores.
KAFKA_N=${KAFKA_N:-100000}
RATE=${RATE:-20000}
SOAK=${SOAK:-120}
SEED_SECONDS=${SEED_SECONDS:-30}
BATCH=${BATCH:-2000}
REDIS=${REDIS:-redis://127.0.0.1:6379}
TANSU=${TANSU:-/var/tmp/pynomaly-tools/bin/tansu}
KAFKA_PORT=${KAFKA_PORT:-19092}
BROKERS=${BROKERS:-redis kafka}
WORK=${BENCH_WORK:-/tmp/pynomaly-stream-bench}
TARGET=${CARGO_TARGET_DIR:-target}
# BIN and TOOL name other builds (to compare two versions); unset, this tree's are built.
BIN=${BIN:-}
TOOL=${TOOL:-}

rm -rf "$WORK" && mkdir -p "$WORK"
RESULTS=$WORK/results.txt
say() { echo "$*" | tee -a "$RESULTS"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

if [ -z "$BIN" ]; then
  cargo build --release -p pynomaly --bin pynomaly >/dev/null
  BIN=$TARGET/release/pynomaly
fi
if [ -z "$TOOL" ]; then
  cargo build --release -p pynomaly-stream --example stream_bench >/dev/null
  TOOL=$TARGET/release/examples/stream_bench
fi
say "binaries: $BIN, $TOOL"
say "machine: $(nproc) cores, $(date -u +%FT%TZ), shared with other builds (noisy)"

# --- the registry model: trained through the API, then the server stops -----------------
DATA=$WORK/data
"$BIN" serve --data-dir "$DATA" --bind 127.0.0.1:0 >"$WORK/serve.log" 2>&1 &
serve=$!
pids+=("$serve")
for _ in $(seq 200); do grep -q "serving on" "$WORK/serve.log" && break; sleep 0.1; done
addr=$(grep -o 'http://[0-9.:]*' "$WORK/serve.log" | head -1)
python3 - "$addr" "$(cat "$DATA/admin.key")" <<'PY'
import json, sys, urllib.request
import numpy as np
addr, key = sys.argv[1], sys.argv[2]
body = json.dumps({"model_name": "bench", "random_state": 0,
                   "data": np.random.RandomState(0).rand(2000, 10).round(4).tolist()}).encode()
req = urllib.request.Request(addr + "/api/v1/models", body,
                             {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
print("registered:", json.load(urllib.request.urlopen(req))["version"])
PY
kill "$serve"; wait "$serve" 2>/dev/null || true

metric() { curl -s "http://$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }

# start_stream SOURCE SINK LOG -> sets STREAM_PID, STREAM_ADDR
start_stream() {
    "$BIN" stream --source "$1" --sink "$2" --model bench --data-dir "$DATA" \
        --batch-size "$BATCH" --metrics-bind 127.0.0.1:0 --group bench ${STREAM_ARGS:-} >"$3" 2>&1 &
    STREAM_PID=$!
    pids+=("$STREAM_PID")
    for _ in $(seq 300); do grep -q "^pynomaly stream:" "$3" && break; sleep 0.1; done
    STREAM_ADDR=$(grep -o 'metrics on http://[0-9.:]*' "$3" | sed 's|metrics on http://||')
}

broker_cpu() { # seconds of CPU the broker process has used
    awk '{print ($14 + $15) / 100}' "/proc/$1/stat"
}

run_case() { # NAME URL_PREFIX BROKER_PID
    local name=$1 base=$2 bpid=$3 tag
    tag=bench-$(date +%s)
    if [[ $name == kafka ]]; then
        local t topics=()
        for t in pt pt.out pt.dlq tp tp.alerts tp.dlq soak soak.alerts soak.dlq; do topics+=("$base/$tag-$t"); done
        "$TOOL" topics "${topics[@]}"
    fi
    say ""
    say "== $name (N=$N, batch $BATCH) =="
    # passthrough: the broker's own cost
    "$TOOL" produce "$base/$tag-pt" "$N" | sed 's/^/producer: /' | tee -a "$RESULTS"
    local c0; c0=$(broker_cpu "$bpid")
    "$TOOL" passthrough "$base/$tag-pt" "$base/$tag-pt.out" "$N" | tee -a "$RESULTS"
    say "broker CPU during passthrough: $(echo "$(broker_cpu "$bpid") - $c0" | bc) s"

    # throughput with scoring
    "$TOOL" produce "$base/$tag-tp" "$N" >/dev/null
    c0=$(broker_cpu "$bpid")
    local log=$WORK/$name-throughput.log t0="" t1 out
    start_stream "$base/$tag-tp" "$base/$tag-tp.alerts" "$log"
    while :; do
        out=$(metric "$STREAM_ADDR" pynomaly_stream_alerts_out_total)
        out=${out:-0}
        if [[ -z $t0 && $out -gt 0 ]]; then t0=$(date +%s.%N); o0=$out; fi
        if [[ $out -ge $N ]]; then t1=$(date +%s.%N); break; fi
        sleep 0.05
    done
    local rss; rss=$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$STREAM_PID/status")
    kill -TERM "$STREAM_PID"; wait "$STREAM_PID" || true
    say "pynomaly stream: $((N - o0)) events in $(echo "$t1 - $t0" | bc) s = $(echo "($N - $o0) / ($t1 - $t0)" | bc) events/s scored end to end (peak RSS ${rss} MiB); broker CPU $(echo "$(broker_cpu "$bpid") - $c0" | bc) s"

    # soak: paced producer, latency and memory
    local soaklog=$WORK/$name-soak.log total=$((RATE * SOAK))
    start_stream "$base/$tag-soak" "$base/$tag-soak.alerts" "$soaklog"
    "$TOOL" produce "$base/$tag-soak" "$total" "$RATE" >"$WORK/$name-soak-producer.txt" &
    local prod=$!
    : >"$WORK/$name-rss.txt"
    while kill -0 "$prod" 2>/dev/null; do
        awk '/VmRSS/ {print $2 / 1024}' "/proc/$STREAM_PID/status" >>"$WORK/$name-rss.txt"
        sleep 5
    done
    while [[ $(metric "$STREAM_ADDR" pynomaly_stream_alerts_out_total) -lt $total ]]; do sleep 0.2; done
    kill -TERM "$STREAM_PID"; wait "$STREAM_PID" || true
    say "soak: $(cat "$WORK/$name-soak-producer.txt") for ${SOAK} s"
    say "RSS of pynomaly stream every 5 s (MiB): $(sort -n "$WORK/$name-rss.txt" | head -1) min, $(sort -n "$WORK/$name-rss.txt" | tail -1) max, first $(head -1 "$WORK/$name-rss.txt"), last $(tail -1 "$WORK/$name-rss.txt")"
    "$TOOL" latency "$base/$tag-soak" "$base/$tag-soak.alerts" "$total" | tee -a "$RESULTS"
    TAG=$tag
}

for broker in $BROKERS; do
    case $broker in
    redis)
        rpid=$(redis-cli -u "$REDIS" INFO server | awk -F: '/^process_id/ {print $2}' | tr -d '\r')
        run_case redis "$REDIS" "$rpid"
        "$TOOL" produce "$REDIS/$TAG-seed" 200000 >/dev/null
        python3 bench/seed_stream_loop.py "$REDIS" "$TAG-seed" "$TAG-seed.alerts" "$SEED_SECONDS" | tee -a "$RESULTS"
        for s in pt pt.out tp tp.alerts soak soak.alerts seed seed.alerts tp.dlq soak.dlq; do
            redis-cli -u "$REDIS" DEL "$TAG-$s" >/dev/null
        done
        ;;
    kafka)
        [[ -x $TANSU ]] || { say "kafka: SKIPPED, no tansu at $TANSU"; continue; }
        "$TANSU" broker --storage-engine memory://tansu/ \
            --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" >"$WORK/tansu.log" 2>&1 &
        tpid=$!
        pids+=("$tpid")
        sleep 2
        N=$KAFKA_N run_case kafka "kafka://127.0.0.1:$KAFKA_PORT" "$tpid"
        "$TOOL" topics "kafka://127.0.0.1:$KAFKA_PORT/$TAG-seed" "kafka://127.0.0.1:$KAFKA_PORT/$TAG-seed.alerts"
        "$TOOL" produce "kafka://127.0.0.1:$KAFKA_PORT/$TAG-seed" 20000 >/dev/null
        python3 bench/seed_stream_loop.py "kafka://127.0.0.1:$KAFKA_PORT" "$TAG-seed" "$TAG-seed.alerts" "$SEED_SECONDS" | tee -a "$RESULTS"
        kill "$tpid"
        ;;
    esac
done
say ""
say "results in $RESULTS"
