package issuer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/faketpm"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/store/memory"
	"github.com/passport-attest/passport/token"
)

// BenchmarkAttest is the issuer core's whole attestation (challenge, nonce consumption,
// evidence verification, clock check, policy, token signing) on the memory store, with a
// software-TPM quote over a 40-event log. x-verify+sign is its cost over evidence verification
// plus token signing alone, the goal being at most 1.5.
func BenchmarkAttest(b *testing.B) {
	tpm, err := faketpm.New(40)
	if err != nil {
		b.Fatal(err)
	}
	allow, _ := evidence.NewAllowlist(tpm.AKPublic())
	ev, _ := evidence.NewVerifier(evidence.Options{AKTrust: allow})
	key, _ := jwks.GenerateKey(jose.ES256)
	ring := jwks.NewKeyring(key)
	m := memory.New()
	is, err := issuer.New(issuer.Config{URL: "https://issuer.example", Keyring: ring, Nonces: m, Clocks: m, Evidence: ev, Policy: &policy.Reference{},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cnf := &jose.JSONWebKey{Key: &k.PublicKey}
	ctx := context.Background()
	next := func() ([]byte, error) {
		ch, err := is.Challenge(ctx)
		if err != nil {
			return nil, err
		}
		return ch.Nonce, nil
	}

	// The floor, measured first: verification of one piece of evidence plus signing one
	// token's claims, 300 times.
	n0, _ := next()
	req0, _ := tpm.Evidence(n0, cnf)
	claims := &token.Claims{Issuer: "https://issuer.example", Audience: token.Audience{"bench"}, ID: "0123456789abcdefghijkl", Profile: token.Profile}
	start := time.Now()
	for range 300 {
		if _, err := ev.Verify(ctx, req0.Nonce, req0.CNF, req0.Attestation); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ring.Sign(claims); err != nil {
			b.Fatal(err)
		}
	}
	floorNs := float64(time.Since(start).Nanoseconds()) / 300

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		n, err := next()
		if err != nil {
			b.Fatal(err)
		}
		req, err := tpm.Evidence(n, cnf) // the attester's side is not the issuer's cost
		if err != nil {
			b.Fatal(err)
		}
		req.Audience = "bench"
		b.StartTimer()
		if _, err := is.Attest(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/floorNs, "x-verify+sign")
}
