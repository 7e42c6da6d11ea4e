package tlsreload_test

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
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/passport-attest/passport/tlsreload"
)

// issue makes a certificate for cn signed by parent (self-signed when parent is nil) and
// returns it with its key.
func issue(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func writePair(t *testing.T, dir string, c *x509.Certificate, k *ecdsa.PrivateKey, mod time.Time) (string, string) {
	t.Helper()
	cp, kp := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cp, kp} {
		if err := os.Chtimes(p, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	return cp, kp
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// serve runs a TLS listener with cfg that completes handshakes, and returns its address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// peerCN handshakes with addr and returns the server certificate's common name.
func peerCN(t *testing.T, addr string, client *tls.Config) (string, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, client)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Now()}
	c1, k1 := issue(t, "first", nil, nil, false)
	cp, kp := writePair(t, dir, c1, k1, time.Now().Add(-time.Minute))
	r, err := tlsreload.New(cp, kp, tlsreload.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsreload.ServerConfig(r, "")
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	insecure := &tls.Config{InsecureSkipVerify: true}
	if cn, err := peerCN(t, addr, insecure); err != nil || cn != "first" {
		t.Fatalf("served %q (%v), want first", cn, err)
	}

	c2, k2 := issue(t, "second", nil, nil, false)
	writePair(t, dir, c2, k2, time.Now())
	if cn, _ := peerCN(t, addr, insecure); cn != "first" {
		t.Fatalf("reloaded within the interval: %q", cn)
	}
	clk.Advance(tlsreload.DefaultInterval)
	if cn, err := peerCN(t, addr, insecure); err != nil || cn != "second" {
		t.Fatalf("served %q (%v) after the files changed, want second", cn, err)
	}

	// A broken rotation (key of another certificate) is refused: the last good pair stays.
	_, k3 := issue(t, "third", nil, nil, false)
	c3, _ := issue(t, "third", nil, nil, false)
	writePair(t, dir, c3, k3, time.Now().Add(time.Minute))
	clk.Advance(tlsreload.DefaultInterval)
	if cn, err := peerCN(t, addr, insecure); err != nil || cn != "second" {
		t.Fatalf("served %q (%v) after a bad rotation, want second", cn, err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload accepted a certificate with another certificate's key")
	}
}

func TestNewRefusesBadPair(t *testing.T) {
	dir := t.TempDir()
	c, _ := issue(t, "a", nil, nil, false)
	_, other := issue(t, "b", nil, nil, false)
	cp, kp := writePair(t, dir, c, other, time.Now())
	if _, err := tlsreload.New(cp, kp); err == nil {
		t.Fatal("mismatched pair accepted")
	}
	if _, err := tlsreload.New(filepath.Join(dir, "none.crt"), kp); err == nil {
		t.Fatal("missing file accepted")
	}
}

// TestClientCertificateRequired: with a client CA, a client without a certificate, or with
// one from another CA, cannot complete the handshake.
func TestClientCertificateRequired(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := issue(t, "admin CA", nil, nil, true)
	srvCert, srvKey := issue(t, "server", ca, caKey, false)
	cp, kp := writePair(t, dir, srvCert, srvKey, time.Now())
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := tlsreload.New(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsreload.ServerConfig(r, caFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	clientPair := func(c *x509.Certificate, k *ecdsa.PrivateKey) []tls.Certificate {
		return []tls.Certificate{{Certificate: [][]byte{c.Raw}, PrivateKey: k}}
	}
	good, goodKey := issue(t, "operator", ca, caKey, false)
	otherCA, otherKey := issue(t, "other CA", nil, nil, true)
	bad, badKey := issue(t, "intruder", otherCA, otherKey, false)

	// TLS 1.3 reports a refused client certificate on the first read, so read after dialling.
	try := func(certs []tls.Certificate) error {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: certs})
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		if err != nil && err.Error() == "EOF" {
			return nil // the server completed the handshake and closed
		}
		return err
	}
	if err := try(clientPair(good, goodKey)); err != nil {
		t.Fatalf("client certificate from the CA refused: %v", err)
	}
	if err := try(nil); err == nil {
		t.Fatal("client without a certificate accepted")
	}
	if err := try(clientPair(bad, badKey)); err == nil {
		t.Fatal("client certificate from another CA accepted")
	}
}
