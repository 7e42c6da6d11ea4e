#!/usr/bin/env bash
# Builds the container image from ./Dockerfile and checks that it works the way
# deploy/kubernetes runs it: `passport serve` from the image as user 65532 with a read-only root
# filesystem, HTTPS from a mounted certificate and Redis on the host; then the image's own
# attester (the cgo TPM simulator, which needs libcrypto in the runtime image) attests against
# it, and the host's passport binary verifies the token online and offline. Needs a Docker engine
# that can pull (or already has) golang:1.26-bookworm and debian:bookworm-slim, openssl, curl,
# and Redis on 127.0.0.1:6379 (REDIS_URL to change). Usage: scripts/docker-smoke.sh  (or make docker-smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
IMG=${IMG:-passport:smoke}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/14}
NAME=passport-smoke-$$
T=$(mktemp -d)
cleanup() { docker rm -f "$NAME" >/dev/null 2>&1 || true; rm -rf "$T"; }
trap cleanup EXIT
step() { printf '== %s\n' "$*"; }

step "docker build -t $IMG ."
docker build -t "$IMG" .
step "go build -o bin/passport ./cmd/passport (host side)"
make --no-print-directory build >/dev/null

P=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ISS=https://127.0.0.1:$P
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$T/tls.key" -out "$T/tls.crt" 2>/dev/null
chmod 0644 "$T/tls.key" "$T/tls.crt" # readable by the image's user 65532; a throwaway key
chmod 0755 "$T"
mkdir -m 0777 "$T/out" # where the image's attester (user 65532) writes its token

step "serve from the image (user 65532, read-only root, TLS, Redis $REDIS_URL)"
docker run -d --name "$NAME" --network host --read-only --user 65532:65532 --cap-drop ALL \
  --security-opt no-new-privileges -v "$T:/etc/passport/tls:ro" "$IMG" \
  serve --addr 127.0.0.1:$P --tls-cert /etc/passport/tls/tls.crt --tls-key /etc/passport/tls/tls.key \
  --redis "$REDIS_URL" --trust-any-ak >/dev/null
for _ in $(seq 50); do
  curl -fsS --cacert "$T/tls.crt" "$ISS/.well-known/openid-configuration" >"$T/disc.json" 2>/dev/null && break
  sleep 0.2
done
[ -s "$T/disc.json" ] || { docker logs "$NAME" | tail -20; echo "FAIL: the image's issuer did not answer"; exit 1; }
grep -q "\"issuer\":\"$ISS\"" "$T/disc.json" || { cat "$T/disc.json"; echo "FAIL: discovery names another issuer"; exit 1; }

# A real firmware event log (go-tpm-tools' test data), replayed into the simulator first.
cp "$(go list -m -f '{{.Dir}}' github.com/google/go-tpm-tools)/internal/test/eventlogs/ubuntu-2104-no-dbx.bin" "$T/eventlog.bin"
chmod 0644 "$T/eventlog.bin"
step "attest with the image's attester (TPM simulator inside the image, a real event log)"
docker run --rm --network host --read-only --user 65532:65532 --cap-drop ALL -v "$T:/w" \
  -e SSL_CERT_FILE=/w/tls.crt "$IMG" attest --issuer "$ISS" --tpm simulator --event-log /w/eventlog.bin \
  --audience smoke --out /w/out/token
cp "$T/out/token" "$T/token"
[ -s "$T/token" ] || { echo "FAIL: no token"; exit 1; }

step "verify on the host: online (discovery) and offline (JWKS file)"
SSL_CERT_FILE="$T/tls.crt" ./bin/passport verify --issuer "$ISS" --audience smoke "$T/token" >"$T/claims.json"
curl -fsS --cacert "$T/tls.crt" "$ISS/.well-known/jwks.json" >"$T/jwks.json"
./bin/passport verify --issuer "$ISS" --jwks "$T/jwks.json" --audience smoke "$T/token" >/dev/null 2>&1
if ./bin/passport verify --issuer "$ISS" --jwks "$T/jwks.json" --audience other "$T/token" >/dev/null 2>&1; then
  echo "FAIL: another audience accepted"; exit 1
fi

step "the issuer's log never holds the token"
if docker logs "$NAME" 2>&1 | grep -qF "$(cut -d. -f3 "$T/token")"; then
  echo "FAIL: the token's signature is in the issuer's log"; exit 1
fi
docker stop -t 10 "$NAME" >/dev/null
docker logs "$NAME" 2>&1 | grep -q 'token issued' || { echo "FAIL: no 'token issued' log line"; exit 1; }
echo "ok: image $IMG served, attested and verified ($(docker image inspect -f '{{.Size}}' "$IMG" | awk '{printf "%.0f MB", $1/1e6}'))"
