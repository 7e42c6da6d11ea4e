package relyingparty

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/passport-attest/passport/token"
)

func newCountingVerifier(t *testing.T, iss *signer, clk *clock, size int) (*Verifier, *countingKeySet) {
	ks := &countingKeySet{inner: NewStaticKeySet(iss.ring.PublicSet())}
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = ks; c.CacheSize = size })
	return v, ks
}

// TestCacheHit: a repeated token skips the key set, and stops being accepted at exp + leeway.
func TestCacheHit(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v, ks := newCountingVerifier(t, iss, clk, 0)
	ctx := context.Background()
	c := claimsAt(t, clk.Now())
	tok := iss.sign(t, c)
	for i := range 5 {
		got, err := v.Verify(ctx, tok)
		if err != nil {
			t.Fatalf("presentation %d: %v", i, err)
		}
		if got.ID != c.ID {
			t.Fatalf("cached claims differ: %s", got.ID)
		}
	}
	if n := ks.n.Load(); n != 1 {
		t.Fatalf("key set called %d times for 5 presentations, want 1", n)
	}
	// Last second of validity: exp + leeway.
	clk.Advance(time.Unix(c.Expiry, 0).Add(DefaultLeeway).Sub(clk.Now()))
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("at exp+leeway: %v", err)
	}
	if n := ks.n.Load(); n != 1 {
		t.Fatalf("key set called at exp+leeway: %d", n)
	}
	clk.Advance(time.Second)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, token.ErrExpired) {
		t.Fatalf("past exp: err = %v, want token.ErrExpired", err)
	}
	if v.CacheLen() != 0 {
		t.Fatalf("expired token still cached")
	}
}

// TestCacheOtherAudience: a token cached by one verifier is nothing to another with different
// expectations (each verifier owns its cache), and the cached path re-checks the claims.
func TestCacheOtherAudience(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v, _ := newCountingVerifier(t, iss, clk, 0)
	tok := iss.sign(t, claimsAt(t, clk.Now()))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	v.expect.Audience = "https://another.example" // as if reconfigured: the hit path must notice
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, token.ErrAudience) {
		t.Fatalf("cache hit skipped the audience check: %v", err)
	}
}

// TestForget: Forget and ForgetIf drop the token, whose next presentation is verified in full.
func TestForget(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v, ks := newCountingVerifier(t, iss, clk, 0)
	ctx := context.Background()
	c1, c2 := claimsAt(t, clk.Now()), claimsAt(t, clk.Now())
	t1, t2 := iss.sign(t, c1), iss.sign(t, c2)
	for _, tok := range []string{t1, t2, t1, t2} {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := ks.n.Load(); n != 2 {
		t.Fatalf("key set calls = %d, want 2", n)
	}
	if n := v.Forget(c1.ID); n != 1 {
		t.Fatalf("Forget dropped %d entries, want 1", n)
	}
	if n := v.Forget(c1.ID); n != 0 {
		t.Fatalf("second Forget dropped %d", n)
	}
	if _, err := v.Verify(ctx, t1); err != nil {
		t.Fatal(err)
	}
	if n := ks.n.Load(); n != 3 {
		t.Fatalf("forgotten token not verified again: %d calls", n)
	}
	if n := v.ForgetIf(func(c *token.Claims) bool { return c.Subject == c2.Subject }); n != 1 {
		t.Fatalf("ForgetIf dropped %d, want 1", n)
	}
	if v.CacheLen() != 1 {
		t.Fatalf("cache len %d, want 1", v.CacheLen())
	}
	v.Purge()
	if v.CacheLen() != 0 {
		t.Fatal("Purge left entries")
	}
}

// TestCacheBounded: the cache never holds more than CacheSize tokens, evicting the least
// recently used; a negative size disables it.
func TestCacheBounded(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v, ks := newCountingVerifier(t, iss, clk, 2)
	ctx := context.Background()
	toks := []string{iss.sign(t, claimsAt(t, clk.Now())), iss.sign(t, claimsAt(t, clk.Now())), iss.sign(t, claimsAt(t, clk.Now()))}
	for _, i := range []int{0, 1, 0, 2} { // 1 is now the least recently used
		if _, err := v.Verify(ctx, toks[i]); err != nil {
			t.Fatal(err)
		}
	}
	if v.CacheLen() != 2 {
		t.Fatalf("cache len %d, want 2", v.CacheLen())
	}
	before := ks.n.Load()
	_, _ = v.Verify(ctx, toks[0])
	_, _ = v.Verify(ctx, toks[2])
	if ks.n.Load() != before {
		t.Fatal("recently used tokens were evicted")
	}
	_, _ = v.Verify(ctx, toks[1])
	if ks.n.Load() != before+1 {
		t.Fatal("least recently used token was not evicted")
	}

	off, ks2 := newCountingVerifier(t, iss, clk, -1)
	for range 3 {
		if _, err := off.Verify(ctx, toks[0]); err != nil {
			t.Fatal(err)
		}
	}
	if ks2.n.Load() != 3 || off.CacheLen() != 0 {
		t.Fatalf("disabled cache: %d key set calls, len %d", ks2.n.Load(), off.CacheLen())
	}
}

// TestCacheNeverStoresFailures: a refused token is not cached, even when only its
// requirements failed.
func TestCacheNeverStoresFailures(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.RequireCEL = `status == "never"` })
	tok := iss.sign(t, claimsAt(t, clk.Now()))
	for range 2 {
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrRequirement) {
			t.Fatalf("err = %v", err)
		}
	}
	if v.CacheLen() != 0 {
		t.Fatal("refused token cached")
	}
}
