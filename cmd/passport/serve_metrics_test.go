package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/metrics"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
)

// countingClocks is a memory store that counts the AdvanceClock calls made on it from
// outside (the store's own folded clock check in AllocateStatus does not go through it).
type countingClocks struct {
	*memory.Store
	advances atomic.Int32
}

func (c *countingClocks) AdvanceClock(ctx context.Context, ak string, ci store.ClockInfo, ttl time.Duration) error {
	c.advances.Add(1)
	return c.Store.AdvanceClock(ctx, ak, ci, ttl)
}

// TestAssembleIssuerKeepsFoldedClock: with the status store wrapped for metrics, the issuer
// still checks the TPM clock inside AllocateStatus (one store call) rather than in a
// separate AdvanceClock call.
func TestAssembleIssuerKeepsFoldedClock(t *testing.T) {
	ctx := context.Background()
	f := baseFlags()
	ring, keys, err := buildKeys(ctx, f, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	s := &countingClocks{Store: memory.New()}
	o := &ops{log: quiet, metrics: metrics.New()}
	is, err := assembleIssuer(f, "https://issuer.test", o, issuerStores{s, s, ring, keys}, &policy.Reference{})
	if err != nil {
		t.Fatal(err)
	}
	a := testenv.Attester(t, testenv.DefaultLog)
	ch, err := is.Challenge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, err := a.Evidence(ch.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	req.Audience = "fold-test"
	if _, err := is.Attest(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := s.advances.Load(); n != 0 {
		t.Fatalf("AdvanceClock called %d times outside AllocateStatus: the clock check is no longer folded", n)
	}
}
