package evidence_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testenv"
)

// gceAttestation loads one of the real GCE Confidential VM attestations shipped with
// go-tpm-tools (COS 85, AK certificate issued by Google's EK/AK CA).
func gceAttestation(t *testing.T, name string) *pb.Attestation {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.ModuleDir(t, "github.com/google/go-tpm-tools"), "internal/test/attestations", name))
	if err != nil {
		t.Fatal(err)
	}
	att := &pb.Attestation{}
	if err := proto.Unmarshal(b, att); err != nil {
		t.Fatal(err)
	}
	return att
}

func akOf(t *testing.T, att *pb.Attestation) crypto.PublicKey {
	t.Helper()
	p, err := tpm2.DecodePublic(att.GetAkPub())
	if err != nil {
		t.Fatal(err)
	}
	k, err := p.Key()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRealGCEAttestations verifies the real GCE attestations: the AK certificate chains to the
// GCE EK/AK roots through CertChain, and the quotes and event log then verify with that AK.
func TestRealGCEAttestations(t *testing.T) {
	for _, tc := range []struct {
		file  string
		nonce []byte
	}{{"gce-cos-85-no-nonce.pb", nil}, {"gce-cos-85-nonce9009.pb", []byte{0x90, 0x09}}} {
		t.Run(tc.file, func(t *testing.T) {
			att := gceAttestation(t, tc.file)
			ak := akOf(t, att)
			chain := &evidence.CertChain{Roots: server.GceEKRoots, Intermediates: server.GceEKIntermediates}
			m, err := chain.TrustAK(context.Background(), ak, att)
			if err != nil || m != evidence.TrustCertificate {
				t.Fatalf("real GCE AK certificate refused: %v", err)
			}
			ms, err := server.VerifyAttestation(att, server.VerifyOpts{Nonce: tc.nonce, TrustedAKs: []crypto.PublicKey{ak}, HashAlgo: tpm2.AlgSHA256})
			if err != nil {
				t.Fatalf("real GCE attestation does not verify with the chained AK: %v", err)
			}
			if len(ms.GetRawEvents()) == 0 {
				t.Fatal("no events parsed")
			}
		})
	}
}

func TestCertChainRefusals(t *testing.T) {
	att := gceAttestation(t, "gce-cos-85-nonce9009.pb")
	ak := akOf(t, att)
	ctx := context.Background()

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	chain := &evidence.CertChain{Roots: server.GceEKRoots, Intermediates: server.GceEKIntermediates}
	if _, err := chain.TrustAK(ctx, &other.PublicKey, att); !errors.Is(err, evidence.ErrAKCertKey) {
		t.Fatalf("AK certificate for another key: got %v, want ErrAKCertKey", err)
	}
	noInter := &evidence.CertChain{Roots: server.GceEKRoots}
	if _, err := noInter.TrustAK(ctx, ak, att); !errors.Is(err, evidence.ErrUntrustedAK) {
		t.Fatalf("chain without its intermediate: got %v, want ErrUntrustedAK", err)
	}
	stripped := proto.Clone(att).(*pb.Attestation)
	stripped.AkCert = nil
	if _, err := chain.TrustAK(ctx, ak, stripped); !errors.Is(err, evidence.ErrUntrustedAK) {
		t.Fatalf("no AK certificate: got %v", err)
	}
	none := &evidence.CertChain{}
	if _, err := none.TrustAK(ctx, ak, att); !errors.Is(err, evidence.ErrUntrustedAK) {
		t.Fatalf("no roots: got %v", err)
	}
}

// TestCertChainCache checks that a verified chain is cached (a cache hit does not depend on the
// roots any more) and that the cache expires.
func TestCertChainCache(t *testing.T) {
	att := gceAttestation(t, "gce-cos-85-nonce9009.pb")
	ak := akOf(t, att)
	now := time.Now()
	chain := &evidence.CertChain{Roots: server.GceEKRoots, Intermediates: server.GceEKIntermediates, CacheTTL: time.Minute, Now: func() time.Time { return now }}
	if _, err := chain.TrustAK(context.Background(), ak, att); err != nil {
		t.Fatal(err)
	}
	chain.Intermediates = nil // a fresh check would now fail
	if _, err := chain.TrustAK(context.Background(), ak, att); err != nil {
		t.Fatalf("cached chain re-checked: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := chain.TrustAK(context.Background(), ak, att); err == nil {
		t.Fatal("expired cache entry still trusted")
	}
}
