package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/internal/testenv"
)

// run executes the CLI in-process with args and returns stdout.
func run(ctx context.Context, t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestCLIContract runs serve, attest and verify as a user would (the flags of the contract),
// in one process on loopback.
func TestCLIContract(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr := freeAddr(t)
	iss := "http://" + addr
	served := make(chan error, 1)
	go func() { _, err := run(ctx, t, "serve", "--addr", addr, "--trust-any-ak"); served <- err }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	waitFor(t, iss+"/.well-known/openid-configuration")

	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if _, err := run(ctx, t, "attest", "--issuer", iss, "--tpm", "simulator", "--event-log", testenv.EventLogPath(t, testenv.DefaultLog),
		"--audience", "svc", "--out", tok); err != nil {
		t.Fatalf("attest: %v", err)
	}
	if fi, err := os.Stat(tok + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cnf key file missing or not 0600: %v %v", err, fi)
	}
	res, err := http.Get(iss + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(dir, "jwks.json")
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(res.Body)
	res.Body.Close()
	if err := os.WriteFile(jwksFile, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := run(ctx, t, "verify", "--issuer", iss, "--jwks", jwksFile, "--audience", "svc", tok)
	if err != nil {
		t.Fatalf("offline verify: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal([]byte(out), &claims); err != nil {
		t.Fatalf("verify output is not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"iss", "aud", "exp", "jti", "cnf", "submods"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("claim %s missing from verify output", k)
		}
	}
	if _, err := run(ctx, t, "verify", "--issuer", iss, "--audience", "svc", tok); err != nil {
		t.Fatalf("online verify: %v", err)
	}
	if _, err := run(ctx, t, "verify", "--issuer", iss, "--jwks", jwksFile, "--audience", "other", tok); err == nil {
		t.Fatal("verify accepted another audience")
	}
	if _, err := run(ctx, t, "verify", "--issuer", "http://127.0.0.1:1", "--jwks", jwksFile, "--audience", "svc", tok); err == nil {
		t.Fatal("verify accepted another issuer")
	}
	if _, err := run(ctx, t, "serve", "--addr", freeAddr(t)); err == nil || !strings.Contains(err.Error(), "AK trust") {
		t.Fatalf("serve without AK trust: %v", err)
	}
}

func TestDemo(t *testing.T) {
	out, err := run(context.Background(), t, "demo", "--event-log", testenv.EventLogPath(t, testenv.DefaultLog))
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"(1)", "(2)", "(3)", "(4)", "(5)", "(6)", "(7)", "validates locally: HTTP 200",
		"replayed nonce     -> refused: ", "nonce_reused", "tampered event log -> refused: ", "evidence_rejected_replay", "stolen token, no proof         -> HTTP 401", "stolen token, thief's proof    -> HTTP 401", "no token at all                -> HTTP 401"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func waitFor(t *testing.T, url string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
}
