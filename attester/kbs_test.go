package attester_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/token"
)

func ecdsaKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// seal builds a compact JWE with go-jose exactly as asked, to play a hostile or broken broker.
func seal(t *testing.T, enc jose.ContentEncryption, rcpt jose.Recipient, opts *jose.EncrypterOptions, plaintext []byte) string {
	t.Helper()
	e, err := jose.NewEncrypter(enc, rcpt, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := e.Encrypt(plaintext)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOpenSecret: the broker's own JWE opens; every answer that is compressed, password-based,
// direct, of another algorithm, with an extra header, for another key or not compact is
// refused before or instead of decrypting. Each refusal case decrypts fine without its check
// (go-jose itself accepts zip, for instance), so each would fail if the check were removed.
func TestOpenSecret(t *testing.T) {
	key := ecdsaKey(t)
	pub := &key.PublicKey
	secret := []byte("disk key: 32 bytes of randomness")
	good, err := kbs.EncryptTo(&jose.JSONWebKey{Key: pub}, secret)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := attester.OpenSecret(good, key); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the broker's JWE: %q %v", got, err)
	}
	noKid := seal(t, jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: pub}, nil, secret)
	if got, err := attester.OpenSecret(noKid, key); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("JWE without kid: %q %v", got, err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaGood, _ := kbs.EncryptTo(&jose.JSONWebKey{Key: &rsaKey.PublicKey}, secret)
	if got, err := attester.OpenSecret(rsaGood, rsaKey); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("RSA-OAEP-256 JWE: %v", err)
	}

	cek := make([]byte, 32)
	_, _ = rand.Read(cek)
	other := ecdsaKey(t)
	for name, tc := range map[string]struct {
		jwe string
		key crypto.Signer
	}{
		"zip (DEFLATE)": {jwe: seal(t, jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: pub},
			&jose.EncrypterOptions{Compression: jose.DEFLATE}, secret), key: key},
		"PBES2":                 {jwe: seal(t, jose.A256GCM, jose.Recipient{Algorithm: jose.PBES2_HS256_A128KW, Key: "password", PBES2Count: 1000}, nil, secret), key: key},
		"dir":                   {jwe: seal(t, jose.A256GCM, jose.Recipient{Algorithm: jose.DIRECT, Key: cek}, nil, secret), key: key},
		"ECDH-ES direct":        {jwe: seal(t, jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES, Key: pub}, nil, secret), key: key},
		"A128GCM":               {jwe: seal(t, jose.A128GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: pub}, nil, secret), key: key},
		"RSA-OAEP (SHA-1)":      {jwe: seal(t, jose.A256GCM, jose.Recipient{Algorithm: jose.RSA_OAEP, Key: &rsaKey.PublicKey}, nil, secret), key: rsaKey},
		"EC alg for an RSA key": {jwe: good, key: rsaKey},
		"extra header jku": {jwe: seal(t, jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: pub},
			(&jose.EncrypterOptions{}).WithHeader("jku", "https://evil.example/keys"), secret), key: key},
		"cty header": {jwe: seal(t, jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: pub},
			(&jose.EncrypterOptions{}).WithContentType("JWT"), secret), key: key},
		"kid of another key":       {jwe: seal(t, jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: pub, KeyID: "someone-else"}, nil, secret), key: key},
		"encrypted to another key": {jwe: seal(t, jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: &other.PublicKey}, nil, secret), key: key},
		"JSON serialization":       {jwe: `{"protected":"e30","ciphertext":"AA"}`, key: key},
		"four parts":               {jwe: good[:strings.LastIndexByte(good, '.')], key: key},
		"bad header encoding":      {jwe: "!!!" + good[strings.IndexByte(good, '.'):], key: key},
	} {
		if got, err := attester.OpenSecret(tc.jwe, tc.key); !errors.Is(err, attester.ErrBadSecret) {
			t.Errorf("%s: %q, %v; want ErrBadSecret", name, got, err)
		}
	}
}

// TestKBSClientFetch: the request carries the token with the DPoP scheme and a proof that a
// broker verifies against the token's cnf key; refusals come back as *BrokerError; redirects
// are not followed.
func TestKBSClientFetch(t *testing.T) {
	key := ecdsaKey(t)
	secret := []byte("released")
	const tok = "header.payload.signature"
	var redirected atomic.Bool
	var proofs dpop.Verifier
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kbs/v0/resource/default/key/disk", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "DPoP "+tok {
			http.Error(w, "no DPoP token", http.StatusUnauthorized)
			return
		}
		u := &url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path}
		if _, err := proofs.Verify(r.Header.Get("DPoP"), r.Method, u, tok, &jose.JSONWebKey{Key: &key.PublicKey}); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		jwe, _ := kbs.EncryptTo(&jose.JSONWebKey{Key: &key.PublicKey}, secret)
		w.Header().Set("Content-Type", kbs.MediaType)
		_, _ = w.Write([]byte(jwe))
	})
	mux.HandleFunc("GET /kbs/v0/resource/default/key/forbidden", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(403)
		_, _ = w.Write([]byte(`{"error":"insufficient_scope","error_description":"policy"}`))
	})
	mux.HandleFunc("GET /kbs/v0/resource/default/key/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { redirected.Store(true) })
	mux.HandleFunc("GET /kbs/v0/resource/default/key/huge", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(bytes.Repeat([]byte("a"), attester.MaxResponseSize+1))
	})
	mux.HandleFunc("GET /kbs/v0/resource/default/key/plain", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(secret) // a broker that forgot to encrypt
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := &attester.KBSClient{URL: srv.URL + "/"}
	ctx := context.Background()
	id := func(tag string) api.ResourceID { return api.ResourceID{Repository: "default", Type: "key", Tag: tag} }

	got, err := c.Fetch(ctx, id("disk"), tok, key)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Fetch: %q %v", got, err)
	}
	if _, err := c.Fetch(ctx, id("disk"), tok, ecdsaKey(t)); err == nil {
		t.Fatal("a proof by another key was accepted by the fake broker")
	}
	_, err = c.Fetch(ctx, id("forbidden"), tok, key)
	var be *attester.BrokerError
	var ae *api.Error
	if !errors.As(err, &be) || be.Status != 403 || !errors.As(err, &ae) || ae.Code != "insufficient_scope" {
		t.Fatalf("403: %v", err)
	}
	if !strings.Contains(err.Error(), "key broker answered 403") {
		t.Fatalf("error text: %v", err)
	}
	if _, err := c.Fetch(ctx, id("moved"), tok, key); !errors.As(err, &be) || be.Status != 302 || redirected.Load() {
		t.Fatalf("redirect: %v (followed: %v)", err, redirected.Load())
	}
	if _, err := c.Fetch(ctx, id("huge"), tok, key); !errors.Is(err, attester.ErrResponseTooLarge) {
		t.Fatalf("huge: %v", err)
	}
	if _, err := c.Fetch(ctx, id("plain"), tok, key); !errors.Is(err, attester.ErrBadSecret) {
		t.Fatalf("plaintext answer: %v", err)
	}
	if _, err := c.Fetch(ctx, api.ResourceID{Repository: "..", Type: "a", Tag: "b"}, tok, key); !errors.Is(err, api.ErrResourceName) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := (&attester.KBSClient{URL: "ftp://x"}).Fetch(ctx, id("disk"), tok, key); err == nil {
		t.Fatal("non-http URL accepted")
	}
}

// TestTokenFileReuse: SaveToken and LoadToken round-trip with mode 0600; Reusable accepts a
// fresh token bound to the key and refuses one near expiry or bound to another key.
func TestTokenFileReuse(t *testing.T) {
	signing, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	ring := jwks.NewKeyring(signing)
	key := ecdsaKey(t)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	mint := func(exp time.Time, cnf crypto.PublicKey) string {
		tok, _, err := ring.Sign(token.Claims{Issuer: "https://issuer.example", Audience: token.Audience{"kbs"}, ID: "j", Expiry: exp.Unix(),
			Confirmation: &token.Confirmation{JWK: &jose.JSONWebKey{Key: cnf}}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	path := filepath.Join(t.TempDir(), "token")
	tok := mint(now.Add(5*time.Minute), &key.PublicKey)
	if err := attester.SaveToken(path, tok, key); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".key"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, fi.Mode(), err)
		}
	}
	gotTok, gotKey, err := attester.LoadToken(path)
	if err != nil || gotTok != tok {
		t.Fatalf("LoadToken: %v", err)
	}
	if !gotKey.(*ecdsa.PrivateKey).Equal(key) {
		t.Fatal("LoadToken returned another key")
	}
	if err := attester.Reusable(gotTok, gotKey, now, 30*time.Second); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	for name, tc := range map[string]struct {
		tok string
		now time.Time
	}{
		"within the margin":    {tok, now.Add(4*time.Minute + 45*time.Second)},
		"expired":              {tok, now.Add(time.Hour)},
		"bound to another key": {mint(now.Add(5*time.Minute), &ecdsaKey(t).PublicKey), now},
		"not a JWS":            {"garbage", now},
	} {
		if err := attester.Reusable(tc.tok, key, tc.now, 30*time.Second); !errors.Is(err, attester.ErrTokenNotReusable) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, err := attester.LoadToken(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}
