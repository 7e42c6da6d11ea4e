// Package store holds the issuer's small shared state behind interfaces owned here, with two
// backends that pass one conformance suite (storetest): memory (the embedded default, one
// process) and redis (go-redis v9 UniversalClient: one server, Sentinel or Cluster).
//
// The package knows nothing of tokens' meaning: it stores opaque bytes under opaque keys with
// the atomicity the protocol needs (DESIGN.md section 5).
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors; backends wrap them with %w and callers branch with errors.Is.
var (
	// ErrNonceUnknown means the nonce was never issued, has expired, or was already consumed.
	// The three are deliberately indistinguishable to the caller.
	ErrNonceUnknown = errors.New("store: nonce unknown, expired or already used")
	// ErrNonceExists means PutNonce found the nonce already present (a random collision or a bug).
	ErrNonceExists = errors.New("store: nonce already exists")
	// ErrUnavailable wraps every backend failure (network, timeout, Redis error): callers fail
	// closed and answer 503.
	ErrUnavailable = errors.New("store: backend unavailable")
	// ErrClockRollback means a TPM's clock info went backwards for the same AK.
	ErrClockRollback = errors.New("store: TPM clock info went backwards")
)

// NonceStore keeps single-use challenge nonces with a time to live (RFC 9334 section 10.2,
// "nonce-based freshness"). Implementations key entries by SHA-256(nonce), so no code path
// compares nonces byte by byte and timing reveals nothing about stored values.
type NonceStore interface {
	// PutNonce stores nonce with an opaque value (the issuer's binding data, may be empty) for
	// ttl (> 0). It returns ErrNonceExists if the nonce is already present.
	PutNonce(ctx context.Context, nonce, value []byte, ttl time.Duration) error
	// ConsumeNonce atomically removes nonce and returns its value. Among any number of
	// concurrent callers with the same nonce exactly one succeeds; the others, and any caller
	// after the TTL, get ErrNonceUnknown.
	ConsumeNonce(ctx context.Context, nonce []byte) ([]byte, error)
}

// NonceNamespacer is implemented by the stores (memory, Redis) that can give a NonceStore whose
// entries none of their own nonce operations reach. Single-use values that must not be
// consumable as challenge nonces (enrollment sessions, locks whose keys anyone can compute)
// live there: an attest request consumes whatever 32-byte value it sends from the challenge
// nonces.
type NonceNamespacer interface {
	// NonceNamespace returns the NonceStore of namespace name (a short word, e.g. "enroll"),
	// sharing the backend (and, for Redis, the client) with the receiver. Namespaces with
	// different names are apart from each other too.
	NonceNamespace(name string) NonceStore
}

// ClockInfo is the TPMS_CLOCK_INFO of a quote (TPM 2.0 Part 2, section 10.11.1): clock in
// milliseconds, resetCount and restartCount.
type ClockInfo struct {
	Clock        uint64
	ResetCount   uint32
	RestartCount uint32
}

// Before reports whether c is strictly earlier than d in the order a healthy TPM's clock info
// follows: by resetCount, then restartCount, then clock.
func (c ClockInfo) Before(d ClockInfo) bool {
	if c.ResetCount != d.ResetCount {
		return c.ResetCount < d.ResetCount
	}
	if c.RestartCount != d.RestartCount {
		return c.RestartCount < d.RestartCount
	}
	return c.Clock < d.Clock
}

// ClockStore remembers the last clock info seen per AK, so that a quote whose clock went
// backwards (a replayed or rolled-back TPM) is refused.
type ClockStore interface {
	// AdvanceClock records c for ak (an opaque AK identity, e.g. its thumbprint) if it is not
	// Before the last recorded value, atomically, and returns ErrClockRollback otherwise,
	// leaving the stored value unchanged. ttl bounds how long the record is kept.
	AdvanceClock(ctx context.Context, ak string, c ClockInfo, ttl time.Duration) error
}
