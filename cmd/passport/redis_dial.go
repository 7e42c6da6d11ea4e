package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/config"
	redisstore "github.com/passport-attest/passport/store/redis"
)

// redisPingTimeout bounds the first PING of every command that opens Redis.
const redisPingTimeout = 5 * time.Second

// dialRedis opens rawURL with redisstore.OpenTimeout (every URL form the configuration
// accepts: one server, unix socket, Sentinel, Cluster; timeout as the dial, read and write
// timeout of each call) and checks that the server answers a PING within redisPingTimeout.
// flag names the option in errors. Errors show the URL with its passwords redacted and, when
// the failure looks like a TLS mismatch (rediss:// to a plaintext port times out, redis:// to a
// TLS port is hung up on), say so.
func dialRedis(ctx context.Context, flag, rawURL string, timeout time.Duration) (redis.UniversalClient, error) {
	client, err := redisstore.OpenTimeout(rawURL, timeout)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("--%s %s: no answer to PING: %w%s", flag, config.RedactURL(rawURL), err, tlsMismatchHint(rawURL, err))
	}
	return client, nil
}

// tlsMismatchHint returns a sentence naming a likely TLS mismatch for a failed first PING, or
// "" when err does not look like one.
func tlsMismatchHint(rawURL string, err error) string {
	scheme, _, _ := strings.Cut(strings.ToLower(rawURL), "://")
	tls := strings.HasPrefix(scheme, "rediss")
	var ne net.Error
	timedOut := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
	hungUp := errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	switch {
	case tls && timedOut:
		return " (the TLS handshake got no answer: if this port serves plaintext Redis, use redis://)"
	case !tls && hungUp:
		return " (the server hung up: if this port serves Redis over TLS, use rediss://)"
	}
	return ""
}
