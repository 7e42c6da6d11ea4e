package evidence_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/server"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
)

func newKey(t *testing.T) crypto.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

func akStores(t *testing.T) map[string]store.AKStore {
	return map[string]store.AKStore{"memory": memory.New(), "redis": testenv.Redis(t)}
}

func TestStoredAllowlist(t *testing.T) {
	for name, s := range akStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			config, admin, enrolled1, enrolled2 := newKey(t), newKey(t), newKey(t), newKey(t)
			al, err := evidence.NewStoredAllowlist(s, config)
			if err != nil {
				t.Fatal(err)
			}
			trust := func(k crypto.PublicKey) (evidence.TrustMethod, error) { return al.TrustAK(ctx, k, nil) }
			if m, err := trust(config); err != nil || m != evidence.TrustAllowlist {
				t.Fatalf("config key: %v %v", m, err)
			}
			if _, err := trust(admin); !errors.Is(err, evidence.ErrUntrustedAK) {
				t.Fatalf("unpinned key: %v", err)
			}
			if _, err := al.Pin(ctx, admin, evidence.TrustAllowlist, "admin", ""); err != nil {
				t.Fatal(err)
			}
			if m, err := trust(admin); err != nil || m != evidence.TrustAllowlist {
				t.Fatalf("admin-pinned key: %v %v", m, err)
			}
			r1, err := al.Pin(ctx, enrolled1, evidence.TrustEnrolled, "enroll", "ek-A")
			if err != nil {
				t.Fatal(err)
			}
			if m, err := trust(enrolled1); err != nil || m != evidence.TrustEnrolled {
				t.Fatalf("enrolled key: %v %v", m, err)
			}
			// Enrolling a second AK with the same EK replaces the first: one AK per TPM.
			if _, err := al.Pin(ctx, enrolled2, evidence.TrustEnrolled, "enroll", "ek-A"); err != nil {
				t.Fatal(err)
			}
			if _, err := trust(enrolled1); err == nil {
				t.Fatal("the first AK enrolled with ek-A is still trusted")
			}
			list, err := al.List(ctx)
			if err != nil || len(list) != 3 || list[0].Source != "config" {
				t.Fatalf("List = %+v, %v; want config, admin, enrolled2", list, err)
			}
			for _, r := range list {
				if r.ID == r1.ID || strings.HasPrefix(r.ID, "ek:") {
					t.Fatalf("List shows %s", r.ID)
				}
			}
			adminID, _ := evidence.Thumbprint(admin)
			if err := al.Unpin(ctx, adminID); err != nil {
				t.Fatal(err)
			}
			if _, err := trust(admin); err == nil {
				t.Fatal("unpinned AK still trusted")
			}
			if err := al.Unpin(ctx, adminID); !errors.Is(err, store.ErrAKUnknown) {
				t.Fatalf("second unpin: %v", err)
			}
			if err := s.PutAK(ctx, adminID, []byte(`{"id":"someone-else","method":"any"}`)); err != nil {
				t.Fatal(err)
			}
			if _, err := trust(admin); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("malformed record: %v, want a fail-closed ErrUnavailable", err)
			}
		})
	}
}

func TestStoredAllowlistStoreDown(t *testing.T) {
	s := memory.New()
	al, _ := evidence.NewStoredAllowlist(s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := al.TrustAK(ctx, newKey(t), nil); !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, evidence.ErrUntrustedAK) {
		t.Fatalf("store down: %v, want ErrUntrustedAK and ErrUnavailable", err)
	}
}

// TestAnyOf: the first method that trusts names the trust; none trusting gives every reason.
func TestAnyOf(t *testing.T) {
	ctx := context.Background()
	att := gceAttestation(t, "gce-cos-85-nonce9009.pb")
	ak := akOf(t, att)
	chain := &evidence.CertChain{Roots: server.GceEKRoots, Intermediates: server.GceEKIntermediates}
	empty, _ := evidence.NewAllowlist()
	pinned, _ := evidence.NewAllowlist(ak)
	if m, err := (evidence.AnyOf{empty, chain}).TrustAK(ctx, ak, att); err != nil || m != evidence.TrustCertificate {
		t.Fatalf("allowlist miss, chain hit: %v %v", m, err)
	}
	if m, err := (evidence.AnyOf{pinned, chain}).TrustAK(ctx, ak, att); err != nil || m != evidence.TrustAllowlist {
		t.Fatalf("allowlist hit: %v %v", m, err)
	}
	_, err := (evidence.AnyOf{empty, &evidence.CertChain{Roots: server.GceEKRoots}}).TrustAK(ctx, ak, att)
	if !errors.Is(err, evidence.ErrUntrustedAK) || !strings.Contains(err.Error(), "not in the allowlist") || !strings.Contains(err.Error(), "chain") {
		t.Fatalf("no method trusts: %v", err)
	}
	if _, err := (evidence.AnyOf{}).TrustAK(ctx, ak, att); !errors.Is(err, evidence.ErrUntrustedAK) {
		t.Fatalf("empty AnyOf: %v", err)
	}
}

// TestCertChainFromFiles loads the GCE EK/AK roots and intermediates shipped as files in
// go-tpm-tools' server/ca-certs (what `passport serve --ak-roots/--ak-intermediates` reads) and
// trusts the real GCE AK with them.
func TestCertChainFromFiles(t *testing.T) {
	dir := filepath.Join(testenv.ModuleDir(t, "github.com/google/go-tpm-tools"), "server", "ca-certs")
	roots, err := evidence.LoadCertificates(filepath.Join(dir, "tpm_ek_root_1.cer"), filepath.Join(dir, "gcp_ek_ak_ca_root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	inter, err := evidence.LoadCertificates(filepath.Join(dir, "tpm_ek_intermediate_2.crt"), filepath.Join(dir, "tpm_ek_intermediate_3.crt"), filepath.Join(dir, "gcp_ek_ak_ca_intermediate_v3.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"gce-cos-85-no-nonce.pb", "gce-cos-85-nonce9009.pb"} {
		att := gceAttestation(t, f)
		chain := &evidence.CertChain{Roots: roots, Intermediates: inter}
		if m, err := chain.TrustAK(context.Background(), akOf(t, att), att); err != nil || m != evidence.TrustCertificate {
			t.Fatalf("%s: %v", f, err)
		}
	}
}
