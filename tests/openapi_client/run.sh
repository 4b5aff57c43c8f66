#!/usr/bin/env bash
# A Python client generated from pynomaly's own OpenAPI document, type-checked and run
# against a live server. Starts `pynomaly serve` on a free loopback port with a fresh data
# directory (and a small CSV data source in <data dir>/sources), fetches the live
# /api/v1/openapi.json, generates the package `pynomaly_client` from it with
# openapi-python-client into a temporary directory (never committed; any generator warning
# fails the run: an operation or schema it cannot read would be missing from the client),
# type-checks the generated package and tests/openapi_client/flow.py with mypy --strict
# (tests/openapi_client/mypy.ini names the two generator defects it lets pass), then runs
# flow.py: detect, train, predict and a batch job (submit, poll to the end, read the result)
# through the generated models and functions, checking the answers. The server is stopped on
# exit, pass or fail.
#
#   tests/openapi_client/run.sh [PYNOMALY_BINARY]
#
# PYNOMALY_BINARY defaults to $CARGO_TARGET_DIR/debug/pynomaly. The tools live in a venv,
# $OPENAPI_CLIENT_VENV (default /var/tmp/pynomaly-tools/openapi-client), created and
# filled from PyPI the first time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-/var/tmp/pynomaly-target}/debug/pynomaly}"
venv="${OPENAPI_CLIENT_VENV:-/var/tmp/pynomaly-tools/openapi-client}"
generator_version=0.29.1
mypy_version=2.4.1

fail() {
    echo "openapi_client: FAILED: $*" >&2
    exit 1
}

[[ -x "$bin" ]] || fail "no pynomaly binary at $bin (cargo build -p pynomaly)"
command -v curl >/dev/null || fail "curl not found"
if [[ ! -x "$venv/bin/openapi-python-client" || ! -x "$venv/bin/mypy" ]]; then
    echo "installing openapi-python-client $generator_version and mypy $mypy_version into $venv (once)"
    python3 -m venv "$venv" \
        && "$venv/bin/pip" install --quiet "openapi-python-client==$generator_version" "mypy==$mypy_version" \
        || fail "cannot install openapi-python-client and mypy into $venv (pip, from PyPI)"
fi

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

# The batch job's data source: rows near (1, 2, 3), the last one far away.
mkdir -p "$work/data/sources"
source_csv="$work/data/sources/flow.csv"
{
    echo 'a,b,c'
    for _ in 1 2; do
        printf '1,2,3\n1.1,2.1,3.1\n0.9,2,3\n1,2.2,2.9\n1.2,1.9,3.1\n'
    done
    echo '9,9,-9'
} >"$source_csv"

PYNOMALY_BIND="127.0.0.1:$port" PYNOMALY_DATA_DIR="$work/data" LOG_LEVEL=warn \
    "$bin" serve >"$log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/health/live" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; fail "the server exited at start (log above)"; }
    sleep 0.1
done
curl -sf "http://127.0.0.1:$port/health/live" >/dev/null || { tail -20 "$log" >&2; fail "the server did not start in 30 s"; }
base="http://127.0.0.1:$port"
[[ -s "$work/data/admin.key" ]] || fail "the server wrote no admin key to $work/data/admin.key"
key="$(tr -d '[:space:]' <"$work/data/admin.key")"

echo "openapi_client: pynomaly at $base; the document from $base/api/v1/openapi.json"
curl -sf "$base/api/v1/openapi.json" -o "$work/openapi.json" || fail "cannot fetch $base/api/v1/openapi.json"

echo "openapi_client: openapi-python-client $("$venv/bin/openapi-python-client" --version | awk '{print $NF}') generate (warnings fail)"
mkdir -p "$work/client"
# With the venv on PATH the generator formats its output with the ruff it installed.
(cd "$work" && PATH="$venv/bin:$PATH" "$venv/bin/openapi-python-client" generate \
    --path "$work/openapi.json" --meta none --output-path "$work/client/pynomaly_client" \
    --fail-on-warning) >"$work/generate.log" 2>&1 \
    || { cat "$work/generate.log" >&2; fail "openapi-python-client could not generate the whole client from the document (above)"; }
for op in detection/detect models/train models/predict jobs/submit_batch jobs/get_job jobs/get_job_result; do
    [[ -f "$work/client/pynomaly_client/api/$op.py" ]] || fail "the generated client has no $op"
done
echo "openapi_client: generated $(find "$work/client/pynomaly_client/api" -name '*.py' ! -name '__init__.py' | wc -l) operations, $(find "$work/client/pynomaly_client/models" -name '*.py' ! -name '__init__.py' | wc -l) models"

echo "openapi_client: mypy $mypy_version --strict on pynomaly_client and flow.py; let pass, for generator defects (see mypy.ini):"
echo "  - pynomaly_client.client: arg-type (the template's __exit__/__aexit__ passing *args: object to httpx)"
echo "  - pynomaly_client.models.error, .algorithms: assignment, return-value, attr-defined (openapi-python-client issue 1117)"
cp "$here/flow.py" "$work/client/flow.py"
(cd "$work/client" && "$venv/bin/mypy" --config-file "$here/mypy.ini" --no-incremental --cache-dir /dev/null \
    pynomaly_client flow.py) || fail "mypy found type errors in the generated client or flow.py (above)"

echo "openapi_client: flow.py against $base"
(cd "$work/client" && "$venv/bin/python" flow.py "$base" "$key" flow.csv "$source_csv") \
    || fail "flow.py: the generated client's calls did not answer as expected (above)"

if grep -q "panicked" "$log"; then
    grep -A5 "panicked" "$log" >&2
    fail "the server panicked (log above)"
fi
echo "openapi_client: passed"
