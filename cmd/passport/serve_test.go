package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/config"
	"github.com/passport-attest/passport/internal/redisproc"
	"github.com/passport-attest/passport/internal/testenv"
)

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is an in-process `passport serve`.
type running struct {
	url   string
	addrs map[string]string
	logs  *syncBuffer
	stop  func() error // cancels and returns serve's error
}

// startServe parses args like the command line (no file, no environment) and runs serve until
// the test ends.
func startServe(t *testing.T, args ...string) *running {
	t.Helper()
	f := serveFlags{Serve: config.DefaultServe()}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	f.RegisterFlags(fs)
	addScaleFlags(fs, &f.scale)
	if err := fs.Parse(append([]string{"--addr", "127.0.0.1:0", "--log-level", "debug"}, args...)); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(fs, config.SectionServe, "", func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &running{logs: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, f, r.logs, func(url string, addrs map[string]string) {
			r.url, r.addrs = url, addrs
			close(ready)
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v\n%s", err, r.logs)
	}
	var once sync.Once
	var stopErr error
	r.stop = func() error {
		once.Do(func() { cancel(); stopErr = <-done })
		return stopErr
	}
	t.Cleanup(func() { _ = r.stop() })
	return r
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func post(t *testing.T, url string, body []byte) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestNoSecretsInLogsOrMetrics runs one attestation through the whole serve stack and checks
// that neither the logs nor /metrics contain the token, the nonce or the jti in any encoding,
// while they do record the attestation (with its request id) and its outcome.
func TestNoSecretsInLogsOrMetrics(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	srv := startServe(t, "--trust-any-ak")
	c := &attester.Client{IssuerURL: srv.url}
	ctx := context.Background()
	ch, err := c.Challenge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, err := a.Evidence(ch.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	req.Audience = "secrets-test"
	res, err := c.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// A refusal too: the replayed evidence.
	if _, err := c.Submit(ctx, req); err == nil {
		t.Fatal("replayed evidence accepted")
	}
	parts := strings.Split(res.Token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.JTI == "" {
		t.Fatalf("no jti in token: %v", err)
	}
	cnfTP, err := req.CNF.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"token":             res.Token,
		"token signature":   parts[2],
		"token payload":     parts[1],
		"nonce (base64url)": base64.RawURLEncoding.EncodeToString(ch.Nonce),
		"nonce (base64)":    base64.StdEncoding.EncodeToString(ch.Nonce),
		"nonce (hex)":       hex.EncodeToString(ch.Nonce),
		"jti":               claims.JTI,
		"cnf thumbprint":    base64.RawURLEncoding.EncodeToString(cnfTP),
	}
	_, scrape, _ := get(t, srv.url+"/metrics")
	logs := srv.logs.String()
	for name, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain the %s", name)
		}
		if strings.Contains(scrape, s) {
			t.Errorf("/metrics contains the %s", name)
		}
	}
	for _, want := range []string{
		`passport_issuer_attestations_total{outcome="issued",reason=""} 1`,
		`passport_issuer_attestations_total{outcome="refused",reason="nonce_reused"} 1`,
		`passport_http_request_duration_seconds_count{code="200",listener="public",route="POST /v1/attest"} 1`,
		`passport_http_request_duration_seconds_count{code="409",listener="public",route="POST /v1/attest"} 1`,
		`passport_issuer_appraisal_step_seconds_count{step="verify"}`,
		`passport_issuer_appraisal_step_seconds_count{step="sign"} 1`,
	} {
		if !strings.Contains(scrape, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The issuer's decision line and the access line of the attestation share a request id.
	var issued, access map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		switch {
		case m["msg"] == "token issued":
			issued = m
		case m["msg"] == "http request" && m["route"] == "POST /v1/attest" && m["status"] == float64(200):
			access = m
		}
	}
	if issued == nil || access == nil {
		t.Fatalf("missing log lines (issued %v, access %v) in:\n%s", issued, access, logs)
	}
	if id, _ := issued["request_id"].(string); id == "" || id != access["request_id"] {
		t.Fatalf("request ids differ: %v vs %v", issued["request_id"], access["request_id"])
	}
}

// TestBodyCaps: every endpoint that reads a body answers 413 past its cap.
func TestBodyCaps(t *testing.T) {
	srv := startServe(t, "--trust-any-ak")
	for _, tc := range []struct {
		path string
		size int
	}{
		{api.PathChallenge, 2 << 10},
		{api.PathAttest, 6 << 20},
	} {
		body := append([]byte(`{"nonce":"`), bytes.Repeat([]byte("A"), tc.size)...)
		body = append(body, `"}`...)
		status, resp, _ := post(t, srv.url+tc.path, body)
		if status != http.StatusRequestEntityTooLarge || !strings.Contains(resp, "request_too_large") {
			t.Errorf("%s with %d bytes: %d %s, want 413 request_too_large", tc.path, len(body), status, resp)
		}
	}
	// Below the cap the challenge is served.
	if status, _, _ := post(t, srv.url+api.PathChallenge, []byte("{}")); status != http.StatusOK {
		t.Fatalf("small challenge body: %d", status)
	}
}

// TestChallengeRateLimit: past its burst one client gets 429 with Retry-After, another client
// (another loopback address) is still served, and the refusals are counted.
func TestChallengeRateLimit(t *testing.T) {
	srv := startServe(t, "--trust-any-ak", "--challenge-rate", "0.5", "--challenge-burst", "3")
	for i := 0; i < 3; i++ {
		if status, body, _ := post(t, srv.url+api.PathChallenge, nil); status != http.StatusOK {
			t.Fatalf("challenge %d within the burst: %d %s", i, status, body)
		}
	}
	status, body, h := post(t, srv.url+api.PathChallenge, nil)
	if status != http.StatusTooManyRequests || !strings.Contains(body, "rate_limited") {
		t.Fatalf("challenge past the burst: %d %s, want 429", status, body)
	}
	if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s < 1 || s > 2 {
		t.Fatalf("Retry-After %q, want 1-2 s at 0.5/s", h.Get("Retry-After"))
	}
	// Attest is not rate-limited (a bad request, not a 429).
	if status, _, _ := post(t, srv.url+api.PathAttest, []byte("{}")); status != http.StatusBadRequest {
		t.Fatalf("attest: %d, want 400", status)
	}
	// Another client address has its own bucket.
	other := &http.Client{Transport: &http.Transport{DialContext: dialFrom("127.0.0.2")}}
	resp, err := other.Post(srv.url+api.PathChallenge, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("another client: %d, want 200", resp.StatusCode)
	}
	_, scrape, _ := get(t, srv.url+"/metrics")
	if !strings.Contains(scrape, `passport_rate_limited_total{route="POST /v1/challenge",scope="client"} 1`) {
		t.Fatalf("rate limit not counted:\n%s", grep(scrape, "rate_limited"))
	}
}

// TestReadyzFollowsRedis: /readyz is 503 while the issuer's Redis is down and 200 again once
// it is back with its data (AOF); /healthz stays 200 throughout, challenges and status lists
// fail closed with 503 and the store errors are counted.
func TestReadyzFollowsRedis(t *testing.T) {
	// appendfsync always: the issuer's epoch marker, written at start, must survive the kill
	// below (with everysec a kill within a second loses it, and the issuer then rightly
	// reports data loss and never becomes ready).
	rs := &redisproc.Server{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	srv := startServe(t, "--trust-any-ak", "--redis", rs.URL(), "--redis-timeout", "300ms")
	if status, body, _ := get(t, srv.url+"/readyz"); status != http.StatusOK {
		t.Fatalf("readyz with Redis up: %d %s", status, body)
	}
	rs.Stop()
	status, body, _ := get(t, srv.url+"/readyz")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"store":"failed"`) || !strings.Contains(body, `"signing_key":"ok"`) {
		t.Fatalf("readyz with Redis down: %d %s, want 503 naming the store", status, body)
	}
	if status, _, _ := get(t, srv.url+"/healthz"); status != http.StatusOK {
		t.Fatalf("healthz with Redis down: %d", status)
	}
	if status, body, _ := post(t, srv.url+api.PathChallenge, nil); status != http.StatusServiceUnavailable {
		t.Fatalf("challenge with Redis down: %d %s, want 503", status, body)
	}
	if status, body, _ := get(t, srv.url+api.PathStatusList+"/0"); status != http.StatusServiceUnavailable {
		t.Fatalf("status list with Redis down: %d %s, want 503", status, body)
	}
	_, scrape, _ := get(t, srv.url+"/metrics")
	if !strings.Contains(scrape, `passport_nonce_store_errors_total{op="put"} 1`) {
		t.Fatalf("store error not counted:\n%s", grep(scrape, "nonce_store"))
	}
	if !strings.Contains(scrape, `passport_status_list_store_errors_total{op="read"} 1`) {
		t.Fatalf("status list store error not counted:\n%s", grep(scrape, "status_list_store"))
	}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second) // liveness only, not a timing goal
	for {
		status, body, _ := get(t, srv.url+"/readyz")
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz after Redis restarted: %d %s", status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status, body, _ := post(t, srv.url+api.PathChallenge, nil); status != http.StatusOK {
		t.Fatalf("challenge after Redis restarted: %d %s", status, body)
	}
}

// TestMetricsListener: with --metrics-addr, /metrics moves off the public listener.
func TestMetricsListener(t *testing.T) {
	srv := startServe(t, "--trust-any-ak", "--metrics-addr", "127.0.0.1:0")
	if status, _, _ := get(t, srv.url+"/metrics"); status != http.StatusNotFound {
		t.Fatalf("public /metrics: %d, want 404", status)
	}
	m := "http://" + srv.addrs["metrics"]
	if status, body, _ := get(t, m+"/metrics"); status != http.StatusOK || !strings.Contains(body, "passport_http_requests_in_flight") {
		t.Fatalf("metrics listener: %d", status)
	}
	if status, _, _ := get(t, m+"/readyz"); status != http.StatusOK {
		t.Fatalf("metrics listener readyz: %d", status)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// dialFrom dials from the loopback address ip, so the issuer sees another client.
func dialFrom(ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.DialContext
}
