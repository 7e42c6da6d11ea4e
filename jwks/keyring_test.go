package jwks_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/jwks"
)

func TestSignEveryAlgorithm(t *testing.T) {
	for _, alg := range jwks.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			k, err := jwks.GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			ring := jwks.NewKeyring(k)
			tok, kid, err := ring.Sign(map[string]any{"iss": "x"})
			if err != nil {
				t.Fatal(err)
			}
			if kid != k.KID() {
				t.Fatalf("signed with %s, want %s", kid, k.KID())
			}
			jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{alg})
			if err != nil {
				t.Fatal(err)
			}
			h := jws.Signatures[0].Protected
			if h.KeyID != kid || h.Algorithm != string(alg) || h.ExtraHeaders[jose.HeaderType] != "eat+jwt" || h.JSONWebKey != nil {
				t.Fatalf("header %+v", h)
			}
			if len(h.ExtraHeaders) != 1 {
				t.Fatalf("unexpected header parameters: %v", h.ExtraHeaders)
			}
			set := ring.PublicSet()
			keys := set.Key(kid)
			if len(keys) != 1 || !keys[0].IsPublic() {
				t.Fatalf("JWKS does not publish the public key under kid %s", kid)
			}
			if _, err := jws.Verify(keys[0]); err != nil {
				t.Fatalf("published key does not verify: %v", err)
			}
		})
	}
}

func TestJWKSIsPublicOnlyAndETagFollowsKeys(t *testing.T) {
	a, _ := jwks.GenerateKey(jose.ES256)
	b, _ := jwks.GenerateKey(jose.ES256)
	ring := jwks.NewKeyring(a)
	body, etag := ring.JWKSJSON()
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range raw.Keys {
		if _, ok := k["d"]; ok {
			t.Fatal("private key material in the JWKS")
		}
	}
	ring.SetKeys(a, []*jwks.Key{b})
	body2, etag2 := ring.JWKSJSON()
	if etag2 == etag || string(body2) == string(body) {
		t.Fatal("ETag or body unchanged after a key change")
	}
	if len(ring.PublicSet().Keys) != 2 {
		t.Fatal("next key not published")
	}
	_, kid, _ := ring.Sign("x")
	if kid != a.KID() {
		t.Fatal("signed with a published, non-active key")
	}
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, p := range []string{write("sec1.pem", "EC PRIVATE KEY", sec1), write("pkcs8.pem", "PRIVATE KEY", pkcs8)} {
		k, err := jwks.LoadKeyFile(p, "")
		if err != nil || k.Algorithm() != jose.ES256 {
			t.Fatalf("%s: %v", p, err)
		}
	}
	if _, err := jwks.LoadKeyFile(write("small.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)), ""); err == nil {
		t.Fatal("1024-bit RSA key accepted")
	}
	if _, err := jwks.LoadKeyFile(write("pkcs8b.pem", "PRIVATE KEY", pkcs8), jose.ES384); err == nil {
		t.Fatal("P-256 key accepted for ES384")
	}
	if _, err := jwks.LoadKeyFile(write("cert.pem", "CERTIFICATE", []byte{1}), ""); err == nil {
		t.Fatal("non-key PEM accepted")
	}
}
