package issuer_test

import (
	"context"
	"crypto"
	"testing"
	"time"

	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/internal/testenv"
)

// BenchmarkIssuerAttest measures the issuer core's Attest (nonce consume, full appraisal, policy,
// token signing; memory store, no HTTP) on a real 111-event Ubuntu log, and in the same run the
// floor it is built on: go-tpm-tools' VerifyAttestation (SHA-256 pinned) plus one ES256 signature
// by the keyring. It reports x-floor = ours / floor. Quotes are made on the simulator outside the
// timer (a fresh nonce per attestation).
func BenchmarkIssuerAttest(b *testing.B) {
	a := testenv.Attester(b, testenv.DefaultLog)
	srv := testenv.Issuer(b, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}})
	ctx := context.Background()
	var ours, floor time.Duration
	b.ReportAllocs()
	b.ResetTimer()
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
		want, _ := api.ExtraData(ch.Nonce, req.CNF)
		var att pb.Attestation
		if err := proto.Unmarshal(req.Attestation, &att); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		t0 := time.Now()
		if _, err := srv.Issuer.Attest(ctx, req); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t0)

		b.StopTimer()
		t0 = time.Now()
		if _, err := server.VerifyAttestation(&att, server.VerifyOpts{Nonce: want, TrustedAKs: []crypto.PublicKey{a.AKPublic()}, HashAlgo: tpm2.AlgSHA256}); err != nil {
			b.Fatal(err)
		}
		if _, _, err := srv.Keyring.Sign(map[string]string{"jti": "x"}); err != nil {
			b.Fatal(err)
		}
		floor += time.Since(t0)
		b.StartTimer()
	}
	if floor > 0 {
		b.ReportMetric(float64(ours)/float64(floor), "x-floor")
		b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N), "floor-ns/op")
	}
}
