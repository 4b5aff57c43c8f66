#!/usr/bin/env bash
# Fuzzes the JSON API from its own OpenAPI document with schemathesis: starts `pynomaly
# serve` on a fresh data directory and a free port, reads the admin key it creates, runs
# schemathesis against /api/v1/openapi.json with a bounded number of examples per
# operation, and fails on any 5xx answer (check `not_a_server_error`) or a panic in the
# server's log. The server is stopped on exit, pass or fail.
#
#   tests/fuzz/run_schemathesis.sh [PYNOMALY_BINARY]
#
# PYNOMALY_BINARY defaults to $CARGO_TARGET_DIR/debug/pynomaly. schemathesis comes from
# $SCHEMATHESIS (default: `schemathesis` on PATH). FUZZ_EXAMPLES (default 50) bounds the
# examples per operation, FUZZ_SEED (default 1) makes a run reproducible.
set -euo pipefail

bin="${1:-${CARGO_TARGET_DIR:-/var/tmp/pynomaly-target}/debug/pynomaly}"
st="${SCHEMATHESIS:-schemathesis}"
examples="${FUZZ_EXAMPLES:-50}"
seed="${FUZZ_SEED:-1}"

[[ -x "$bin" ]] || { echo "run_schemathesis: no pynomaly binary at $bin (cargo build -p pynomaly)" >&2; exit 2; }
command -v "$st" >/dev/null || { echo "run_schemathesis: schemathesis not found ($st)" >&2; exit 2; }

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$work/server.log"
server_pid=""
stop_server() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_server EXIT

mkdir -p "$work/data/sources"
# A small source, so batch and training-from-source requests can succeed too.
printf 'a,b,c\n1,2,3\n1.1,2.1,3.1\n0.9,2,3\n9,9,-9\n' >"$work/data/sources/small.csv"

PYNOMALY_BIND="127.0.0.1:$port" PYNOMALY_DATA_DIR="$work/data" WORKER_CONCURRENCY=1 \
    PYNOMALY_MAX_CELLS=200000 PYNOMALY_REQUEST_TIMEOUT_S=20 LOG_LEVEL=warn \
    "$bin" serve >"$log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/health/live" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { echo "the server exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
done
curl -sf "http://127.0.0.1:$port/health/live" >/dev/null || { echo "the server did not start:" >&2; tail -20 "$log" >&2; exit 1; }
key="$(tr -d '[:space:]' <"$work/data/admin.key")"

echo "schemathesis $("$st" --version | awk '{print $NF}') against http://127.0.0.1:$port (max $examples examples per operation, seed $seed)"
status=0
# From the work directory, so schemathesis's own cache (.schemathesis/) goes away with it.
(cd "$work" && "$st" run "http://127.0.0.1:$port/api/v1/openapi.json" \
    --checks not_a_server_error \
    --header "Authorization: Bearer $key" \
    --max-examples "$examples" \
    --seed "$seed" \
    --phases examples,coverage,fuzzing \
    --generation-database none \
    --request-timeout 30 \
    --workers 1 \
    --no-color \
    --suppress-health-check all) || status=$?

if grep -q "panicked" "$log"; then
    echo "the server panicked during the run:" >&2
    grep -A5 "panicked" "$log" >&2
    status=1
fi
exit "$status"
