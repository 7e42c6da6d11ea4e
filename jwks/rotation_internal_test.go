package jwks

import (
	"bytes"
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/passport-attest/passport/store/memory"
)

// TestSealedAtRest checks that the stored key set holds no private key in the clear, and that
// a tampered sealed key (or one moved to another kid) does not open.
func TestSealedAtRest(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	kek, _ := GenerateKEK()
	r, err := NewRotator(ctx, RotatorConfig{Keyring: NewKeyring(nil), Storage: st, KEK: kek, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := st.GetBlob(ctx, StorageName)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.keys) != 2 {
		t.Fatalf("%d keys opened, want 2", len(r.keys))
	}
	for kid, k := range r.keys {
		der, _ := x509.MarshalPKCS8PrivateKey(k.private)
		if bytes.Contains(raw, der) || bytes.Contains(raw, der[len(der)-32:]) {
			t.Fatalf("private key %s stored in the clear", kid)
		}
	}
	var kids []string
	for kid := range r.keys {
		kids = append(kids, kid)
	}
	sealed, _ := kek.seal(kids[0], []byte("secret"))
	if _, err := kek.open(kids[1], sealed); err == nil {
		t.Fatal("a key sealed for one kid opened for another")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := kek.open(kids[0], sealed); err == nil {
		t.Fatal("a tampered sealed key opened")
	}
}
