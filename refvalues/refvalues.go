// Package refvalues keeps reference values (RFC 9334 section 3.3: the measurements a verifier
// accepts) as named sets of digests, and the revocations of configurations: digests that must
// no longer be accepted, whatever set holds them.
//
// A Store is one interface with three backends that pass one conformance suite
// (refvaluestest): Memory (one process), File (a YAML file, rewritten atomically) and the Redis
// backend in package redisrefs (any number of issuer replicas). The policy package reads a
// Snapshot at load and whenever Version changes, so that evaluating a policy never does I/O.
//
// Digests are lowercase hexadecimal SHA-1, SHA-256, SHA-384 or SHA-512 values (40, 64, 96 or
// 128 hex characters): PCR values, or the digests of single event-log events (TCG PC Client
// Platform Firmware Profile section 10.2.2, TCG_PCR_EVENT2.digests). Set names are CEL
// identifiers in lower case ([a-z][a-z0-9_]*, at most 64 bytes) so that a rule can say
// refs.<name>.
package refvalues

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/passport-attest/passport/store"
)

// Sentinel errors; backends wrap them with %w and callers branch with errors.Is.
var (
	// ErrBadDigest means a digest is not 40, 64, 96 or 128 hexadecimal characters.
	ErrBadDigest = errors.New("refvalues: not a hex SHA-1, SHA-256, SHA-384 or SHA-512 digest")
	// ErrBadSet means a set name is not [a-z][a-z0-9_]* of at most 64 bytes.
	ErrBadSet = errors.New("refvalues: set name must match [a-z][a-z0-9_]* (at most 64 bytes)")
	// ErrBadRevocation means a revocation lacks its time or carries an over-long reason.
	ErrBadRevocation = errors.New("refvalues: bad revocation")
	// ErrUnavailable is store.ErrUnavailable: every backend failure (file system, network,
	// Redis error, malformed stored data) wraps it, so the issuer fails closed with 503.
	ErrUnavailable = store.ErrUnavailable
)

// MaxReasonSize bounds Revocation.Reason (bytes).
const MaxReasonSize = 512

// Revocation marks one digest as no longer acceptable: evidence that contains it is refused,
// and tokens already issued for it (their submods.tpm.measurements.reference_values carry the
// digest) are to be revoked.
type Revocation struct {
	// Digest is the revoked value, lowercase hex.
	Digest string `json:"digest" yaml:"digest"`
	// Reason says why, in operator words (e.g. a CVE identifier); may be empty.
	Reason string `json:"reason,omitempty" yaml:"reason,omitempty"`
	// RevokedAt is when the revocation was made (UTC, second precision or finer).
	RevokedAt time.Time `json:"revoked_at" yaml:"revoked_at"`
}

// Snapshot is the content of a Store at one instant.
type Snapshot struct {
	// Sets maps a set name to its digests, sorted and unique. Revoked digests stay listed here:
	// consumers subtract Revoked.
	Sets map[string][]string
	// Revoked maps a digest to its revocation.
	Revoked map[string]Revocation
}

// Digest returns the SHA-256 (lowercase hex) of the snapshot's canonical form: sets in name
// order with their sorted digests, then the revoked digests in order. Two snapshots with the
// same content have the same digest whatever backend produced them; revocation reasons and
// times are not part of it (they do not change what is accepted).
func (s *Snapshot) Digest() string {
	h := sha256.New()
	names := make([]string, 0, len(s.Sets))
	for n := range s.Sets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(h, "set %s\n", n)
		vals := slices.Clone(s.Sets[n])
		slices.Sort(vals)
		for _, v := range slices.Compact(vals) {
			fmt.Fprintf(h, "%s\n", v)
		}
	}
	rev := make([]string, 0, len(s.Revoked))
	for d := range s.Revoked {
		rev = append(rev, d)
	}
	slices.Sort(rev)
	for _, d := range rev {
		fmt.Fprintf(h, "revoked %s\n", d)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// RevokedList returns the revocations sorted by digest.
func (s *Snapshot) RevokedList() []Revocation {
	out := make([]Revocation, 0, len(s.Revoked))
	for _, r := range s.Revoked {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Revocation) int { return strings.Compare(a.Digest, b.Digest) })
	return out
}

// Store keeps reference-value sets and revocations. Implementations are safe for concurrent use
// and fail closed: any backend failure is an error wrapping ErrUnavailable.
type Store interface {
	// Snapshot returns the current content.
	Snapshot(ctx context.Context) (*Snapshot, error)
	// Version returns a number that changes whenever the content changes (a cheap poll for
	// replicas and file edits). Equal versions mean equal content; callers must not interpret
	// the number otherwise.
	Version(ctx context.Context) (uint64, error)
	// Add puts digests (normalized to lower case) into set, creating it. Invalid input
	// (ErrBadSet, ErrBadDigest) changes nothing.
	Add(ctx context.Context, set string, digests ...string) error
	// Revoke records r (Digest normalized; RevokedAt must be set). Revoking a digest that no set
	// holds is allowed: evidence containing it is refused all the same. When the digest is
	// already revoked the first revocation is kept and returned with created == false.
	Revoke(ctx context.Context, r Revocation) (stored Revocation, created bool, err error)
	// Reinstate removes the revocation of digest and reports whether there was one.
	Reinstate(ctx context.Context, digest string) (bool, error)
	// ListRevoked returns every revocation, sorted by digest.
	ListRevoked(ctx context.Context) ([]Revocation, error)
}

// NormalizeDigest checks that s is a hex SHA-1/256/384/512 digest and returns it in lower case.
func NormalizeDigest(s string) (string, error) {
	switch len(s) {
	case 40, 64, 96, 128:
	default:
		return "", fmt.Errorf("%w: %q has %d characters", ErrBadDigest, truncate(s), len(s))
	}
	s = strings.ToLower(s)
	if _, err := hex.DecodeString(s); err != nil {
		return "", fmt.Errorf("%w: %q", ErrBadDigest, truncate(s))
	}
	return s, nil
}

// CheckSetName returns an error wrapping ErrBadSet unless name is [a-z][a-z0-9_]* of at most
// 64 bytes.
func CheckSetName(name string) error {
	if name == "" || len(name) > 64 || name[0] < 'a' || name[0] > 'z' {
		return fmt.Errorf("%w: %q", ErrBadSet, truncate(name))
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("%w: %q", ErrBadSet, truncate(name))
		}
	}
	return nil
}

// CheckRevocation validates r and returns it with its digest normalized and its time in UTC.
func CheckRevocation(r Revocation) (Revocation, error) {
	d, err := NormalizeDigest(r.Digest)
	if err != nil {
		return Revocation{}, err
	}
	if r.RevokedAt.IsZero() {
		return Revocation{}, fmt.Errorf("%w: no revocation time", ErrBadRevocation)
	}
	if len(r.Reason) > MaxReasonSize {
		return Revocation{}, fmt.Errorf("%w: reason is %d bytes, at most %d", ErrBadRevocation, len(r.Reason), MaxReasonSize)
	}
	r.Digest, r.RevokedAt = d, r.RevokedAt.UTC()
	return r, nil
}

// NormalizeAll normalizes digests, returning the first error.
func NormalizeAll(digests []string) ([]string, error) {
	out := make([]string, len(digests))
	for i, d := range digests {
		n, err := NormalizeDigest(d)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
