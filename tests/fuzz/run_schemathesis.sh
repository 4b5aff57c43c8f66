#!/usr/bin/env bash
# Fuzzes the JSON API from its own OpenAPI document with schemathesis: starts `pynomaly
# serve` on a fresh data directory and a free port, reads the admin key it creates, checks
# that the document is valid OpenAPI 3.1 (openapi-spec-validator, when $SPEC_VALIDATOR
# names it), seeds the data the operations need (a model with a staging version, a
# schedule, finished jobs, keys and users to revoke and disable, models to delete, a running
# canary, models whose canaries and schedules the operations that end them use up, a model
# with earlier production versions to roll back to, a one-feature model for predict, a
# user to log in as, the document's example source name as a file), with the per-key
# request limit off (429s would keep the fuzzer from the handlers), gives the fuzzer the
# names that exist (a source, a cron expression, the user), rectangular rows for detect,
# and real model files for the model upload (pynomaly_fuzz_hooks.py), then
# runs schemathesis against /api/v1/openapi.json with a bounded number of examples per
# operation, the stateful phase (following the document's links) included. It fails on any
# 5xx answer, an answer whose status, content type, body or headers the document does not
# describe (checks not_a_server_error, status_code_conformance, content_type_conformance,
# response_schema_conformance, response_headers_conformance), a panic in the server's log,
# and, with FUZZ_FAIL_ON_WARNINGS=1, a "missing test data" or "schema validation mismatch"
# warning. The server is
# stopped on exit, pass or fail.
#
#   tests/fuzz/run_schemathesis.sh [PYNOMALY_BINARY]
#
# PYNOMALY_BINARY defaults to $CARGO_TARGET_DIR/debug/pynomaly. schemathesis comes from
# $SCHEMATHESIS (default: `schemathesis` on PATH). FUZZ_EXAMPLES (default 50) bounds the
# examples per operation, FUZZ_SEED (default 1) makes a run reproducible,
# FUZZ_FAIL_ON_WARNINGS=1 makes the two warnings above fail it. SPEC_VALIDATOR
# (e.g. the venv's `openapi-spec-validator`) validates the document first.
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
# The document's example source name, which the coverage phase sends.
cp "$work/data/sources/small.csv" "$work/data/sources/events.csv"

# No per-key request limit: a 429 says nothing about the request, and thousands of them
# would keep the fuzzer from the handlers (the rate-limit tests cover 429s).
PYNOMALY_RATE_LIMIT_PER_MINUTE=0 \
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
base="http://127.0.0.1:$port"

if [[ -n "${SPEC_VALIDATOR:-}" ]]; then
    curl -sf "$base/api/v1/openapi.json" >"$work/openapi.json"
    "$SPEC_VALIDATOR" "$work/openapi.json" || { echo "the document is not valid OpenAPI" >&2; exit 1; }
fi

# The data the operations act on, so the fuzzer reaches past "not found".
api() { # METHOD PATH [JSON]: the answer's body; fails on an error status
    curl -sf -X "$1" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
        ${3:+--data "$3"} "$base$2"
}
json_field() { python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }
rows='[[1,2,3],[1.1,2.1,3.1],[0.9,2,3],[1,2.2,2.9],[1.2,1.9,3.1],[9,9,-9]]'
api POST /api/v1/models "{\"model_name\": \"seed\", \"data\": $rows, \"random_state\": 1}" >/dev/null
api POST /api/v1/models "{\"model_name\": \"seed\", \"data\": $rows, \"promote\": \"manual\"}" >/dev/null
api PUT /api/v1/models/seed/schedule '{"cron": "0 3 * * *", "training_data": "small.csv"}' >/dev/null
job="$(api POST /api/v1/batch '{"data_source": "small.csv", "model_name": "seed"}' | json_field job_id)"
for _ in $(seq 100); do
    [[ "$(api GET "/api/v1/jobs/$job" | json_field status)" == succeeded ]] && break
    sleep 0.1
done
# A model with a running canary (version 2 of 4; 2 to 4 are staging), for reading and
# replacing it; and models each with a canary or a schedule, for the operations that end
# them (one model is used up per success).
api POST /api/v1/models "{\"model_name\": \"canary\", \"data\": $rows}" >/dev/null
for _ in 2 3 4; do
    api POST /api/v1/models "{\"model_name\": \"canary\", \"data\": $rows, \"promote\": \"manual\"}" >/dev/null
done
api PUT /api/v1/models/canary/canary '{"version": 2}' >/dev/null
# A model of one feature, for predict: the rows the fuzzer makes are often one number wide
# (a predict with another width is a 422), and its version, in about half of them.
api POST /api/v1/models '{"model_name": "narrow", "data": [[1], [1.1], [0.9], [1.2], [9]]}' >/dev/null
# A model with a staging version 2 to promote.
api POST /api/v1/models "{\"model_name\": \"ladder\", \"data\": $rows}" >/dev/null
api POST /api/v1/models "{\"model_name\": \"ladder\", \"data\": $rows, \"promote\": \"manual\"}" >/dev/null
# A model with 20 versions, each production in turn: each rollback goes one further back.
for _ in $(seq 20); do
    api POST /api/v1/models "{\"model_name\": \"rolling\", \"data\": $rows}" >/dev/null
done
ending="" promoting="" unscheduled=""
for i in $(seq 15); do
    for pool in ending promoting; do
        api POST /api/v1/models "{\"model_name\": \"$pool-$i\", \"data\": $rows}" >/dev/null
        api POST /api/v1/models "{\"model_name\": \"$pool-$i\", \"data\": $rows, \"promote\": \"manual\"}" >/dev/null
        api PUT "/api/v1/models/$pool-$i/canary" '{"version": 2}' >/dev/null
    done
    ending+="\"ending-$i\", " promoting+="\"promoting-$i\", "
    api POST /api/v1/models "{\"model_name\": \"unscheduled-$i\", \"data\": $rows}" >/dev/null
    api PUT "/api/v1/models/unscheduled-$i/schedule" '{"cron": "0 3 * * *", "training_data": "small.csv"}' >/dev/null
    unscheduled+="\"unscheduled-$i\", "
done
# A user to log in as.
fuzz_password="a long enough fuzzing passphrase"
api POST /api/v1/users "{\"username\": \"fuzzer\", \"password\": \"$fuzz_password\", \"scopes\": [\"read\"]}" >/dev/null
doomed_models="" doomed_keys="" doomed_users=""
for i in $(seq 20); do
    api POST /api/v1/models "{\"model_name\": \"doomed-$i\", \"data\": $rows}" >/dev/null
    doomed_models+="\"doomed-$i\", "
    doomed_keys+="\"$(api POST /api/v1/auth/keys "{\"name\": \"doomed-$i\", \"scopes\": [\"read\"]}" | json_field id)\", "
    doomed_users+="\"$(api POST /api/v1/users "{\"username\": \"doomed-$i\", \"password\": \"a long enough passphrase\", \"scopes\": [\"read\"]}" | json_field id)\", "
done
# FUZZ_FAIL_ON_WARNINGS=1 also fails the run on schemathesis's "missing test data" and
# "schema validation mismatch" warnings (operations whose generated requests nearly all
# end in 404 or 422: see the report for those still listed).
fail_on="[]"
[[ "${FUZZ_FAIL_ON_WARNINGS:-0}" == 1 ]] && fail_on='["missing_test_data", "validation_mismatch"]'
cat >"$work/schemathesis.toml" <<TOML
[warnings]
fail-on = $fail_on

# "path.name" is a dictionary, not a plain value: schemathesis forces a plain global value
# over an operation's dictionary (delete_model would delete "seed", and every operation on
# it would then answer 404), while an operation's dictionary wins over a global one.
[parameters]
"path.name" = { dictionary = "seed" }
"path.version" = 1
"path.job_id" = "$job"

[dictionaries]
seed = { values = ["seed"] }
canary_versions = { values = [2, 3, 4] }
ending = { values = [${ending%, }] }
promoting = { values = [${promoting%, }] }
unscheduled = { values = [${unscheduled%, }] }
doomed_models = { values = [${doomed_models%, }] }
doomed_keys = { values = [${doomed_keys%, }] }
doomed_users = { values = [${doomed_users%, }] }
narrow_versions = { values = [1] }

# Plain values where the operation uses nothing up (the coverage phase does not draw path
# parameters from dictionaries); dictionaries where each success uses up a model.
[[operations]]
include-operation-id-regex = "^(get_model|get_model_version|upload_model|model_drift|get_schedule)\$"
parameters = { "path.name" = "seed" }

# Names of things that exist (a data source, a cron expression, a user and its password):
# any other string is refused with a 404 or a 422 that says which, and the fuzzer would
# never get further.
[[operations]]
include-operation-id = "set_schedule"
parameters = { "path.name" = "seed", "body.cron" = "0 3 * * *", "body.training_data" = "small.csv" }

# Rectangular rows (JSON Schema cannot say "all rows of one length", and generated rows
# are nearly always ragged): the fuzzing phase fits on these and varies the algorithms and
# their parameters; the coverage phase still sends its own rows.
[[operations]]
include-operation-id = "detect"
parameters = { "body.data" = [[0, 1], [1, 0], [0.5, 0.5], [1, 1], [0, 0], [9, 9]] }

[[operations]]
include-operation-id = "submit_batch"
parameters = { "body.data_source" = "small.csv" }

[[operations]]
include-operation-id = "train"
parameters = { "body.training_data" = "small.csv" }

[[operations]]
include-operation-id = "login"
parameters = { "body.username" = "fuzzer", "body.password" = "$fuzz_password" }

[[operations]]
include-operation-id = "promote_version"
parameters = { "path.name" = "ladder", "path.version" = 2 }

[[operations]]
include-operation-id = "get_canary"
parameters = { "path.name" = "canary" }

[[operations]]
include-operation-id = "start_canary"
parameters = { "path.name" = "canary", "body.version" = { dictionary = "canary_versions" } }

[[operations]]
include-operation-id = "end_canary"
parameters = { "path.name" = { dictionary = "ending" } }

[[operations]]
include-operation-id = "promote_canary"
parameters = { "path.name" = { dictionary = "promoting" } }

[[operations]]
include-operation-id = "rollback"
parameters = { "path.name" = "rolling" }

[[operations]]
include-operation-id = "delete_schedule"
parameters = { "path.name" = { dictionary = "unscheduled" } }

[[operations]]
include-operation-id = "predict"
parameters = { "path.name" = "narrow", "body.version" = { dictionary = "narrow_versions", probability = 0.5 } }

# Not in the coverage phase: it does not draw from dictionaries, and would delete the
# models the other operations need (it names them as it learnt them from answers).
[[operations]]
include-operation-id = "delete_model"
parameters = { "path.name" = { dictionary = "doomed_models" } }
phases = { coverage = { enabled = false } }

[[operations]]
include-operation-id = "revoke_key"
parameters = { "path.id" = { dictionary = "doomed_keys" } }

[[operations]]
include-operation-id = "disable_user"
parameters = { "path.id" = { dictionary = "doomed_users" } }

[[operations]]
include-operation-id = "archive_version"
parameters = { "path.name" = "seed", "path.version" = 2 }
TOML

echo "schemathesis $("$st" --version | awk '{print $NF}') against http://127.0.0.1:$port (max $examples examples per operation, seed $seed)"
status=0
# From the work directory, so schemathesis's own cache (.schemathesis/) goes away with it.
# The model upload's bodies: model files the seeding wrote (see the hooks module).
export PYNOMALY_FUZZ_MODELS="$work/data/storage/models"
export SCHEMATHESIS_HOOKS=pynomaly_fuzz_hooks
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
(cd "$work" && "$st" --config-file "$work/schemathesis.toml" run "http://127.0.0.1:$port/api/v1/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --header "Authorization: Bearer $key" \
    --max-examples "$examples" \
    --seed "$seed" \
    --phases examples,coverage,fuzzing,stateful \
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
