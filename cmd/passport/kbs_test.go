package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/internal/testenv"
)

// TestKBSCLI runs serve, kbs, attest --kbs --fetch (with and without --token) and kbs put as
// a user would, in one process on loopback.
func TestKBSCLI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	issAddr, kbsAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	iss := "http://" + issAddr
	kbsURL := "http://" + kbsAddr
	served := make(chan error, 2)
	go func() { _, err := run(ctx, t, "serve", "--addr", issAddr, "--trust-any-ak"); served <- err }()
	waitFor(t, iss+"/.well-known/openid-configuration")

	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(filepath.Join(secrets, "default", "key"), 0o700); err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, 32)
	_, _ = rand.Read(disk)
	if err := os.WriteFile(filepath.Join(secrets, "default", "key", "disk"), disk, 0o600); err != nil {
		t.Fatal(err)
	}
	cred := filepath.Join(dir, "cred")
	if err := os.WriteFile(cred, []byte("an-admin-credential-of-32-bytes!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auditLog := filepath.Join(dir, "audit.log")
	go func() {
		_, err := run(ctx, t, "kbs", "--addr", kbsAddr, "--issuer", iss, "--audience", "kbs", "--secrets", secrets,
			"--admin-addr", adminAddr, "--admin-credential", cred, "--audit-log", auditLog)
		served <- err
	}()
	defer func() {
		cancel()
		for range 2 {
			if err := <-served; err != nil {
				t.Errorf("server: %v", err)
			}
		}
	}()
	waitFor(t, kbsURL+"/healthz")

	res, err := http.Get(kbsURL + "/kbs/v0/resource/default/key/disk")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("no token: %d, want 401", res.StatusCode)
	}

	logPath := testenv.EventLogPath(t, testenv.DefaultLog)
	attest := func(extra ...string) error {
		args := append([]string{"attest", "--issuer", iss, "--kbs", kbsURL, "--audience", "kbs", "--tpm", "simulator", "--event-log", logPath}, extra...)
		_, err := run(ctx, t, args...)
		return err
	}
	got := filepath.Join(dir, "got")
	if err := attest("--fetch", "default/key/disk", "--out", got); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, disk) {
		t.Fatal("fetched bytes differ from the secret")
	}
	if fi, _ := os.Stat(got); fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v", fi.Mode())
	}

	// --token: the first run attests and saves the token, the second reuses it.
	tokFile := filepath.Join(dir, "token")
	for range 2 {
		if err := attest("--fetch", "default/key/disk", "--out", got, "--token", tokFile); err != nil {
			t.Fatal(err)
		}
	}
	lines := auditLines(t, auditLog)
	if n := len(lines); n != 4 || lines[2]["jti"] != lines[3]["jti"] || lines[1]["jti"] == lines[2]["jti"] {
		t.Fatalf("audit lines %v: want the saved token reused once", lines)
	}
	// The reused token was found in the broker's verified-token cache, and /metrics says so.
	mres, err := http.Get(kbsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(mres.Body)
	mres.Body.Close()
	if !regexp.MustCompile(`(?m)^passport_rp_token_cache_lookups_total\{result="hit"\} [1-9]`).Match(mbody) {
		t.Fatalf("kbs /metrics counts no token cache hit after a reused token:\n%s", grepLines(mbody, "token_cache"))
	}
	// Releases have a latency series of their own, apart from probes and unknown paths.
	if !strings.Contains(string(mbody), `passport_http_request_duration_seconds_count{code="200",listener="public",route="GET /kbs/v0/resource/{repository}/{type}/{tag}"}`) {
		t.Fatalf("kbs /metrics has no release route:\n%s", grepLines(mbody, "request_duration_seconds_count"))
	}

	// A saved token the broker refuses (issued for another audience) is replaced once.
	if _, err := run(ctx, t, "attest", "--issuer", iss, "--audience", "another-service", "--tpm", "simulator", "--event-log", logPath, "--out", tokFile); err != nil {
		t.Fatal(err)
	}
	if err := attest("--fetch", "default/key/disk", "--out", got, "--token", tokFile); err != nil {
		t.Fatalf("fetch with a refused saved token: %v", err)
	}
	lines = auditLines(t, auditLog)
	if n := len(lines); n != 6 || lines[4]["reason"] != "wrong_audience" || lines[5]["decision"] != "release" {
		t.Fatalf("audit lines %v: want a refusal of the saved token, then a release", lines[4:])
	}

	// kbs put through the admin API, then fetch it.
	src := filepath.Join(dir, "dbpass")
	if err := os.WriteFile(src, []byte("database password"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(ctx, t, "kbs", "put", "--admin", "http://"+adminAddr, "--credential", cred, "default/password/db", src); err != nil {
		t.Fatal(err)
	}
	if err := attest("--fetch", "default/password/db", "--out", got, "--token", tokFile); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); string(b) != "database password" {
		t.Fatalf("fetched %q", b)
	}
	bad := filepath.Join(dir, "badcred")
	_ = os.WriteFile(bad, []byte("not-the-admin-credential-at-all"), 0o600)
	if _, err := run(ctx, t, "kbs", "put", "--admin", "http://"+adminAddr, "--credential", bad, "default/password/x", src); err == nil {
		t.Fatal("kbs put with a wrong credential succeeded")
	}
	if err := attest("--fetch", "default/key/missing", "--out", filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing resource: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a refused fetch wrote --out")
	}
	log, _ := os.ReadFile(auditLog)
	if bytes.Contains(log, disk) || bytes.Contains(log, []byte("database password")) || bytes.Contains(log, []byte("eyJ")) {
		t.Fatal("the audit log holds a secret or a token")
	}

	if _, err := run(ctx, t, "kbs", "--addr", freeAddr(t), "--issuer", iss, "--audience", "kbs"); err == nil {
		t.Fatal("kbs without a secret store started")
	}
	if _, err := run(ctx, t, "attest", "--issuer", iss, "--audience", "kbs", "--kbs", kbsURL); err == nil {
		t.Fatal("--kbs without --fetch accepted")
	}
	if _, err := run(ctx, t, "attest", "--issuer", iss, "--audience", "kbs", "--token", tokFile); err == nil {
		t.Fatal("--token without --kbs accepted")
	}
}

func auditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		if m["event"] == "kbs.release" {
			out = append(out, m)
		}
	}
	return out
}

// TestDemoKBS: the demo's steps (6) and (7) include a key broker release to the attester's
// key, and a refusal of the same token with another key.
func TestDemoKBS(t *testing.T) {
	out, err := run(context.Background(), t, "demo", "--event-log", testenv.EventLogPath(t, testenv.DefaultLog))
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	if !strings.Contains(out, "KBS released default/key/disk (32 bytes) as a JWE (ECDH-ES+A256KW, A256GCM) to that key only; with another key -> 401") {
		t.Fatalf("demo output lacks the KBS release:\n%s", out)
	}
}

// TestKBSCLIRedis: kbs --redis --kek keeps secrets encrypted in Redis; kbs put stores one and
// attest --fetch gets it back. It fails when Redis (PASSPORT_REDIS_URL, default
// 127.0.0.1:6379) does not answer.
func TestKBSCLIRedis(t *testing.T) {
	redisURL := os.Getenv("PASSPORT_REDIS_URL")
	if redisURL == "" {
		redisURL = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	if err := rc.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis at %s does not answer: %v", redisURL, err)
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	prefix := "passport-kbs-cli-test-" + hex.EncodeToString(rnd)
	defer func() {
		ctx := context.Background()
		iter := rc.Scan(ctx, 0, prefix+":*", 100).Iterator()
		for iter.Next(ctx) {
			rc.Del(ctx, iter.Val())
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	issAddr, kbsAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	iss, kbsURL := "http://"+issAddr, "http://"+kbsAddr
	dir := t.TempDir()
	kek, cred := filepath.Join(dir, "kek"), filepath.Join(dir, "cred")
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	_ = os.WriteFile(kek, []byte(hex.EncodeToString(k)+"\n"), 0o600)
	_ = os.WriteFile(cred, []byte("an-admin-credential-of-32-bytes!"), 0o600)
	served := make(chan error, 2)
	go func() { _, err := run(ctx, t, "serve", "--addr", issAddr, "--trust-any-ak"); served <- err }()
	waitFor(t, iss+"/.well-known/openid-configuration")
	go func() {
		_, err := run(ctx, t, "kbs", "--addr", kbsAddr, "--issuer", iss, "--audience", "kbs", "--redis", redisURL,
			"--redis-prefix", prefix, "--kek", kek, "--admin-addr", adminAddr, "--admin-credential", cred, "--audit-log", filepath.Join(dir, "audit"))
		served <- err
	}()
	defer func() {
		cancel()
		for range 2 {
			if err := <-served; err != nil {
				t.Errorf("server: %v", err)
			}
		}
	}()
	waitFor(t, kbsURL+"/healthz")
	secret := []byte("model key kept in redis")
	src := filepath.Join(dir, "src")
	_ = os.WriteFile(src, secret, 0o600)
	if _, err := run(ctx, t, "kbs", "put", "--admin", "http://"+adminAddr, "--credential", cred, "models/key/llm", src); err != nil {
		t.Fatal(err)
	}
	keys, err := rc.Keys(ctx, prefix+":*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("redis keys %v %v", keys, err)
	}
	if raw, _ := rc.Get(ctx, keys[0]).Bytes(); bytes.Contains(raw, secret) {
		t.Fatal("the secret is in Redis in plaintext")
	}
	got := filepath.Join(dir, "got")
	if _, err := run(ctx, t, "attest", "--issuer", iss, "--kbs", kbsURL, "--audience", "kbs", "--fetch", "models/key/llm", "--out", got,
		"--tpm", "simulator", "--event-log", testenv.EventLogPath(t, testenv.DefaultLog)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, secret) {
		t.Fatalf("fetched %q", b)
	}
}

// TestKBSPublicURL: the broker's public URL is --public-url, else derived from --addr with the
// listener's port; an --addr on every interface names no usable URL and is refused.
func TestKBSPublicURL(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 18444}
	for _, tc := range []struct {
		flag, addr string
		tls        bool
		want       string // "" means an error
	}{
		{"", "127.0.0.1:8444", false, "http://127.0.0.1:18444"},
		{"", "127.0.0.1:0", false, "http://127.0.0.1:18444"},
		{"", "kbs.internal:8444", true, "https://kbs.internal:18444"},
		{"", "[::1]:8444", false, "http://[::1]:18444"},
		{"https://kbs.example", "0.0.0.0:8444", false, "https://kbs.example"},
		{"", ":8444", false, ""},
		{"", "0.0.0.0:8444", false, ""},
		{"", "[::]:8444", false, ""},
		{"", "no-port", false, ""},
	} {
		got, err := publicURL("public-url", tc.flag, tc.addr, bound, tc.tls)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("publicURL(%q, %q, tls %v) = %q, %v; want %q", tc.flag, tc.addr, tc.tls, got, err, tc.want)
		}
	}
}

// grepLines returns the lines of b that contain s, for failure messages.
func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
