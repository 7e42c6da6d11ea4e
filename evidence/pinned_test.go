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
	"sync"
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

// indexGate holds the answer to the first read of an EK index entry ("ek:...") until a second
// read has been answered:
// two Pins for one EK that read the index in a step of their own both read it before either
// writes (the race a stalled replica or an expired enrollment lock allows). Later reads pass.
type indexGate struct {
	*memory.Store
	mu       sync.Mutex
	arrivals int
	both     chan struct{}
}

func (g *indexGate) GetAK(ctx context.Context, id string) ([]byte, error) {
	v, err := g.Store.GetAK(ctx, id)
	if strings.HasPrefix(id, "ek:") {
		g.mu.Lock()
		g.arrivals++
		if g.arrivals == 2 {
			close(g.both)
		}
		g.mu.Unlock()
		<-g.both
	}
	return v, err
}

// open lets every read through (the Pins are done).
func (g *indexGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.arrivals < 2 {
		g.arrivals = 2
		close(g.both)
	}
}

// TestPinSameEKConcurrently: Pins of different AKs with one EK at once leave exactly one AK
// trusted, the one the EK index names: no AK stays pinned outside the index (never unpinned
// by a later enrollment). Concurrent goroutines on both backends, and two Pins interleaved at
// their index read.
func TestPinSameEKConcurrently(t *testing.T) {
	check := func(t *testing.T, s store.AKStore, keys []crypto.PublicKey) {
		t.Helper()
		ctx := context.Background()
		al, err := evidence.NewStoredAllowlist(s)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, k := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := al.Pin(ctx, k, evidence.TrustEnrolled, "enroll", "ek-A"); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if g, ok := s.(*indexGate); ok {
			g.open()
		}
		list, err := al.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		enrolled, err := al.EnrolledWith(ctx, "ek-A")
		if err != nil {
			t.Fatalf("EnrolledWith: %v", err)
		}
		if len(list) != 1 || list[0].ID != enrolled.ID {
			t.Fatalf("%d AKs pinned after %d concurrent enrollments with one EK (the index names %s): %+v", len(list), len(keys), enrolled.ID, list)
		}
	}
	keys := func(n int) []crypto.PublicKey {
		out := make([]crypto.PublicKey, n)
		for i := range out {
			out[i] = newKey(t)
		}
		return out
	}
	for name, s := range akStores(t) {
		t.Run(name, func(t *testing.T) { check(t, s, keys(20)) })
	}
	t.Run("interleaved", func(t *testing.T) {
		check(t, &indexGate{Store: memory.New(), both: make(chan struct{})}, keys(2))
	})
}
