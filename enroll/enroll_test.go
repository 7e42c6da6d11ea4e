package enroll_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/enroll"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/forge"
	"github.com/passport-attest/passport/store/memory"
)

// recorder is a nonce store that remembers the size of every value stored. It is a plain
// NonceStore (not a store.NonceNamespacer), so the enroller keeps its sessions in it.
type recorder struct {
	store *memory.Store
	mu    sync.Mutex
	sizes []int
}

func (r *recorder) PutNonce(ctx context.Context, id, val []byte, ttl time.Duration) error {
	r.mu.Lock()
	r.sizes = append(r.sizes, len(val))
	r.mu.Unlock()
	return r.store.PutNonce(ctx, id, val, ttl)
}

func (r *recorder) ConsumeNonce(ctx context.Context, id []byte) ([]byte, error) {
	return r.store.ConsumeNonce(ctx, id)
}

// setup returns an Enroller pinning a software EK (an RSA-2048 restricted decryption key with
// the TCG default template's AES-128 CFB scheme), the recording session store, and a valid
// request: that EK and a software AK with a TPM AK's attributes.
func setup(t *testing.T) (*enroll.Enroller, *recorder, *api.EnrollRequest) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek := tpm2.Public{
		Type: tpm2.AlgRSA, NameAlg: tpm2.AlgSHA256,
		Attributes: tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin |
			tpm2.FlagAdminWithPolicy | tpm2.FlagRestricted | tpm2.FlagDecrypt,
		AuthPolicy: make([]byte, 32),
		RSAParameters: &tpm2.RSAParams{
			Symmetric:  &tpm2.SymScheme{Alg: tpm2.AlgAES, KeyBits: 128, Mode: tpm2.AlgCFB},
			KeyBits:    2048,
			ModulusRaw: k.N.Bytes(),
		},
	}
	ekPub, err := ek.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ak, err := forge.NewRSA()
	if err != nil {
		t.Fatal(err)
	}
	akPub, err := ak.Public.Encode()
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.New()
	allow, err := evidence.NewStoredAllowlist(mem)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{store: mem}
	e, err := enroll.New(enroll.Config{PinnedEKs: []crypto.PublicKey{&k.PublicKey}, Sessions: rec, Allowlist: allow})
	if err != nil {
		t.Fatal(err)
	}
	return e, rec, &api.EnrollRequest{EKPub: ekPub, AKPub: akPub}
}

// TestStartRefusesTrailingBytes: go-tpm's DecodePublic ignores bytes after the TPMT_PUBLIC,
// so an AK public area followed by ~60 KB of padding used to be accepted and stored with the
// enrollment for its whole TTL (3,000 requests grew Redis by ~190 MB). Trailing bytes after
// either area are refused, nothing is stored for them, and the session of a valid request
// holds the canonical AK area only.
func TestStartRefusesTrailingBytes(t *testing.T) {
	ctx := context.Background()
	e, rec, req := setup(t)
	if _, err := e.Start(ctx, req); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	if len(rec.sizes) != 1 || rec.sizes[0] > 2*enroll.MaxPublicArea {
		t.Fatalf("session sizes %v, want one of at most %d bytes", rec.sizes, 2*enroll.MaxPublicArea)
	}
	for name, mod := range map[string]func(r *api.EnrollRequest){
		"AK + 1 byte":  func(r *api.EnrollRequest) { r.AKPub = append(r.AKPub, 0) },
		"AK + 60 KB":   func(r *api.EnrollRequest) { r.AKPub = append(r.AKPub, make([]byte, 60<<10)...) },
		"EK + 1 byte":  func(r *api.EnrollRequest) { r.EKPub = append(r.EKPub, 0xff) },
		"AK truncated": func(r *api.EnrollRequest) { r.AKPub = r.AKPub[:len(r.AKPub)-1] },
	} {
		r := &api.EnrollRequest{EKPub: append([]byte(nil), req.EKPub...), AKPub: append([]byte(nil), req.AKPub...)}
		mod(r)
		if _, err := e.Start(ctx, r); !errors.Is(err, enroll.ErrBadRequest) {
			t.Errorf("%s: Start = %v, want ErrBadRequest", name, err)
		}
	}
	if len(rec.sizes) != 1 {
		t.Fatalf("%d sessions stored, want only the valid request's", len(rec.sizes))
	}
}

// TestStartRefusesOversizedArea: a canonical TPMT_PUBLIC can still be large (a TPM2B
// authPolicy or RSA modulus of any length up to 64 KiB decodes); one over MaxPublicArea is
// refused before anything is stored.
func TestStartRefusesOversizedArea(t *testing.T) {
	ctx := context.Background()
	e, rec, req := setup(t)
	ak, err := forge.NewECC()
	if err != nil {
		t.Fatal(err)
	}
	ak.Public.AuthPolicy = make([]byte, 60<<10)
	if req.AKPub, err = ak.Public.Encode(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Start(ctx, req); !errors.Is(err, enroll.ErrBadRequest) {
		t.Fatalf("AK area of %d bytes: Start = %v, want ErrBadRequest", len(req.AKPub), err)
	}
	if len(rec.sizes) != 0 {
		t.Fatalf("session stored for an oversized area: %v", rec.sizes)
	}
}
