package relyingparty_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

// A relying party verifies a passport token against the issuer's published keys. Here the
// issuer's keyring lives in the example; a real relying party uses NewRemoteKeySet on the
// issuer's jwks_uri (see Discover) or LoadJWKSFile when offline.
func ExampleNewVerifier() {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

	// Issuer side: a signing key and one token.
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		panic(err)
	}
	ring := jwks.NewKeyring(key)
	raw, _, err := ring.Sign(token.Claims{
		Issuer:    "https://issuer.example",
		Subject:   "ak-thumbprint",
		Audience:  token.Audience{"https://rp.example"},
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		Expiry:    now.Add(5 * time.Minute).Unix(),
		ID:        "token-1",
		Profile:   token.Profile,
		Submods:   map[string]*token.Submod{token.SubmodTPM: {Status: token.TierAffirming}},
	})
	if err != nil {
		panic(err)
	}

	// Relying-party side.
	v, err := relyingparty.NewVerifier(relyingparty.Config{
		Issuer:   "https://issuer.example",
		Audience: "https://rp.example",
		KeySet:   relyingparty.NewStaticKeySet(ring.PublicSet()),
		Now:      func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}
	claims, err := v.Verify(context.Background(), raw)
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.Subject, claims.OverallStatus())

	// Another relying party's verifier refuses the same token.
	other, _ := relyingparty.NewVerifier(relyingparty.Config{
		Issuer:   "https://issuer.example",
		Audience: "https://other-rp.example",
		KeySet:   relyingparty.NewStaticKeySet(ring.PublicSet()),
		Now:      func() time.Time { return now },
	})
	_, err = other.Verify(context.Background(), raw)
	fmt.Println(errors.Is(err, token.ErrAudience))
	// Output:
	// ak-thumbprint affirming
	// true
}
