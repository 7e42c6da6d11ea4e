package relyingparty

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// failTransport records any attempt at network I/O.
type failTransport struct{ calls int }

func (f *failTransport) RoundTrip(*http.Request) (*http.Response, error) {
	f.calls++
	return nil, errors.New("network I/O attempted")
}

// TestLoadJWKSFileOffline: the file is read once; afterwards the key set needs neither the
// file nor the network, and an unknown kid is ErrUnknownKey.
func TestLoadJWKSFileOffline(t *testing.T) {
	clk := newClock()
	iss, other := newSigner(t), newSigner(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	b, _ := iss.ring.JWKSJSON()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ks, err := LoadJWKSFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ft := &failTransport{}
	saved := http.DefaultTransport
	http.DefaultTransport = ft
	t.Cleanup(func() { http.DefaultTransport = saved })

	v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = ks })
	ctx := context.Background()
	if _, err := v.Verify(ctx, iss.sign(t, claimsAt(t, clk.Now()))); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	_, err = v.Verify(ctx, other.sign(t, claimsAt(t, clk.Now())))
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid: err = %v, want ErrUnknownKey", err)
	}
	if errors.Is(err, ErrKeySetUnavailable) {
		t.Fatalf("a loaded file is not an unavailable key set")
	}
	if ft.calls != 0 {
		t.Fatalf("%d network requests from an offline key set", ft.calls)
	}
}

func TestLoadJWKSFileErrors(t *testing.T) {
	dir := t.TempDir()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	privOnly, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv, KeyID: "k", Algorithm: "ES256"}}})
	cases := map[string][]byte{
		"garbage":       []byte("<html>403 Forbidden</html>"),
		"no keys array": []byte(`{"issuer":"x"}`),
		"empty set":     []byte(`{"keys":[]}`),
		"private only":  privOnly,
		"symmetric":     []byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`),
		"unknown kty":   []byte(`{"keys":[{"kty":"XYZ","kid":"x"}]}`),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".json")
			if err := os.WriteFile(p, body, 0o600); err != nil {
				t.Fatal(err)
			}
			if ks, err := LoadJWKSFile(p); err == nil {
				t.Fatalf("LoadJWKSFile accepted %s: %v", name, ks)
			}
		})
	}
	if _, err := LoadJWKSFile(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestStaticKeySetSkipsBadMembers: a set mixing a valid key with junk keeps the valid one, and
// never keeps a private key.
func TestStaticKeySetSkipsBadMembers(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	pub, _ := json.Marshal(iss.key.Public())
	body := []byte(`{"keys":[{"kty":"XYZ","kid":"x"},` + string(pub) + `]}`)
	keys, err := parseJWKS(body)
	if err != nil {
		t.Fatal(err)
	}
	ks := NewStaticKeySet(jose.JSONWebKeySet{Keys: keys})
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = ks })
	if _, err := v.Verify(context.Background(), iss.sign(t, claimsAt(t, clk.Now()))); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	ix := newKeyIndex([]jose.JSONWebKey{{Key: iss.priv, KeyID: iss.kid(), Algorithm: "ES256"}})
	if ix.n != 0 {
		t.Fatalf("a private key was kept in the index")
	}
}

// TestKeySetDirect: the key sets refuse key-carrying headers and alg none on their own, when
// called outside a Verifier.
func TestKeySetDirect(t *testing.T) {
	iss, attacker := newSigner(t), newSigner(t)
	ks := NewStaticKeySet(iss.ring.PublicSet())
	ctx := context.Background()
	c := claimsAt(t, t0)
	if _, err := ks.VerifySignature(ctx, iss.sign(t, c)); err != nil {
		t.Fatalf("valid: %v", err)
	}
	h := iss.header()
	pub, _ := json.Marshal(attacker.key.Public())
	h["jwk"] = json.RawMessage(pub)
	if _, err := ks.VerifySignature(ctx, attacker.forge(t, h, c)); !errors.Is(err, ErrHeader) {
		t.Fatalf("jwk header: %v", err)
	}
	if _, err := ks.VerifySignature(ctx, attacker.forge(t, iss.header(), c)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged: %v", err)
	}
}
