package relyingparty

import (
	"context"
	"testing"
)

// TestCacheObserver: every Verify that reaches the cache reports a hit or a miss, so metrics
// can compute the verified-token cache hit ratio.
func TestCacheObserver(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	var hits, misses int
	v := newTestVerifier(t, iss, clk, func(c *Config) {
		c.CacheObserver = func(hit bool) {
			if hit {
				hits++
			} else {
				misses++
			}
		}
	})
	ctx := context.Background()
	a, b := iss.sign(t, claimsAt(t, clk.Now())), iss.sign(t, claimsAt(t, clk.Now()))
	for _, tok := range []string{a, a, a, b, b} {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if hits != 3 || misses != 2 {
		t.Fatalf("hits %d misses %d, want 3 and 2", hits, misses)
	}
}
