package evidence

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	pb "github.com/google/go-tpm-tools/proto/attest"

	"github.com/passport-attest/passport/store"
)

// ErrUntrustedAK is the cause of a CheckAKTrust refusal.
var ErrUntrustedAK = errors.New("attestation key is not trusted")

// TrustMethod says how an AK came to be trusted; it feeds the hardware and instance-identity
// claims of the appraisal.
type TrustMethod string

// Trust methods.
const (
	TrustAny         TrustMethod = "any"         // --trust-any-ak: no real trust
	TrustAllowlist   TrustMethod = "allowlist"   // the AK public key is pinned
	TrustCertificate TrustMethod = "certificate" // the AK certificate chains to a configured root
	TrustEnrolled    TrustMethod = "enrolled"    // enrolled through the EK (MakeCredential)
)

// AnyAK trusts every attestation key. It exists for demos and tests (`passport serve
// --trust-any-ak`): with it, a token proves only that some TPM-shaped signer knew the nonce.
type AnyAK struct{}

// TrustAK always trusts, with method TrustAny.
func (AnyAK) TrustAK(context.Context, crypto.PublicKey, *pb.Attestation) (TrustMethod, error) {
	return TrustAny, nil
}

// Allowlist trusts the AKs whose public keys it holds, compared by RFC 7638 thumbprint. It is
// safe for concurrent use and can be changed at run time (the admin API adds and removes keys).
//
// Keys given at construction (the --ak-allowlist file) live in memory. An allowlist built with
// NewStoredAllowlist also trusts the AKs recorded in its store.AKStore (memory or Redis, shared
// by issuer replicas): the AKs pinned through the admin API and those enrolled through the EK
// (Pin, Unpin, Lookup and List in pinned.go).
type Allowlist struct {
	mu   sync.RWMutex
	keys map[string]crypto.PublicKey

	store store.AKStore    // nil: memory only
	now   func() time.Time // record timestamps
}

// NewAllowlist returns an allowlist holding keys.
func NewAllowlist(keys ...crypto.PublicKey) (*Allowlist, error) {
	a := &Allowlist{keys: map[string]crypto.PublicKey{}}
	for _, k := range keys {
		if _, err := a.Add(k); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Add trusts k and returns its thumbprint.
func (a *Allowlist) Add(k crypto.PublicKey) (string, error) {
	id, err := Thumbprint(k)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	a.keys[id] = k
	a.mu.Unlock()
	return id, nil
}

// Remove stops trusting the AK with thumbprint id; it reports whether it was present.
func (a *Allowlist) Remove(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.keys[id]
	delete(a.keys, id)
	return ok
}

// Len returns the number of trusted AKs.
func (a *Allowlist) Len() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return len(a.keys)
}

// TrustAK returns TrustAllowlist when ak is among the in-memory keys, else the method of its
// record in the store (TrustAllowlist or TrustEnrolled), and an error wrapping ErrUntrustedAK
// otherwise (wrapping store.ErrUnavailable too when the store cannot answer: fail closed).
func (a *Allowlist) TrustAK(ctx context.Context, ak crypto.PublicKey, att *pb.Attestation) (TrustMethod, error) {
	id, err := Thumbprint(ak)
	if err != nil {
		return "", err
	}
	return a.trustKnown(ctx, ak, id, att)
}

// trustKnown is TrustAK for an AK whose thumbprint id is already known.
func (a *Allowlist) trustKnown(ctx context.Context, _ crypto.PublicKey, id string, _ *pb.Attestation) (TrustMethod, error) {
	a.mu.RLock()
	_, ok := a.keys[id]
	a.mu.RUnlock()
	if ok {
		return TrustAllowlist, nil
	}
	if a.store != nil {
		rec, err := a.Lookup(ctx, id)
		switch {
		case err == nil:
			return rec.Method, nil
		case !errors.Is(err, store.ErrAKUnknown):
			return "", fmt.Errorf("%w: %w", ErrUntrustedAK, err)
		}
	}
	return "", fmt.Errorf("%w: AK %s is not in the allowlist", ErrUntrustedAK, id)
}

// LoadAllowlist reads AK public keys from path: either PEM "PUBLIC KEY" blocks (PKIX, any
// number) or a JWKS JSON document. An empty or unreadable file is an error: an allowlist that
// trusts nobody by accident is refused at start, not discovered at the first attestation.
func LoadAllowlist(path string) (*Allowlist, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("evidence: AK allowlist: %w", err)
	}
	keys, err := ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("evidence: AK allowlist %s: %w", path, err)
	}
	return NewAllowlist(keys...)
}

// ParsePublicKeys decodes PEM PUBLIC KEY blocks or a JWKS document into public keys.
func ParsePublicKeys(b []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	var set jose.JSONWebKeySet
	if json.Unmarshal(b, &set) == nil && len(set.Keys) > 0 {
		for i, k := range set.Keys {
			if !k.IsPublic() || !k.Valid() {
				return nil, fmt.Errorf("JWKS key %d is not a valid public key", i)
			}
			keys = append(keys, k.Key)
		}
		return keys, nil
	}
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("unexpected PEM block %q (want PUBLIC KEY)", block.Type)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM public key %d: %w", len(keys), err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no public keys found (want PEM PUBLIC KEY blocks or a JWKS)")
	}
	return keys, nil
}
