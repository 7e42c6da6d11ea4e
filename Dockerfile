# passport container image. Build with
#   docker build -t passport .
# and check it with scripts/docker-smoke.sh (make docker-smoke): serve from the image as user
# 65532 with a read-only root and TLS, attest with the image's own attester, verify on the host.
# The TPM simulator in the attester is cgo (gcc, libc6-dev, OpenSSL's libcrypto), so the binary
# is built with cgo and runs on a glibc base that has libcrypto.
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/passport ./cmd/passport

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/* \
 && groupadd -g 65532 passport && useradd -u 65532 -g 65532 -M -s /usr/sbin/nologin passport
COPY --from=build /out/passport /usr/local/bin/passport
USER 65532:65532
# issuer: 8443 public, 9443 admin, 9090 metrics; kbs: 8444 public, 8445 admin, 9091 metrics
EXPOSE 8443 9443 9090 8444 8445 9091
ENTRYPOINT ["/usr/local/bin/passport"]
CMD ["serve", "--config", "/etc/passport/config/passport.yaml"]
