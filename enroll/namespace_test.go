package enroll

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testredis"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
	redisstore "github.com/passport-attest/passport/store/redis"
)

// TestSessionsApartFromNonces: given the issuer's nonce store (memory or Redis), the enroller
// keeps its sessions and per-EK locks in a namespace of their own, so that the store's own
// ConsumeNonce (what an attest request calls with a value of its choosing) reaches none of
// them: the lock's key is computable from the EK, and deleting it let a second AK of one EK be
// pinned within the re-enrollment interval.
func TestSessionsApartFromNonces(t *testing.T) {
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	allow, err := evidence.NewAllowlist()
	if err != nil {
		t.Fatal(err)
	}
	client, prefix := testredis.Redis(t)
	for name, nonces := range map[string]store.NonceStore{
		"memory": memory.New(),
		"redis":  redisstore.New(client, prefix),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			e, err := New(Config{Sessions: nonces, Allowlist: allow, PinnedEKs: []crypto.PublicKey{&ek.PublicKey}})
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range [][]byte{ekLockKey("some-ek"), sessionKey(make([]byte, 32))} {
				if err := e.cfg.Sessions.PutNonce(ctx, key, []byte{1}, time.Minute); err != nil {
					t.Fatal(err)
				}
				if _, err := nonces.ConsumeNonce(ctx, key); !errors.Is(err, store.ErrNonceUnknown) {
					t.Fatalf("the nonce store consumed an enrollment entry: %v", err)
				}
				if _, err := e.cfg.Sessions.ConsumeNonce(ctx, key); err != nil {
					t.Fatalf("the entry is gone from the enrollment namespace: %v", err)
				}
			}
		})
	}
}
