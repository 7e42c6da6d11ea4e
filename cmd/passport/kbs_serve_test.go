package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/pflag"

	"github.com/passport-attest/passport/config"
	"github.com/passport-attest/passport/internal/redisproc"
	"github.com/passport-attest/passport/internal/testenv"
)

// startKBS parses args like the command line (no file, no environment) and runs the key
// broker until the test ends.
func startKBS(t *testing.T, args ...string) *running {
	t.Helper()
	f := kbsFlags{KBS: config.DefaultKBS()}
	fs := pflag.NewFlagSet("kbs", pflag.ContinueOnError)
	f.RegisterFlags(fs)
	if err := fs.Parse(append([]string{"--addr", "127.0.0.1:0", "--log-level", "debug"}, args...)); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(fs, config.SectionKBS, "", func(string) string { return "" }); err != nil {
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
		done <- kbsServe(ctx, f, r.logs, func(url string, addrs map[string]string) {
			r.url, r.addrs = url, addrs
			close(ready)
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("kbs: %v\n%s", err, r.logs)
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

// kbsSecrets writes a random 32-byte secret as default/key/disk under a new directory.
func kbsSecrets(t *testing.T) (dir string, secret []byte) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "secrets")
	if err := os.MkdirAll(filepath.Join(dir, "default", "key"), 0o700); err != nil {
		t.Fatal(err)
	}
	secret = make([]byte, 32)
	_, _ = rand.Read(secret)
	if err := os.WriteFile(filepath.Join(dir, "default", "key", "disk"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, secret
}

// TestKBSMetricsAndLogs: every decision of the broker is counted by decision, reason and
// policy rule (never the requested resource name), /readyz reports the three checks, the
// access and audit lines share a request id, and neither the logs nor /metrics hold the token
// or the secret.
func TestKBSMetricsAndLogs(t *testing.T) {
	ctx := context.Background()
	// The broker follows the issuer's revocation stream, a long-lived request the issuer's
	// shutdown waits for: keep its grace short.
	srv := startServe(t, "--trust-any-ak", "--shutdown-timeout", "1s")
	secrets, secret := kbsSecrets(t)
	k := startKBS(t, "--issuer", srv.url, "--audience", "kbs", "--secrets", secrets)

	code, body, _ := get(t, k.url+"/readyz")
	if code != 200 || !strings.Contains(body, `"issuer_keys":"ok"`) || !strings.Contains(body, `"revocation_status":"ok"`) || !strings.Contains(body, `"secret_store":"ok"`) {
		t.Fatalf("/readyz %d %s", code, body)
	}
	if code, _, _ := get(t, k.url+"/kbs/v0/resource/default/key/disk"); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	dir := t.TempDir()
	tok, got := filepath.Join(dir, "token"), filepath.Join(dir, "got")
	fetch := func(res string) error {
		_, err := run(ctx, t, "attest", "--issuer", srv.url, "--kbs", k.url, "--audience", "kbs", "--tpm", "simulator",
			"--event-log", testenv.EventLogPath(t, testenv.DefaultLog), "--fetch", res, "--out", got, "--token", tok)
		return err
	}
	if err := fetch("default/key/disk"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, secret) {
		t.Fatal("fetched bytes differ from the secret")
	}
	if err := fetch("default/key/client-chosen-name"); err == nil {
		t.Fatal("a missing resource was released")
	}
	_, metricsText, _ := get(t, k.url+"/metrics")
	for _, want := range []string{
		`passport_kbs_releases_total{decision="release",reason="granted",rule="*/*/*"} 1`,
		`passport_kbs_releases_total{decision="refuse",reason="no_token",rule="none"} 1`,
		`passport_kbs_releases_total{decision="refuse",reason="not_found",rule="*/*/*"} 1`,
		`passport_http_request_duration_seconds_count{code="200",listener="public",route="GET /kbs/v0/resource/{repository}/{type}/{tag}"}`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metricsText, "client-chosen-name") {
		t.Error("/metrics holds a resource name chosen by the client")
	}
	raw, err := os.ReadFile(tok)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(raw))
	logs := k.logs.String()
	if !strings.Contains(logs, `"msg":"secret released"`) || !strings.Contains(logs, `"request_id"`) {
		t.Fatalf("no audit line with a request id in the logs:\n%s", logs)
	}
	for name, s := range map[string]string{
		"token": token, "token signature": token[strings.LastIndex(token, ".")+1:],
		"secret (raw)": string(secret), "secret (hex)": hex.EncodeToString(secret),
		"secret (base64)": base64.StdEncoding.EncodeToString(secret), "secret (base64url)": base64.RawURLEncoding.EncodeToString(secret),
	} {
		if strings.Contains(logs, s) {
			t.Errorf("the logs hold the %s", name)
		}
		if strings.Contains(metricsText, s) {
			t.Errorf("/metrics holds the %s", name)
		}
	}

	// The issuer going away makes the broker unready: revocation status cannot be established.
	_ = srv.stop()
	code, body, _ = get(t, k.url+"/readyz")
	if code != 503 || !strings.Contains(body, `"revocation_status":"failed"`) {
		t.Fatalf("/readyz without the issuer: %d %s", code, body)
	}
}

// TestKBSReadyzStore: /readyz fails while the Redis secret store is down and recovers when it
// is back.
func TestKBSReadyzStore(t *testing.T) {
	rs := &redisproc.Server{}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	srv := startServe(t, "--trust-any-ak")
	kek := filepath.Join(t.TempDir(), "kek")
	kb := make([]byte, 32)
	_, _ = rand.Read(kb)
	if err := os.WriteFile(kek, []byte(hex.EncodeToString(kb)), 0o600); err != nil {
		t.Fatal(err)
	}
	k := startKBS(t, "--issuer", srv.url, "--audience", "kbs", "--redis", rs.URL(), "--kek", kek)
	if code, body, _ := get(t, k.url+"/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s", code, body)
	}
	rs.Stop()
	if code, body, _ := get(t, k.url+"/readyz"); code != 503 || !strings.Contains(body, `"secret_store":"failed"`) {
		t.Fatalf("/readyz with Redis down: %d %s", code, body)
	}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, k.url+"/readyz"); code != 200 {
		t.Fatalf("/readyz after Redis came back: %d %s", code, body)
	}
}

// TestKBSTLS: the public and admin listeners serve HTTPS with their certificates, the public
// URL (what DPoP proofs name) is https, plain HTTP is refused, and the probes and metrics have
// their own listener.
func TestKBSTLS(t *testing.T) {
	p := newPKI(t)
	c, key := p.issue(t, "kbs", false)
	cert, keyFile := p.files(t, "kbs", c, key)
	ac, akey := p.issue(t, "kbs-admin", false)
	acert, akeyFile := p.files(t, "kbs-admin", ac, akey)
	cred := filepath.Join(t.TempDir(), "cred")
	if err := os.WriteFile(cred, []byte("an-admin-credential-of-32-bytes!"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, "--trust-any-ak")
	secrets, _ := kbsSecrets(t)
	k := startKBS(t, "--issuer", srv.url, "--audience", "kbs", "--secrets", secrets, "--tls-cert", cert, "--tls-key", keyFile,
		"--admin-addr", "127.0.0.1:0", "--admin-credential", cred, "--admin-tls-cert", acert, "--admin-tls-key", akeyFile,
		"--metrics-addr", "127.0.0.1:0")
	if !strings.HasPrefix(k.url, "https://127.0.0.1:") {
		t.Fatalf("public URL %s, want https", k.url)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	do := func(method, url, auth string) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader("x"))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.TLS == nil {
			t.Fatalf("%s answered without TLS", url)
		}
		return res.StatusCode
	}
	if code := do("GET", k.url+"/kbs/v0/resource/default/key/disk", ""); code != 401 {
		t.Fatalf("HTTPS without a token: %d", code)
	}
	admin := "https://" + k.addrs["admin"] + "/admin/v1/resource/default/key/new"
	if code := do("PUT", admin, "not-the-admin-credential-at-all"); code != 401 {
		t.Fatalf("admin with a wrong credential: %d", code)
	}
	if code := do("PUT", admin, "an-admin-credential-of-32-bytes!"); code/100 != 2 {
		t.Fatalf("admin put over TLS: %d", code)
	}
	if res, err := http.Get("http://" + k.addrs["public"] + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Fatalf("plain HTTP to the TLS listener: %d", res.StatusCode)
		}
	}
	m := "http://" + k.addrs["metrics"]
	if code, body, _ := get(t, m+"/readyz"); code != 200 {
		t.Fatalf("/readyz on the metrics listener: %d %s", code, body)
	}
	if code, body, _ := get(t, m+"/metrics"); code != 200 || !strings.Contains(body, `decision="refuse",reason="no_token"`) {
		t.Fatalf("/metrics on the metrics listener: %d", code)
	}
	if strings.Contains(k.logs.String(), "plain HTTP on a non-loopback") {
		t.Fatal("warned about a TLS admin listener")
	}
}

// TestWarnPlainAdmin: a plaintext admin listener is worth a warning unless it is on loopback.
func TestWarnPlainAdmin(t *testing.T) {
	for _, tc := range []struct {
		addr string
		tls  bool
		want bool
	}{
		{"0.0.0.0:9443", false, true},
		{":9443", false, true},
		{"10.0.0.5:9443", false, true},
		{"0.0.0.0:9443", true, false},
		{"127.0.0.1:9443", false, false},
		{"[::1]:9443", false, false},
		{"localhost:9443", false, false},
	} {
		var buf bytes.Buffer
		got := warnPlainAdmin(slog.New(slog.NewJSONHandler(&buf, nil)), tc.addr, tc.tls)
		if got != tc.want || (buf.Len() > 0) != tc.want {
			t.Errorf("warnPlainAdmin(%q, tls %v) = %v (log %q), want %v", tc.addr, tc.tls, got, buf.String(), tc.want)
		}
	}
}

// TestKBSFlagsAreTheConfigSchema: the kbs command has exactly config.KBS's flags (plus
// --config and --print-config), so config's deploy-file checks against config.KBS check the
// real command, and the shipped deploy/passport.yaml loads against the command itself.
func TestKBSFlagsAreTheConfigSchema(t *testing.T) {
	cmdFlags := map[string]bool{}
	cmd := newKBSCmd()
	cmd.Flags().VisitAll(func(f *pflag.Flag) { cmdFlags[f.Name] = true })
	k := config.DefaultKBS()
	fs := pflag.NewFlagSet("kbs", pflag.ContinueOnError)
	k.RegisterFlags(fs)
	want := map[string]bool{config.FlagConfig: true, config.FlagPrintConfig: true}
	fs.VisitAll(func(f *pflag.Flag) { want[f.Name] = true })
	for n := range cmdFlags {
		if !want[n] {
			t.Errorf("kbs flag --%s is not in config.KBS", n)
		}
	}
	for n := range want {
		if !cmdFlags[n] {
			t.Errorf("config.KBS key %s is not a kbs flag", n)
		}
	}
	if _, err := config.Load(cmd.Flags(), config.SectionKBS, filepath.Join("..", "..", "deploy", "passport.yaml"), func(string) string { return "" }); err != nil {
		t.Errorf("deploy/passport.yaml kbs section: %v", err)
	}
}
