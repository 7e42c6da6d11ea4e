package relyingparty

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/token"
)

const (
	testIssuer   = "https://issuer.example"
	testAudience = "https://rp.example"
)

// t0 is the tests' wall clock start.
var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// clock is an injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// signer is an ES256 key that the tests can use both through a jwks.Keyring and directly.
type signer struct {
	priv *ecdsa.PrivateKey
	key  *jwks.Key
	ring *jwks.Keyring
}

func newSigner(t testing.TB) *signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwks.NewKey(priv, jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{priv: priv, key: k, ring: jwks.NewKeyring(k)}
}

func (s *signer) kid() string { return s.key.KID() }

// sign signs claims (any JSON value) with the keyring: header alg, kid, typ eat+jwt.
func (s *signer) sign(t testing.TB, claims any) string {
	t.Helper()
	tok, _, err := s.ring.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forge builds an ES256 compact JWS with exactly the header given, signed with s's key.
func (s *signer) forge(t testing.TB, hdr map[string]any, claims any) string {
	t.Helper()
	hb, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	in := b64(hb) + "." + b64(pb)
	sum := sha256.Sum256([]byte(in))
	r, sv, err := ecdsa.Sign(rand.Reader, s.priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return in + "." + b64(sig)
}

func (s *signer) header() map[string]any {
	return map[string]any{"alg": "ES256", "kid": s.kid(), "typ": "eat+jwt"}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

var jtiSeq atomic.Uint64

// claimsAt returns a realistic, valid claim set issued at now for 5 minutes.
func claimsAt(t testing.TB, now time.Time) token.Claims {
	t.Helper()
	att, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sb := true
	pcrs := map[string]string{}
	for i := range 8 {
		d := sha256.Sum256([]byte{byte(i)})
		pcrs[fmt.Sprint(i)] = hex.EncodeToString(d[:])
	}
	return token.Claims{
		Issuer:       testIssuer,
		Subject:      "ak-thumbprint-" + fmt.Sprint(jtiSeq.Add(1)),
		Audience:     token.Audience{testAudience},
		IssuedAt:     now.Unix(),
		NotBefore:    now.Unix(),
		Expiry:       now.Add(5 * time.Minute).Unix(),
		ID:           fmt.Sprintf("jti-%d", jtiSeq.Add(1)),
		Profile:      token.Profile,
		Confirmation: &token.Confirmation{JWK: &jose.JSONWebKey{Key: att.Public(), Algorithm: "ES256"}},
		Status:       &token.Status{StatusList: token.StatusListRef{Index: 42, URI: testIssuer + "/v1/status-list"}},
		VerifierID:   token.VerifierID{Build: "passport 0.1.0", Developer: "passport-attest"},
		Submods: map[string]*token.Submod{token.SubmodTPM: {
			Status: token.TierAffirming,
			Vector: token.TrustworthinessVector{
				token.ClaimInstanceIdentity: token.ValueAffirming,
				token.ClaimHardware:         token.ValueAffirming,
				token.ClaimExecutables:      token.ValueApprovedBoot,
				token.ClaimConfiguration:    token.ValueAffirming,
			},
			PolicyID:     "policy:tpm/default",
			Measurements: &token.Measurements{Bank: "sha256", PCRs: pcrs, SecureBoot: &sb},
		}},
	}
}

// countingKeySet counts the calls that reach the wrapped key set.
type countingKeySet struct {
	inner KeySet
	n     atomic.Int64
}

func (c *countingKeySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	c.n.Add(1)
	return c.inner.VerifySignature(ctx, raw)
}

// holds forwards to the wrapped key set, so that the cache stays on (see Config.CacheSize).
func (c *countingKeySet) holds(ref keyRef) bool { return c.inner.(keyHolder).holds(ref) }

// newTestVerifier builds a verifier on s's public keys with an injected clock; mod edits the
// configuration first.
func newTestVerifier(t testing.TB, s *signer, clk *clock, mod func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{
		Issuer:   testIssuer,
		Audience: testAudience,
		KeySet:   NewStaticKeySet(s.ring.PublicSet()),
		Now:      clk.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
