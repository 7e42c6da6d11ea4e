package relyingparty

import (
	"context"
	"crypto"
	"errors"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// TestCacheDropsWithdrawnKey: a token verified once and cached is refused once the issuer's
// JWKS no longer has the key that verified it, although its exp is far away (a key withdrawn
// after compromise must stop the tokens minted with it, not only new ones).
func TestCacheDropsWithdrawnKey(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	iss := newSigner(t)
	srv := newJWKSServer(t, iss.ring)
	ks := srv.keySet(clk)
	v, counted := newCountingVerifierOn(t, iss, clk, ks)
	c := claimsAt(t, clk.Now())
	c.Expiry = clk.Now().Add(365 * 24 * time.Hour).Unix()
	tok := iss.sign(t, c)
	for range 2 {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := counted.n.Load(); n != 1 {
		t.Fatalf("key set asked %d times for two presentations: the cache is not in use", n)
	}
	iss.ring.SetKeys(newSigner(t).key, nil) // the JWKS now publishes another key only
	clk.Advance(DefaultRefetchInterval)
	if err := ks.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("cached token after its key was withdrawn: %v, want ErrUnknownKey", err)
	}
	if v.CacheLen() != 0 {
		t.Fatalf("the entry of a withdrawn key stayed cached")
	}
}

// TestKeyRefNamesKeyNotKid: a key set publishing the same kid over another key does not hold
// the key that verified a token under that kid.
func TestKeyRefNamesKeyNotKid(t *testing.T) {
	a, b := newSigner(t), newSigner(t)
	jwk := func(s *signer) jose.JSONWebKey {
		return jose.JSONWebKey{Key: &s.priv.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}
	}
	tp, err := (&jose.JSONWebKey{Key: &a.priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	ref := keyRef{kid: "k1", thumb: keyThumb(tp)}
	held := NewStaticKeySet(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk(a)}}).(keyHolder)
	other := NewStaticKeySet(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk(b)}}).(keyHolder)
	renamed := NewStaticKeySet(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &a.priv.PublicKey, KeyID: "k2"}}}).(keyHolder)
	switch {
	case !held.holds(ref):
		t.Fatal("the key set that has the key does not hold it")
	case other.holds(ref):
		t.Fatal("another key under the same kid holds the reference")
	case renamed.holds(ref):
		t.Fatal("the same key under another kid holds the reference")
	}
}

// TestCacheOffForForeignKeySet: with a KeySet from outside this package (which cannot say
// when a key is withdrawn) every presentation is verified in full.
func TestCacheOffForForeignKeySet(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	foreign := &countingKeySet{inner: &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&iss.priv.PublicKey}}}
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = foreignOnly{foreign} })
	tok := iss.sign(t, claimsAt(t, clk.Now()))
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := foreign.n.Load(); n != 3 {
		t.Fatalf("foreign key set asked %d times for 3 presentations, want 3 (no cache)", n)
	}
}

// foreignOnly hides every method but VerifySignature, as a KeySet from another package has.
type foreignOnly struct{ KeySet }

// newCountingVerifierOn is a verifier with the default cache on ks, counting key-set calls.
func newCountingVerifierOn(t *testing.T, iss *signer, clk *clock, ks KeySet) (*Verifier, *countingKeySet) {
	counted := &countingKeySet{inner: ks}
	return newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = counted }), counted
}
