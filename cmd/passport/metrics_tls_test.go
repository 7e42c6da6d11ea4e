package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// checkMetricsTLS scrapes /metrics on the metrics listener at addr over HTTPS (trusting p's CA)
// and checks that plain HTTP gets net/http's refusal and no metrics.
func checkMetricsTLS(t *testing.T, p *pki, addr string) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := hc.Get("https://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("HTTPS scrape: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || !strings.Contains(string(body), "passport_http_requests_in_flight") {
		t.Fatalf("HTTPS scrape: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	if resp, err := hc.Get("https://" + addr + "/readyz"); err != nil {
		t.Fatalf("HTTPS readyz: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTPS readyz: %d", resp.StatusCode)
		}
	}
	// Plain HTTP gets net/http's 400 for an HTTP request on a TLS port, never the metrics.
	resp, err = http.Get("http://" + addr + "/metrics")
	if err != nil {
		return // refused outright
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "passport_") {
		t.Fatalf("plain HTTP on the TLS metrics listener: %d %.80q, want 400", resp.StatusCode, body)
	}
}

// TestServeMetricsTLS: --metrics-tls-cert/--metrics-tls-key put the serve metrics listener on
// HTTPS, while the public listener stays plain.
func TestServeMetricsTLS(t *testing.T) {
	p := newPKI(t)
	c, k := p.issue(t, "metrics", false)
	cert, key := p.files(t, "metrics", c, k)
	srv := startServe(t, "--trust-any-ak", "--metrics-addr", "127.0.0.1:0", "--metrics-tls-cert", cert, "--metrics-tls-key", key)
	if !strings.HasPrefix(srv.url, "http://") {
		t.Fatalf("issuer URL %s: the metrics certificate must not change the public listener", srv.url)
	}
	checkMetricsTLS(t, p, srv.addrs["metrics"])
}

// TestKBSMetricsTLS: the same for the kbs metrics listener.
func TestKBSMetricsTLS(t *testing.T) {
	p := newPKI(t)
	c, k := p.issue(t, "kbs-metrics", false)
	cert, key := p.files(t, "kbs-metrics", c, k)
	srv := startServe(t, "--trust-any-ak", "--shutdown-timeout", "1s")
	secrets, _ := kbsSecrets(t)
	kb := startKBS(t, "--issuer", srv.url, "--audience", "kbs", "--secrets", secrets,
		"--metrics-addr", "127.0.0.1:0", "--metrics-tls-cert", cert, "--metrics-tls-key", key)
	checkMetricsTLS(t, p, kb.addrs["metrics"])
}
