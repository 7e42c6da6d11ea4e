package dpop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestReplayEntryFixedSize: the replay cache stores a fixed-size name per proof, whatever the
// length of the jti the client chose (up to what MaxProofSize allows), so a full cache's memory
// does not depend on what clients send.
func TestReplayEntryFixedSize(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cnf := &jose.JSONWebKey{Key: &k.PublicKey}
	target, _ := url.Parse("https://rp.example/resource")
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{EmbedJWK: true}).WithType(Type))
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Now: func() time.Time { return now }}
	for _, n := range []int{1, 22, 100, 5800} {
		b, _ := json.Marshal(Claims{ID: strings.Repeat("j", n), Method: "GET", URL: target.String(), IssuedAt: now.Unix()})
		jws, err := signer.Sign(b)
		if err != nil {
			t.Fatal(err)
		}
		proof, _ := jws.CompactSerialize()
		p, err := v.Check(proof, "GET", target, "", cnf)
		if err != nil {
			t.Fatalf("jti of %d bytes: %v", n, err)
		}
		if err := v.Remember(p); err != nil {
			t.Fatalf("jti of %d bytes: %v", n, err)
		}
	}
	if len(v.cache.byExp) != 4 {
		t.Fatalf("%d entries, want 4", len(v.cache.byExp))
	}
	for id := range v.cache.seen {
		if len(id) != sha256.Size {
			t.Fatalf("cache key of %d bytes, want %d", len(id), sha256.Size)
		}
	}
	for _, e := range v.cache.byExp {
		if len(e.id) != sha256.Size {
			t.Fatalf("entry named by %d bytes, want %d", len(e.id), sha256.Size)
		}
	}
}
