#!/usr/bin/env bash
# Writes the compose deployment's env file: a copy of .env.example with every empty value
# (the secrets) filled with `openssl rand -hex 32`.
#
#     deploy/gen-env.sh [OUT]          # default: .env at the top of the repository
#
# An existing OUT is never overwritten (its secrets are the deployment's: a new
# PYNOMALY_SECRET_KEY would invalidate every API key, a new PYNOMALY_ENCRYPTION_KEY make
# the stored models unreadable).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/.env}
if [ -e "$out" ]; then
    echo "gen-env.sh: $out exists; kept (delete it first to make a new one)" >&2
    exit 1
fi
command -v openssl >/dev/null || { echo "gen-env.sh: openssl is needed" >&2; exit 1; }

umask 077
filled=()
while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line =~ ^([A-Z0-9_]+)=$ ]]; then
        name=${BASH_REMATCH[1]}
        line="$name=$(openssl rand -hex 32)"
        filled+=("$name")
    fi
    printf '%s\n' "$line"
done < "$root/.env.example" > "$out"
echo "gen-env.sh: wrote $out (generated: ${filled[*]})"
