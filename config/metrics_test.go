package config_test

import (
	"strings"
	"testing"

	"github.com/passport-attest/passport/config"
)

// TestMetricsTLSValidate: metrics-tls-* need a metrics listener of their own and come as a
// pair of readable files, for serve and kbs alike.
func TestMetricsTLSValidate(t *testing.T) {
	cert := writeFile(t, "m.crt", "x")
	s := config.DefaultServe()
	s.TrustAnyAK = true
	k := config.DefaultKBS()
	k.Issuer, k.Audience, k.Secrets = "https://issuer.example", "kbs", t.TempDir()
	validators := map[string]func(config.TLS, string) error{
		"serve": func(m config.TLS, addr string) error { s.MetricsTLS, s.MetricsAddr = m, addr; return s.Validate() },
		"kbs":   func(m config.TLS, addr string) error { k.MetricsTLS, k.MetricsAddr = m, addr; return k.Validate() },
	}
	for name, validate := range validators {
		if err := validate(config.TLS{Cert: cert, Key: cert}, "127.0.0.1:9090"); err != nil {
			t.Errorf("%s: a metrics listener with a certificate: %v", name, err)
		}
		if err := validate(config.TLS{Cert: cert, Key: cert}, ""); err == nil || !strings.Contains(err.Error(), "metrics-addr: metrics-tls-* need a metrics listener") {
			t.Errorf("%s: metrics-tls without metrics-addr: %v", name, err)
		}
		if err := validate(config.TLS{Cert: cert}, "127.0.0.1:9090"); err == nil || !strings.Contains(err.Error(), "metrics-tls-cert, metrics-tls-key: give both or neither") {
			t.Errorf("%s: half a pair: %v", name, err)
		}
		if err := validate(config.TLS{Cert: cert, Key: cert + ".missing"}, "127.0.0.1:9090"); err == nil || !strings.Contains(err.Error(), "metrics-tls-key") {
			t.Errorf("%s: missing key file: %v", name, err)
		}
	}
}

// TestGOGCAndPprofValidate: gogc must be at least 1; pprof needs a metrics listener of its
// own, never the public one.
func TestGOGCAndPprofValidate(t *testing.T) {
	s := config.DefaultServe()
	s.TrustAnyAK = true
	if err := s.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if s.GOGC != config.DefaultGOGC {
		t.Fatalf("default gogc %d", s.GOGC)
	}
	for _, v := range []int{0, -1} {
		s := s
		s.GOGC = v
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "gogc") {
			t.Errorf("gogc %d: %v", v, err)
		}
	}
	p := s
	p.Pprof = true
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "pprof") {
		t.Errorf("pprof without metrics-addr: %v", err)
	}
	p.MetricsAddr = "127.0.0.1:0"
	if err := p.Validate(); err != nil {
		t.Errorf("pprof with metrics-addr: %v", err)
	}
}
