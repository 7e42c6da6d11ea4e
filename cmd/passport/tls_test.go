package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type pki struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	dir   string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.ca, p.caKey = p.issue(t, "test CA", true)
	return p
}

// issue makes a certificate for cn (127.0.0.1 and localhost) signed by the CA (self-signed for
// the CA itself).
func (p *pki) issue(t *testing.T, cn string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	parent, parentKey := p.ca, p.caKey
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// files writes a certificate and key as PEM files and returns their paths.
func (p *pki) files(t *testing.T, name string, c *x509.Certificate, k *ecdsa.PrivateKey) (string, string) {
	t.Helper()
	kb, _ := x509.MarshalPKCS8PrivateKey(k)
	cp, kp := filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	if err := os.WriteFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cp, kp
}

// TestServeTLSAndAdmin: the public listener speaks HTTPS with its certificate and names itself
// https in discovery; the admin listener wants a client certificate from the admin CA and the
// bearer credential, and refuses a request lacking either.
func TestServeTLSAndAdmin(t *testing.T) {
	p := newPKI(t)
	srvCert, srvKey := p.issue(t, "issuer", false)
	cert, key := p.files(t, "issuer", srvCert, srvKey)
	opCert, opKey := p.issue(t, "operator", false)
	caFile := filepath.Join(p.dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cred := filepath.Join(p.dir, "admin.cred")
	if err := os.WriteFile(cred, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, "--trust-any-ak", "--tls-cert", cert, "--tls-key", key,
		"--admin-addr", "127.0.0.1:0", "--admin-credential", cred,
		"--admin-tls-cert", cert, "--admin-tls-key", key, "--admin-client-ca", caFile)
	if !strings.HasPrefix(srv.url, "https://127.0.0.1:") {
		t.Fatalf("issuer URL %s, want https", srv.url)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	withCert := func(certs []tls.Certificate) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	resp, err := withCert(nil).Get(srv.url + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("discovery over TLS: %d", resp.StatusCode)
	}
	// Plain HTTP gets net/http's refusal, never the API.
	if resp, err := http.Get("http://" + srv.addrs["public"] + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP on the TLS listener: %d, want 400", resp.StatusCode)
		}
	}

	admin := "https://" + srv.addrs["admin"] + "/admin/v1/health"
	operator := []tls.Certificate{{Certificate: [][]byte{opCert.Raw}, PrivateKey: opKey}}
	do := func(c *http.Client, bearer string) (int, error) {
		req, _ := http.NewRequest("GET", admin, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := do(withCert(operator), "0123456789abcdef0123456789abcdef"); err != nil || code != http.StatusOK {
		t.Fatalf("admin with certificate and credential: %d %v", code, err)
	}
	if code, err := do(withCert(operator), ""); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("admin without credential: %d %v, want 401", code, err)
	}
	if code, err := do(withCert(operator), "wrong-credential-wrong-credential"); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("admin with a wrong credential: %d %v, want 401", code, err)
	}
	if _, err := do(withCert(nil), "0123456789abcdef0123456789abcdef"); err == nil {
		t.Fatal("admin answered a client without a certificate")
	}
}
