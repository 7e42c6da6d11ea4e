package kbs_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/token"
)

// TestProofsCountPerAttester: the broker counts DPoP proofs against the token's sub (one
// attester's attestation key), not its cnf key: one attester with tokens bound to many keys
// takes at most its share of the replay cache, and another attester is still served.
func TestProofsCountPerAttester(t *testing.T) {
	f := newFixture(t, fixtureOpts{mod: func(c *kbs.Config) {
		c.Proofs = &dpop.Verifier{Now: c.Now, MaxReplayEntries: 10, MaxEntriesPerKey: 3}
	}})
	release := func(sub string) int { // a new token bound to a new key, and a proof by it
		k, err := ecdsa.GenerateKey(ellipticP256, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tok := f.token(t, func(c *token.Claims) {
			c.Subject = sub
			c.Confirmation = &token.Confirmation{JWK: &jose.JSONWebKey{Key: &k.PublicKey}}
		})
		return f.do(t, req{token: tok, proofKey: k}).status
	}
	accepted := 0
	for i := range 12 {
		switch st := release("ak-greedy"); st {
		case 200:
			accepted++
		case 401:
		default:
			t.Fatalf("greedy attester's request %d: %d", i, st)
		}
	}
	if accepted != 3 {
		t.Fatalf("one attester had %d proofs by 12 keys accepted, want its share 3", accepted)
	}
	for i := range 3 {
		if st := release("ak-other"); st != 200 {
			t.Fatalf("another attester's request %d: %d", i, st)
		}
	}
}
