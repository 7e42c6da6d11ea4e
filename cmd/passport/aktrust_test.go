package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"github.com/passport-attest/passport/config"
	"os"
	"path/filepath"
	"testing"

	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/store/memory"
)

// TestBuildAKTrust: --ak-roots/--ak-intermediates (the GCE CA files of go-tpm-tools'
// server/ca-certs) trust the real GCE AK by certificate, an --ak-allowlist file by pin, and the
// two combine (allowlist first).
func TestBuildAKTrust(t *testing.T) {
	tt := testenv.ModuleDir(t, "github.com/google/go-tpm-tools")
	ca := filepath.Join(tt, "server", "ca-certs")
	raw, err := os.ReadFile(filepath.Join(tt, "internal/test/attestations/gce-cos-85-nonce9009.pb"))
	if err != nil {
		t.Fatal(err)
	}
	var att pb.Attestation
	if err := proto.Unmarshal(raw, &att); err != nil {
		t.Fatal(err)
	}
	pub, _ := tpm2.DecodePublic(att.AkPub)
	ak, _ := pub.Key()
	der, _ := x509.MarshalPKIXPublicKey(ak)
	allowFile := filepath.Join(t.TempDir(), "allow.pem")
	os.WriteFile(allowFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	chain := config.AKTrust{
		Roots:         []string{filepath.Join(ca, "tpm_ek_root_1.cer"), filepath.Join(ca, "gcp_ek_ak_ca_root.crt")},
		Intermediates: []string{filepath.Join(ca, "tpm_ek_intermediate_2.crt"), filepath.Join(ca, "tpm_ek_intermediate_3.crt"), filepath.Join(ca, "gcp_ek_ak_ca_intermediate_v3.crt")},
	}
	for _, tc := range []struct {
		name  string
		f     serveFlags
		admin bool
		want  evidence.TrustMethod
	}{
		{"roots", sf(config.Serve{AK: chain}), false, evidence.TrustCertificate},
		{"allowlist file", sf(config.Serve{AKAllowlist: allowFile}), false, evidence.TrustAllowlist},
		{"allowlist and roots", sf(config.Serve{AKAllowlist: allowFile, AK: chain}), true, evidence.TrustAllowlist},
		{"admin allowlist and roots", sf(config.Serve{AK: chain}), true, evidence.TrustCertificate},
		{"roots without intermediates", sf(config.Serve{AK: config.AKTrust{Roots: chain.Roots}}), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trust, allow, err := buildAKTrust(tc.f, memory.New(), tc.admin)
			if err != nil {
				t.Fatal(err)
			}
			if tc.admin != (allow != nil) && tc.f.AKAllowlist == "" {
				t.Fatalf("allowlist %v with admin %v", allow, tc.admin)
			}
			m, err := trust.TrustAK(context.Background(), ak, &att)
			if tc.want == "" {
				if err == nil {
					t.Fatal("trusted without the intermediates")
				}
				return
			}
			if err != nil || m != tc.want {
				t.Fatalf("got %q %v, want %q", m, err, tc.want)
			}
		})
	}
	if _, _, err := buildAKTrust(serveFlags{}, memory.New(), false); err == nil {
		t.Fatal("no AK trust accepted")
	}
	if _, _, err := buildAKTrust(sf(config.Serve{AK: config.AKTrust{Intermediates: chain.Intermediates}}), memory.New(), false); err == nil {
		t.Fatal("--ak-intermediates without --ak-roots accepted")
	}
}

func sf(c config.Serve) serveFlags { return serveFlags{Serve: c} }
