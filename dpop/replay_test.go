package dpop_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/dpop"
)

// BenchmarkReplayRetained reports the heap the replay cache retains per remembered proof
// (B/entry), for a jti as NewProof makes it (22 characters) and for the longest jti a proof
// within MaxProofSize carries. It measures; it asserts nothing (run with -benchtime 1x).
func BenchmarkReplayRetained(b *testing.B) {
	const n = 10_000
	for _, bc := range []struct {
		name string
		jti  int
	}{{"jti-22", 22}, {"jti-5800", 5800}} {
		b.Run(bc.name, func(b *testing.B) {
			now := time.Unix(1_800_000_000, 0)
			target := mustURL("https://rp.example/resource")
			k := key(b)
			cnf := &jose.JSONWebKey{Key: &k.PublicKey}
			var retained uint64
			for b.Loop() {
				v := &dpop.Verifier{Now: func() time.Time { return now }, MaxReplayEntries: n, MaxEntriesPerKey: n}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for i := range n {
					jti := fmt.Sprintf("%0*d", bc.jti, i)
					p := signRaw(b, k, jose.ES256, dpop.Type, true, dpop.Claims{ID: jti, Method: "GET", URL: target.String(), IssuedAt: now.Unix()})
					if len(p) > dpop.MaxProofSize {
						b.Fatalf("proof of %d bytes exceeds MaxProofSize", len(p))
					}
					if _, err := v.Verify(p, "GET", target, "", cnf); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				runtime.KeepAlive(v)
				retained += after.HeapAlloc - before.HeapAlloc
			}
			b.ReportMetric(float64(retained)/float64(b.N)/n, "B/entry")
		})
	}
}
