#!/usr/bin/env bash
# A private CA and a server certificate signed by it, for a first start of the compose
# deployment (deploy/README.md) and for the checks in deploy/ci/. Replace them with a
# certificate from a public CA for real clients.
#
#     deploy/nginx/gen-self-signed.sh [OUT_DIR] [NAME ...]
#
# OUT_DIR: where to write (default deploy/nginx/certs, git-ignored, mounted into nginx):
#   ca.crt      the CA certificate: give it to clients (curl --cacert, SSL_CERT_FILE)
#   ca.key      the CA's key (keep it, or delete it once the server certificate is made)
#   server.crt  the server certificate followed by the CA (the chain nginx sends)
#   server.key  the server's key
# NAME: DNS names or IP addresses the certificate is valid for (default: localhost and
# 127.0.0.1, plus $PYNOMALY_DOMAIN when set). Existing files are kept unless FORCE=1.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/certs}
shift || true
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    names=(localhost 127.0.0.1)
    if [ -n "${PYNOMALY_DOMAIN:-}" ]; then names=("$PYNOMALY_DOMAIN" "${names[@]}"); fi
fi
command -v openssl >/dev/null || { echo "gen-self-signed.sh: openssl is needed" >&2; exit 1; }

if [ -e "$out/server.crt" ] && [ "${FORCE:-0}" != 1 ]; then
    echo "gen-self-signed.sh: $out/server.crt exists; kept (FORCE=1 to replace it)"
    exit 0
fi
mkdir -p "$out"
umask 077

san=""
for n in "${names[@]}"; do
    if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san=${san%,}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The CA: P-256, ten years, allowed to sign server certificates only (pathlen 0).
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tmp/ca.key" -out "$tmp/ca.crt" -days 3650 \
    -subj "/O=pynomaly/CN=pynomaly deployment CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null

# The server: P-256, 397 days (the most browsers accept), for the names given.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" \
    -subj "/O=pynomaly/CN=${names[0]}" 2>/dev/null
cat > "$tmp/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days 397 -sha256 -extfile "$tmp/server.ext" \
    -out "$tmp/server.leaf.crt" 2>/dev/null
openssl verify -CAfile "$tmp/ca.crt" "$tmp/server.leaf.crt" >/dev/null

cat "$tmp/server.leaf.crt" "$tmp/ca.crt" > "$out/server.crt"
cp "$tmp/server.key" "$out/server.key"
cp "$tmp/ca.crt" "$out/ca.crt"
cp "$tmp/ca.key" "$out/ca.key"
# Certificates are public; nginx's master process (root) reads the key.
chmod 644 "$out/server.crt" "$out/ca.crt"
chmod 600 "$out/server.key" "$out/ca.key"
echo "gen-self-signed.sh: wrote $out/{ca.crt,ca.key,server.crt,server.key} for ${names[*]}"
