package issuer_test

import (
	"context"
	"crypto"
	"log/slog"
	"testing"

	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/internal/testredis"
	"github.com/passport-attest/passport/issuer"
	redisstore "github.com/passport-attest/passport/store/redis"
)

// BenchmarkAttestRedis is the issuer core's Attest on the Redis backend (evidence verification
// on a real event log, policy, nonce, TPM clock and status entry, signing), and reports its
// Redis round trips per attestation ("redis-rt/op", counted by a go-redis hook; goal <= 2).
// Producing the evidence (a TPM quote) is not timed.
func BenchmarkAttestRedis(b *testing.B) {
	a := testenv.Attester(b, testenv.DefaultLog)
	c, prefix := testredis.Redis(b)
	hook := &roundTrips{}
	c.AddHook(hook)
	s := redisstore.New(c, prefix)
	srv := issuerWith(b, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: s, Clocks: s},
		func(c *issuer.Config) { c.Log = slog.New(slog.DiscardHandler) })
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	var trips int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ch, err := srv.Issuer.Challenge(ctx)
		if err != nil {
			b.Fatal(err)
		}
		req, err := a.Evidence(ch.Nonce)
		if err != nil {
			b.Fatal(err)
		}
		req.Audience = "bench"
		hook.reset()
		b.StartTimer()
		if _, err := srv.Issuer.Attest(ctx, req); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if i > 0 { // the first call also loads the script
			trips += hook.n.Load()
		}
		b.StartTimer()
	}
	if b.N > 1 {
		b.ReportMetric(float64(trips)/float64(b.N-1), "redis-rt/op")
	}
}
