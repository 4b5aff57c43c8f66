#!/usr/bin/env bash
# Redis-shared rate limiting on vs off on the 1-row predict of service_bench.sh (issue 5),
# alternating per round, each run on a fresh Postgres database and Redis prefix.
#   bench/ratelimit_bench.sh [PATH_TO_PYNOMALY]   # default ${CARGO_TARGET_DIR:-target}/release/pynomaly
# Needs Postgres (createdb/dropdb, 127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379).
# ROUNDS (4), DURATION (8s). "off" is PYNOMALY_RATE_LIMIT_PER_MINUTE=0, "on" a limit too high
# ever to refuse (100000000), so only the cost of the check differs. The order alternates
# per round.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
B=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pynomaly}
[ -x "$B" ] || { echo "no pynomaly binary at $B (cargo build --release -p pynomaly)" >&2; exit 1; }
cd "$ROOT"
for r in $(seq "${ROUNDS:-4}"); do
  # Odd rounds run "off" first, even rounds "on" first, so neither always runs second.
  if (( r % 2 )); then order="0 100000000"; else order="100000000 0"; fi
  for rl in $order; do
    db=bench_rl_$$_${r}_$rl
    createdb -h 127.0.0.1 -U postgres "$db"
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db REDIS_URL=redis://127.0.0.1:6379 \
    PYNOMALY_REDIS_PREFIX=benchrl$$-$r-$rl PYNOMALY_RATE_LIMIT_PER_MINUTE=$rl \
    SERVERS=ours CASES=predict_1 DURATION=${DURATION:-8s} WARMUP=2s OURS_ADDR=127.0.0.1:18431 \
    BENCH_WORK=/tmp/ratelimit-bench/$r-$rl bench/service_bench.sh "$B" 2>&1 \
      | grep "| predict_1" | awk -F'|' -v r="$r" -v l="$rl" '{print "round", r, "limit", l, "req/s", $5, "p99 ms", $8}'
    dropdb -h 127.0.0.1 -U postgres "$db" 2>/dev/null || true
  done
done
