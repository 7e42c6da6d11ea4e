package kbs_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/kbs"
)

func header(t *testing.T, jwe string) map[string]any {
	t.Helper()
	parts := strings.Split(jwe, ".")
	if len(parts) != 5 {
		t.Fatalf("not a compact JWE: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestEncryptTo: the JWE is compact, names the right alg and enc, carries the cnf thumbprint as
// kid and no zip, decrypts with the cnf private key and with no other key.
func TestEncryptTo(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		priv crypto.Signer
		alg  string
	}{
		{"P-256", ecKey(t, elliptic.P256()), "ECDH-ES+A256KW"},
		{"P-384", ecKey(t, elliptic.P384()), "ECDH-ES+A256KW"},
		{"P-521", ecKey(t, elliptic.P521()), "ECDH-ES+A256KW"},
		{"RSA-2048", rsaKey, "RSA-OAEP-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cnf := &jose.JSONWebKey{Key: tc.priv.Public()}
			jwe, err := kbs.EncryptTo(cnf, secret)
			if err != nil {
				t.Fatal(err)
			}
			h := header(t, jwe)
			tp, _ := cnf.Thumbprint(crypto.SHA256)
			if h["alg"] != tc.alg || h["enc"] != "A256GCM" || h["kid"] != base64.RawURLEncoding.EncodeToString(tp) {
				t.Fatalf("header %v", h)
			}
			if _, ok := h["zip"]; ok {
				t.Fatal("zip header present")
			}
			if strings.Contains(jwe, string(secret)) {
				t.Fatal("plaintext in the JWE")
			}
			obj, err := jose.ParseEncryptedCompact(jwe, []jose.KeyAlgorithm{jose.KeyAlgorithm(tc.alg)}, []jose.ContentEncryption{jose.A256GCM})
			if err != nil {
				t.Fatal(err)
			}
			got, err := obj.Decrypt(tc.priv)
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("decrypt: %v", err)
			}
			var other crypto.Signer = ecKey(t, elliptic.P256())
			if tc.alg == "RSA-OAEP-256" {
				other, _ = rsa.GenerateKey(rand.Reader, 2048)
			}
			if _, err := obj.Decrypt(other); err == nil {
				t.Fatal("another key decrypted it")
			}
			again, _ := kbs.EncryptTo(cnf, secret)
			if again == jwe {
				t.Fatal("two encryptions are identical: the content key or ephemeral key is reused")
			}
		})
	}
}

// TestEncryptToRefusesUnusableKeys: nothing is encrypted to a key that is missing, private,
// for signatures only, of a type or curve that cannot do ECDH-ES or RSA-OAEP, too short, or a
// point off its curve.
func TestEncryptToRefusesUnusableKeys(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec := ecKey(t, elliptic.P256())
	off := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).Set(ec.X), Y: new(big.Int).Add(ec.Y, big.NewInt(1))}
	p224 := ecKey(t, elliptic.P224())
	for name, k := range map[string]*jose.JSONWebKey{
		"nil":              nil,
		"no key":           {},
		"private EC key":   {Key: ec},
		"use sig":          {Key: ec.Public(), Use: "sig"},
		"Ed25519":          {Key: edPriv.Public()},
		"symmetric":        {Key: []byte("0123456789abcdef0123456789abcdef")},
		"RSA-1024":         {Key: short.Public()},
		"P-224":            {Key: p224.Public()},
		"point off P-256":  {Key: off},
		"private RSA key":  {Key: short},
		"Ed25519 private":  {Key: edPriv},
		"unsupported type": {Key: "not a key"},
	} {
		if _, err := kbs.EncryptTo(k, []byte("secret")); !errors.Is(err, kbs.ErrCNF) {
			t.Errorf("%s: err %v, want ErrCNF", name, err)
		}
	}
}

// TestOffCurveJWKRefusedAtParse: a cnf JWK whose point is not on its declared curve never
// becomes a key (go-jose checks the point when it parses the JWK), so a token carrying one
// fails as malformed (TestRefusals "cnf off its curve").
func TestOffCurveJWKRefusedAtParse(t *testing.T) {
	ec := ecKey(t, elliptic.P256())
	good, err := json.Marshal(jose.JSONWebKey{Key: ec.Public()})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	_ = json.Unmarshal(good, &m)
	x, _ := base64.RawURLEncoding.DecodeString(m["x"])
	x[0] ^= 0x80
	m["x"] = base64.RawURLEncoding.EncodeToString(x)
	bad, _ := json.Marshal(m)
	var k jose.JSONWebKey
	if err := json.Unmarshal(bad, &k); err == nil || !strings.Contains(err.Error(), "not on declared curve") {
		t.Fatalf("off-curve JWK parsed: %v", err)
	}
	// The same point declared on another curve is refused too.
	m["x"] = base64.RawURLEncoding.EncodeToString(append(make([]byte, 0), x...))
	m["crv"] = "P-384"
	bad, _ = json.Marshal(m)
	if err := json.Unmarshal(bad, &k); err == nil {
		t.Fatal("a P-256 point declared as P-384 parsed")
	}
}

// TestJWEDecryptsWithJwcrypto: Debian's python3-jwcrypto (an independent JOSE implementation)
// decrypts the broker's JWE with the cnf private key. CI installs python3-jwcrypto; this test
// fails, never skips, when it is missing.
func TestJWEDecryptsWithJwcrypto(t *testing.T) {
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import jwcrypto.jwe, jwcrypto.jwk").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import jwcrypto (apt-get install python3-jwcrypto): %v\n%s", py, err, out)
	}
	const script = `
import json, sys
from jwcrypto import jwe, jwk
key = jwk.JWK.from_json(open(sys.argv[1]).read())
tok = jwe.JWE()
tok.deserialize(open(sys.argv[2]).read().strip(), key=key)
hdr = json.loads(tok.objects["protected"])
assert "zip" not in hdr, hdr
sys.stdout.write(json.dumps({"alg": hdr["alg"], "enc": hdr["enc"], "payload": tok.payload.hex()}))
`
	rsaKey, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	for _, tc := range []struct {
		name string
		priv crypto.Signer
		alg  string
	}{
		{"P-256", ecKey(t, elliptic.P256()), "ECDH-ES+A256KW"},
		{"P-384", ecKey(t, elliptic.P384()), "ECDH-ES+A256KW"},
		{"P-521", ecKey(t, elliptic.P521()), "ECDH-ES+A256KW"},
		{"RSA-3072", rsaKey, "RSA-OAEP-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jwe, err := kbs.EncryptTo(&jose.JSONWebKey{Key: tc.priv.Public()}, secret)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			privJSON, err := json.Marshal(jose.JSONWebKey{Key: tc.priv})
			if err != nil {
				t.Fatal(err)
			}
			keyFile, jweFile := filepath.Join(dir, "key.jwk"), filepath.Join(dir, "secret.jwe")
			if err := os.WriteFile(keyFile, privJSON, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(jweFile, []byte(jwe), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(py, "-c", script, keyFile, jweFile).Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("jwcrypto: %v\n%s", err, ee.Stderr)
				}
				t.Fatal(err)
			}
			var res struct{ Alg, Enc, Payload string }
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if res.Alg != tc.alg || res.Enc != "A256GCM" {
				t.Fatalf("jwcrypto saw alg %s enc %s", res.Alg, res.Enc)
			}
			if res.Payload != hexs(secret) {
				t.Fatal("jwcrypto decrypted another payload")
			}
		})
	}
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func hexs(b []byte) string {
	const d = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, d[c>>4], d[c&15])
	}
	return string(out)
}
