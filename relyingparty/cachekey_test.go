package relyingparty

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"strings"
	"testing"
)

// TestCacheSignatureReuse: the cache is found by the signature segment, but a token that only
// shares a cached token's signature (its header and payload replaced) must never be accepted
// from the cache: it is verified in full and refused, and the genuine token stays cached.
func TestCacheSignatureReuse(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v, ks := newCountingVerifier(t, iss, clk, 0)
	ctx := context.Background()
	good := claimsAt(t, clk.Now())
	tok := iss.sign(t, good)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	// Same header and signature, a payload claiming another subject.
	evil := good
	evil.Subject = "someone-else"
	other := iss.forge(t, iss.header(), evil)
	dot := strings.LastIndexByte(tok, '.')
	forged := other[:strings.LastIndexByte(other, '.')] + tok[dot:]
	if keyOf(forged) != keyOf(tok) {
		t.Fatal("test setup: the forged token must share the cache key")
	}
	c, err := v.Verify(ctx, forged)
	if !errors.Is(err, ErrBadSignature) {
		t.Fatalf("token with a reused signature: claims %v, err %v; want ErrBadSignature", c, err)
	}
	if n := ks.n.Load(); n != 2 {
		t.Fatalf("key set calls %d, want 2 (the forgery must be verified in full)", n)
	}
	// The genuine token is still served from the cache.
	if got, err := v.Verify(ctx, tok); err != nil || got.Subject != good.Subject {
		t.Fatalf("genuine token after the forgery: %v, %v", got, err)
	}
	if n := ks.n.Load(); n != 2 {
		t.Fatalf("genuine token evicted by the forgery: %d key set calls", n)
	}
	// One byte changed anywhere in the header or payload is a miss too.
	for _, i := range []int{0, 10, dot / 2, dot - 1} {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if _, err := v.Verify(ctx, string(b)); err == nil {
			t.Fatalf("token changed at byte %d accepted", i)
		}
	}
}

// TestTokensEqual: the constant-time comparison agrees with crypto/subtle.ConstantTimeCompare
// for equal inputs and for inputs differing at any single position, across block boundaries.
func TestTokensEqual(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 31, 32, 33, 511, 512, 513, 1024, 2000, 16 << 10} {
		a := make([]byte, n)
		if _, err := rand.Read(a); err != nil {
			t.Fatal(err)
		}
		b := bytes.Clone(a)
		if !tokensEqual(string(a), string(b)) {
			t.Fatalf("n=%d: equal inputs reported different", n)
		}
		step := 1
		if n > 600 {
			step = 37
		}
		for i := 0; i < n; i += step {
			for _, bit := range []byte{1, 0x80} {
				b[i] ^= bit
				if tokensEqual(string(a), string(b)) || subtle.ConstantTimeCompare(a, b) == 1 {
					t.Fatalf("n=%d: difference at %d (bit %#x) not seen", n, i, bit)
				}
				b[i] ^= bit
			}
		}
		if n > 0 && tokensEqual(string(a), string(a[:n-1])) {
			t.Fatalf("n=%d: prefix reported equal", n)
		}
	}
}

// TestCacheKeyIsSignatureSegment: keyOf depends only on the text after the last dot.
func TestCacheKeyIsSignatureSegment(t *testing.T) {
	if keyOf("a.b.sig") != keyOf("x.y.sig") || keyOf("a.b.sig") == keyOf("a.b.sig2") {
		t.Fatal("keyOf must hash exactly the signature segment")
	}
}
