package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/api"
)

// clientFrom returns an HTTP client whose connections come from the loopback address ip, a
// client of its own for the issuer's limits.
func clientFrom(ip string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: dialFrom(ip)}}
}

func postFrom(t *testing.T, c *http.Client, url, body string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// pinnedEKFile writes a PEM public key for --ek-allowlist (turns EK enrollment on).
func pinnedEKFile(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "eks.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEnrollRateLimit: POST /v1/enroll stores a session for each request, so it is limited
// like POST /v1/challenge, in the same per-client bucket (with /v1/enroll/activate): past the
// burst a client gets 429 on all three, another client is still served, and each refusal is
// counted with its route.
func TestEnrollRateLimit(t *testing.T) {
	srv := startServe(t, "--ek-allowlist", pinnedEKFile(t), "--challenge-rate", "0.5", "--challenge-burst", "3")
	c := clientFrom("127.0.0.1")
	for i := 0; i < 3; i++ { // within the burst: the handler answers (400: an empty request)
		if status, body, _ := postFrom(t, c, srv.url+api.PathEnroll, "{}"); status != http.StatusBadRequest {
			t.Fatalf("enroll %d within the burst: %d %s, want 400 from the handler", i, status, body)
		}
	}
	for _, path := range []string{api.PathEnroll, api.PathChallenge, api.PathEnrollActivate} {
		status, body, h := postFrom(t, c, srv.url+path, "{}")
		if status != http.StatusTooManyRequests || !strings.Contains(body, "rate_limited") || h.Get("Retry-After") == "" {
			t.Fatalf("%s past the burst: %d %s, want 429 rate_limited with Retry-After", path, status, body)
		}
	}
	if status, body, _ := postFrom(t, clientFrom("127.0.0.2"), srv.url+api.PathEnroll, "{}"); status != http.StatusBadRequest {
		t.Fatalf("enroll from another client: %d %s, want 400 from the handler", status, body)
	}
	_, scrape, _ := get(t, srv.url+"/metrics")
	for _, route := range []string{"POST /v1/enroll", "POST /v1/challenge", "POST /v1/enroll/activate"} {
		if !strings.Contains(scrape, `passport_rate_limited_total{route="`+route+`",scope="client"} 1`) {
			t.Errorf("refusal on %s not counted:\n%s", route, grep(scrape, "rate_limited"))
		}
	}
}

// TestGlobalRateCeiling: clients each within their own limit are held together to the
// global ceiling; the refusal is the same 429, counted with scope "global".
func TestGlobalRateCeiling(t *testing.T) {
	srv := startServe(t, "--trust-any-ak", "--challenge-rate", "100", "--challenge-global-rate", "0.5", "--challenge-global-burst", "2")
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		if status, body, _ := postFrom(t, clientFrom(ip), srv.url+api.PathChallenge, ""); status != http.StatusOK {
			t.Fatalf("challenge from %s within the global burst: %d %s", ip, status, body)
		}
	}
	status, body, h := postFrom(t, clientFrom("127.0.0.3"), srv.url+api.PathChallenge, "")
	if status != http.StatusTooManyRequests || !strings.Contains(body, "rate_limited") {
		t.Fatalf("a third client over the global ceiling: %d %s, want 429", status, body)
	}
	if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s < 1 || s > 2 {
		t.Fatalf("Retry-After %q, want 1-2 s at 0.5/s", h.Get("Retry-After"))
	}
	_, scrape, _ := get(t, srv.url+"/metrics")
	if !strings.Contains(scrape, `passport_rate_limited_total{route="POST /v1/challenge",scope="global"} 1`) {
		t.Fatalf("global refusal not counted:\n%s", grep(scrape, "rate_limited"))
	}
}

// openStream opens GET /v1/revocations from ip; on 200 it reads the opening resync event and
// returns the open response (the caller closes it).
func openStream(t *testing.T, base, ip string) (int, *http.Response) {
	t.Helper()
	resp, err := clientFrom(ip).Get(base + api.PathRevocations)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return resp.StatusCode, resp
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "event: resync") {
		t.Fatalf("stream from %s opened with %q, %v", ip, line, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp.StatusCode, resp
}

// TestRevocationStreamCaps: anonymous clients cannot hold revocation streams without bound:
// beyond revocation-streams-per-client for one client, or revocation-streams in all, the
// answer is 503 with Retry-After; a slot is free again once its stream ends; refusals are
// counted with their scope.
func TestRevocationStreamCaps(t *testing.T) {
	srv := startServe(t, "--trust-any-ak", "--revocation-streams", "2", "--revocation-streams-per-client", "1")
	_, first := openStream(t, srv.url, "127.0.0.1")
	status, resp := openStream(t, srv.url, "127.0.0.1")
	if status != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second stream of one client: %d Retry-After %q, want 503 with Retry-After", status, resp.Header.Get("Retry-After"))
	}
	if status, _ := openStream(t, srv.url, "127.0.0.2"); status != http.StatusOK {
		t.Fatalf("another client's stream: %d", status)
	}
	if status, _ := openStream(t, srv.url, "127.0.0.3"); status != http.StatusServiceUnavailable {
		t.Fatalf("a third stream in all: %d, want 503", status)
	}
	first.Body.Close() // the client leaves: its slot frees once the server notices
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if status, _ := openStream(t, srv.url, "127.0.0.3"); status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed stream was never freed")
		}
	}
	_, scrape, _ := get(t, srv.url+"/metrics")
	for _, scope := range []string{"client", "global"} {
		if !strings.Contains(scrape, `passport_rate_limited_total{route="GET /v1/revocations",scope="`+scope+`"}`) {
			t.Errorf("%s refusal of a stream not counted:\n%s", scope, grep(scrape, "rate_limited"))
		}
	}
}

// TestRevocationStreamLifetime: the issuer ends a revocation stream after
// revocation-stream-lifetime with a clean end of the response (the follower reconnects and
// resyncs), instead of holding it for ever. The 20 s deadline only bounds a hang.
func TestRevocationStreamLifetime(t *testing.T) {
	srv := startServe(t, "--trust-any-ak", "--revocation-stream-lifetime", "300ms")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url+api.PathRevocations, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("stream did not end by itself: %v (read %q)", err, b)
	}
	if !strings.HasPrefix(string(b), "event: resync") {
		t.Fatalf("stream %q, want the resync event first", b)
	}
}
