package evidence

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	pb "github.com/google/go-tpm-tools/proto/attest"

	"github.com/passport-attest/passport/store"
)

// AKRecord is what an Allowlist keeps about an AK pinned at run time (JSON, in a store.AKStore
// under the AK's thumbprint).
type AKRecord struct {
	// ID is the AK's RFC 7638 SHA-256 thumbprint, base64url: the token's sub.
	ID string `json:"id"`
	// Method is TrustAllowlist (pinned by an operator) or TrustEnrolled (EK enrollment).
	Method TrustMethod `json:"method"`
	// PublicKey is the AK's public key, PKIX DER.
	PublicKey []byte `json:"public_key"`
	// EK is the thumbprint of the endorsement key an enrolled AK was proven to share a TPM with.
	EK string `json:"ek,omitempty"`
	// Source says where the pin came from: "config" (the --ak-allowlist file), "admin", "enroll".
	Source string `json:"source"`
	// Added is when it was pinned (zero for "config").
	Added time.Time `json:"added,omitzero"`
}

// ekIndexPrefix marks the store entries that map an EK thumbprint to the one AK enrolled with
// it (so that a TPM holds at most one enrolled AK: a TPM owner cannot fill the store).
const ekIndexPrefix = "ek:"

// NewStoredAllowlist returns an allowlist trusting keys (in memory) and every AK recorded in s.
func NewStoredAllowlist(s store.AKStore, keys ...crypto.PublicKey) (*Allowlist, error) {
	if s == nil {
		return nil, errors.New("evidence: NewStoredAllowlist needs a store")
	}
	a, err := NewAllowlist(keys...)
	if err != nil {
		return nil, err
	}
	a.store, a.now = s, time.Now
	return a, nil
}

// Pin trusts k from now on, recording it with method, source and (for enrolled AKs) the EK
// thumbprint, and returns the record. Without a store the key is kept in memory. With an EK,
// the AK previously enrolled with the same EK, if another, is unpinned in the same atomic
// store step (store.AKStore.ReplaceEnrolled): one AK per TPM, even under concurrent Pins.
func (a *Allowlist) Pin(ctx context.Context, k crypto.PublicKey, method TrustMethod, source, ek string) (*AKRecord, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("evidence: pin AK: %w", err)
	}
	id, err := Thumbprint(k)
	if err != nil {
		return nil, err
	}
	if method != TrustAllowlist && method != TrustEnrolled {
		return nil, fmt.Errorf("evidence: pin AK: method %q (want %q or %q)", method, TrustAllowlist, TrustEnrolled)
	}
	if a.store == nil {
		if _, err := a.Add(k); err != nil {
			return nil, err
		}
		return &AKRecord{ID: id, Method: TrustAllowlist, PublicKey: der, Source: source}, nil
	}
	rec := &AKRecord{ID: id, Method: method, PublicKey: der, EK: ek, Source: source, Added: a.now().UTC()}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if ek != "" {
		// One atomic store step: two Pins racing for one EK (issuer replicas, an enrollment
		// lock that expired) cannot both find no previous AK and leave both trusted.
		if _, err := a.store.ReplaceEnrolled(ctx, ekIndexPrefix+ek, id, b); err != nil {
			return nil, fmt.Errorf("evidence: pin AK enrolled with EK %s: %w", ek, err)
		}
		return rec, nil
	}
	if err := a.store.PutAK(ctx, id, b); err != nil {
		return nil, fmt.Errorf("evidence: pin AK: %w", err)
	}
	return rec, nil
}

// Unpin stops trusting the AK with thumbprint id, in memory and in the store. It returns an
// error wrapping store.ErrAKUnknown when the AK was not pinned.
func (a *Allowlist) Unpin(ctx context.Context, id string) error {
	if strings.HasPrefix(id, ekIndexPrefix) {
		return fmt.Errorf("evidence: unpin: %w", store.ErrAKUnknown)
	}
	inMemory := a.Remove(id)
	if a.store == nil {
		if !inMemory {
			return fmt.Errorf("evidence: unpin: %w", store.ErrAKUnknown)
		}
		return nil
	}
	err := a.store.DeleteAK(ctx, id)
	if errors.Is(err, store.ErrAKUnknown) && inMemory {
		return nil
	}
	return err
}

// Lookup returns the record of the AK with thumbprint id (in-memory keys as source "config"),
// or an error wrapping store.ErrAKUnknown.
func (a *Allowlist) Lookup(ctx context.Context, id string) (*AKRecord, error) {
	a.mu.RLock()
	k, ok := a.keys[id]
	a.mu.RUnlock()
	if ok {
		return configRecord(id, k)
	}
	if a.store == nil || strings.HasPrefix(id, ekIndexPrefix) {
		return nil, fmt.Errorf("evidence: AK %s: %w", id, store.ErrAKUnknown)
	}
	b, err := a.store.GetAK(ctx, id)
	if err != nil {
		return nil, err
	}
	var rec AKRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.ID != id || (rec.Method != TrustAllowlist && rec.Method != TrustEnrolled) {
		return nil, fmt.Errorf("evidence: AK %s: malformed record in the store: %w", id, store.ErrUnavailable)
	}
	return &rec, nil
}

// EnrolledWith returns the record of the AK currently enrolled with the EK whose thumbprint is
// ek (the store's EK index, kept by Pin), or an error wrapping store.ErrAKUnknown when none is:
// no store, no enrollment with that EK, or its AK since unpinned.
func (a *Allowlist) EnrolledWith(ctx context.Context, ek string) (*AKRecord, error) {
	if a.store == nil || ek == "" {
		return nil, fmt.Errorf("evidence: EK %s: %w", ek, store.ErrAKUnknown)
	}
	id, err := a.store.GetAK(ctx, ekIndexPrefix+ek)
	if err != nil {
		return nil, err
	}
	rec, err := a.Lookup(ctx, string(id))
	if err != nil {
		return nil, err
	}
	if rec.EK != ek {
		return nil, fmt.Errorf("evidence: EK %s: its AK %s is no longer enrolled with it: %w", ek, rec.ID, store.ErrAKUnknown)
	}
	return rec, nil
}

// List returns every pinned AK, in-memory keys first, each group sorted by id.
func (a *Allowlist) List(ctx context.Context) ([]AKRecord, error) {
	var out []AKRecord
	a.mu.RLock()
	for id, k := range a.keys {
		if r, err := configRecord(id, k); err == nil {
			out = append(out, *r)
		}
	}
	a.mu.RUnlock()
	slices.SortFunc(out, func(x, y AKRecord) int { return strings.Compare(x.ID, y.ID) })
	if a.store == nil {
		return out, nil
	}
	m, err := a.store.ListAKs(ctx)
	if err != nil {
		return nil, err
	}
	var stored []AKRecord
	for id, b := range m {
		var rec AKRecord
		if strings.HasPrefix(id, ekIndexPrefix) || json.Unmarshal(b, &rec) != nil {
			continue
		}
		stored = append(stored, rec)
	}
	slices.SortFunc(stored, func(x, y AKRecord) int { return strings.Compare(x.ID, y.ID) })
	return append(out, stored...), nil
}

func configRecord(id string, k crypto.PublicKey) (*AKRecord, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, err
	}
	return &AKRecord{ID: id, Method: TrustAllowlist, PublicKey: der, Source: "config"}, nil
}

// AnyOf trusts an AK when one of its methods does: they are asked in order (put the cheap
// ones, an Allowlist, before a CertChain) and the first that trusts names the TrustMethod.
// When none trusts, the error wraps ErrUntrustedAK and every method's reason (and
// store.ErrUnavailable if a store could not answer, so the issuer fails closed with 503).
type AnyOf []AKTrust

// TrustAK implements AKTrust.
func (m AnyOf) TrustAK(ctx context.Context, ak crypto.PublicKey, att *pb.Attestation) (TrustMethod, error) {
	id, err := Thumbprint(ak)
	if err != nil {
		return "", err
	}
	return m.trustKnown(ctx, ak, id, att)
}

// trustKnown is TrustAK for an AK whose thumbprint id is already known.
func (m AnyOf) trustKnown(ctx context.Context, ak crypto.PublicKey, id string, att *pb.Attestation) (TrustMethod, error) {
	if len(m) == 0 {
		return "", fmt.Errorf("%w: no AK trust method configured", ErrUntrustedAK)
	}
	errs := make([]error, 0, len(m))
	for _, t := range m {
		method, err := trustAK(ctx, t, ak, id, att)
		if err == nil {
			return method, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("%w: %w", ErrUntrustedAK, errors.Join(errs...))
}

// knownIDTrust is implemented by this package's trust methods, which key on the AK's RFC 7638
// thumbprint: Verify has computed it once (and cached it per AK), so they need not again.
type knownIDTrust interface {
	trustKnown(ctx context.Context, ak crypto.PublicKey, id string, att *pb.Attestation) (TrustMethod, error)
}

// trustAK asks t about ak, passing its thumbprint id to the methods that can use it.
func trustAK(ctx context.Context, t AKTrust, ak crypto.PublicKey, id string, att *pb.Attestation) (TrustMethod, error) {
	if k, ok := t.(knownIDTrust); ok {
		return k.trustKnown(ctx, ak, id, att)
	}
	return t.TrustAK(ctx, ak, att)
}
