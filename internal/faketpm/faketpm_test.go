package faketpm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/go-jose/go-jose/v4"
	pb "github.com/google/go-tpm-tools/proto/attest"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/faketpm"
)

// TestEvidenceVerifies: the issuer's evidence verifier accepts the fake quote for its nonce and
// key when the AK is allowlisted, and refuses it otherwise: it goes through the real checks.
func TestEvidenceVerifies(t *testing.T) {
	tpm, err := faketpm.New(40)
	if err != nil {
		t.Fatal(err)
	}
	allow, _ := evidence.NewAllowlist(tpm.AKPublic())
	v, _ := evidence.NewVerifier(evidence.Options{AKTrust: allow})
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cnf := &jose.JSONWebKey{Key: &k.PublicKey}
	nonce := make([]byte, 32)
	_, _ = rand.Read(nonce)
	req, err := tpm.Evidence(nonce, cnf)
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.Verify(context.Background(), req.Nonce, req.CNF, req.Attestation)
	if err != nil {
		t.Fatalf("fake quote refused: %v", err)
	}
	if len(st.LoggedPCRs) != 8 || st.Clock.Clock == 0 {
		t.Fatalf("state: %+v", st)
	}
	other := make([]byte, 32)
	if _, err := v.Verify(context.Background(), other, req.CNF, req.Attestation); err == nil {
		t.Fatal("quote accepted for another nonce")
	}
	var att pb.Attestation
	_ = proto.Unmarshal(req.Attestation, &att)
	att.Quotes[0].RawSig[len(att.Quotes[0].RawSig)-3] ^= 1
	bad, _ := proto.Marshal(&att)
	if _, err := v.Verify(context.Background(), req.Nonce, req.CNF, bad); err == nil {
		t.Fatal("quote with a flipped signature bit accepted")
	}
	stranger, _ := faketpm.New(10)
	req2, _ := stranger.Evidence(nonce, cnf)
	if _, err := v.Verify(context.Background(), req2.Nonce, req2.CNF, req2.Attestation); err == nil {
		t.Fatal("AK outside the allowlist accepted")
	}
}

// BenchmarkVerify is the issuer's evidence verification of one fake quote with a short
// synthetic event log (the load harness's evidence).
func BenchmarkVerify(b *testing.B) {
	tpm, _ := faketpm.New(40)
	allow, _ := evidence.NewAllowlist(tpm.AKPublic())
	v, _ := evidence.NewVerifier(evidence.Options{AKTrust: allow})
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	nonce := make([]byte, 32)
	req, err := tpm.Evidence(nonce, &jose.JSONWebKey{Key: &k.PublicKey})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), req.Nonce, req.CNF, req.Attestation); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvidence is the software TPM's cost per quote (the harness's client side).
func BenchmarkEvidence(b *testing.B) {
	tpm, _ := faketpm.New(40)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cnf := &jose.JSONWebKey{Key: &k.PublicKey}
	nonce := make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tpm.Evidence(nonce, cnf); err != nil {
			b.Fatal(err)
		}
	}
}
