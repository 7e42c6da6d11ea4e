package dpop_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/dpop"
)

func key(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// signRaw signs arbitrary claims with arbitrary header options, for malformed proofs.
func signRaw(t *testing.T, k *ecdsa.PrivateKey, alg jose.SignatureAlgorithm, typ string, embed bool, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{EmbedJWK: embed}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k := key(t)
	cnf := &jose.JSONWebKey{Key: &k.PublicKey}
	target := mustURL("https://rp.example/api/resource?x=1")
	const tok = "header.payload.signature"
	newV := func() *dpop.Verifier { return &dpop.Verifier{Now: func() time.Time { return now }} }

	proof, err := dpop.NewProof(k, "GET", target, tok, now)
	if err != nil {
		t.Fatal(err)
	}
	v := newV()
	if _, err := v.Verify(proof, "GET", mustURL("https://RP.example/api/resource?other=2"), tok, cnf); err != nil {
		t.Fatalf("valid proof refused: %v", err)
	}
	if _, err := v.Verify(proof, "GET", target, tok, cnf); !errors.Is(err, dpop.ErrReplay) {
		t.Fatalf("replayed proof: got %v, want ErrReplay", err)
	}

	thief := key(t)
	stolen, _ := dpop.NewProof(thief, "GET", target, tok, now)
	other, _ := dpop.NewProof(k, "GET", target, "another.token.value", now)
	stale, _ := dpop.NewProof(k, "GET", target, tok, now.Add(-5*time.Minute))
	future, _ := dpop.NewProof(k, "GET", target, tok, now.Add(5*time.Minute))
	post, _ := dpop.NewProof(k, "POST", target, tok, now)
	elsewhere, _ := dpop.NewProof(k, "GET", mustURL("https://evil.example/api/resource"), tok, now)
	good := dpop.Claims{ID: "x1", Method: "GET", URL: "https://rp.example/api/resource", IssuedAt: now.Unix(), ATHash: dpop.AccessTokenHash(tok)}
	noTyp := signRaw(t, k, jose.ES256, "", true, good)
	jwtTyp := signRaw(t, k, jose.ES256, "JWT", true, good)
	noJWK := signRaw(t, k, jose.ES256, dpop.Type, false, good)
	noJTI := good
	noJTI.ID = ""
	missing := signRaw(t, k, jose.ES256, dpop.Type, true, noJTI)
	// A proof whose header embeds the private key (jwk with "d") must be refused.
	privOpts := (&jose.SignerOptions{}).WithType(dpop.Type).WithHeader("jwk", jose.JSONWebKey{Key: k})
	ps, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, privOpts)
	b, _ := json.Marshal(good)
	pj, _ := ps.Sign(b)
	privJWK, _ := pj.CompactSerialize()
	// Tampered payload: valid header and signature of another payload.
	parts := strings.Split(proof, ".")
	tampered := parts[0] + "." + strings.Split(post, ".")[1] + "." + parts[2]

	for _, tc := range []struct {
		name  string
		proof string
		tok   string
		cnf   *jose.JSONWebKey
		want  error
	}{
		{"no proof", "", tok, cnf, dpop.ErrMissing},
		{"stolen token, thief's key", stolen, tok, cnf, dpop.ErrKey},
		{"proof for another token", other, tok, cnf, dpop.ErrBinding},
		{"stale iat", stale, tok, cnf, dpop.ErrStale},
		{"future iat", future, tok, cnf, dpop.ErrStale},
		{"wrong method", post, tok, cnf, dpop.ErrTarget},
		{"wrong URL", elsewhere, tok, cnf, dpop.ErrTarget},
		{"no typ", noTyp, tok, cnf, dpop.ErrInvalid},
		{"typ JWT", jwtTyp, tok, cnf, dpop.ErrInvalid},
		{"no jwk", noJWK, tok, cnf, dpop.ErrInvalid},
		{"no jti", missing, tok, cnf, dpop.ErrInvalid},
		{"private jwk", privJWK, tok, cnf, dpop.ErrInvalid},
		{"tampered payload", tampered, tok, cnf, dpop.ErrInvalid},
		{"oversized", strings.Repeat("a.", dpop.MaxProofSize), tok, cnf, dpop.ErrTooLarge},
		{"alg none", "eyJhbGciOiJub25lIiwidHlwIjoiZHBvcCtqd3QifQ.eyJqdGkiOiJ4In0.", tok, cnf, dpop.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newV().Verify(tc.proof, "GET", target, tc.tok, tc.cnf)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestReplayCacheBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k := key(t)
	target := mustURL("https://rp.example/")
	v := &dpop.Verifier{Now: func() time.Time { return now }, MaxReplayEntries: 2}
	for i := 0; i < 2; i++ {
		p, _ := dpop.NewProof(k, "GET", target, "", now)
		if _, err := v.Verify(p, "GET", target, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := dpop.NewProof(k, "GET", target, "", now)
	if _, err := v.Verify(p, "GET", target, "", nil); !errors.Is(err, dpop.ErrInvalid) {
		t.Fatalf("full replay cache accepted a proof: %v", err)
	}
	now = now.Add(2 * time.Minute) // entries expire; the cache frees itself
	p, _ = dpop.NewProof(k, "GET", target, "", now)
	if _, err := v.Verify(p, "GET", target, "", nil); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func ExampleNewProof() {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	target, _ := url.Parse("https://kbs.example/kbs/v0/resource/default/key/disk")
	proof, _ := dpop.NewProof(k, "GET", target, "the.access.token", time.Now())

	v := &dpop.Verifier{}
	_, err := v.Verify(proof, "GET", target, "the.access.token", &jose.JSONWebKey{Key: &k.PublicKey})
	fmt.Println("proof accepted:", err == nil)
	// Output: proof accepted: true
}
