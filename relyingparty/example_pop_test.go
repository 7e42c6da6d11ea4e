package relyingparty_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

// A route that requires DPoP accepts the token only with a fresh proof signed by the token's
// cnf key over this very request; the same token as a bare bearer token is refused, and a
// proof is good once.
func ExampleRequirePoP() {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	key, _ := jwks.GenerateKey(jose.ES256)
	ring := jwks.NewKeyring(key)
	cnf, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // the attester's key
	tok, _, _ := ring.Sign(token.Claims{
		Issuer: "https://issuer.example", Subject: "ak", Audience: token.Audience{"https://rp.example"},
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(5 * time.Minute).Unix(), ID: "t1",
		Profile:      token.Profile,
		Confirmation: &token.Confirmation{JWK: &jose.JSONWebKey{Key: &cnf.PublicKey}},
		Submods:      map[string]*token.Submod{token.SubmodTPM: {Status: token.TierAffirming}},
	})
	v, _ := relyingparty.NewVerifier(relyingparty.Config{
		Issuer: "https://issuer.example", Audience: "https://rp.example",
		KeySet: relyingparty.NewStaticKeySet(ring.PublicSet()), Now: func() time.Time { return now },
	})
	// The relying party's own public URL: proofs must name it (never the request's Host).
	origin, _ := url.Parse("https://rp.example")
	h := relyingparty.Middleware(v, relyingparty.RequirePoP(relyingparty.PoPDPoP), relyingparty.WithExternalURL(origin))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "secret") }))

	const target = "https://rp.example/resource"
	u, _ := url.Parse(target)
	proof, _ := dpop.NewProof(cnf, http.MethodGet, u, tok, now)
	for _, c := range []struct{ name, auth, proof string }{
		{"bearer", "Bearer " + tok, ""},
		{"dpop", "DPoP " + tok, proof},
		{"dpop replayed", "DPoP " + tok, proof},
	} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("Authorization", c.auth)
		if c.proof != "" {
			r.Header.Set("DPoP", c.proof)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(c.name, w.Code)
	}
	// Output:
	// bearer 401
	// dpop 200
	// dpop replayed 401
}
