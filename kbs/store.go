package kbs

import (
	"context"
	"errors"

	"github.com/passport-attest/passport/api"
)

// MaxSecretSize is the largest secret a Store holds: 64 KiB. Keys, passwords and small
// configuration files fit; anything larger belongs in storage encrypted under such a key.
const MaxSecretSize = 64 << 10

// Errors of Store implementations. Callers branch on them with errors.Is.
var (
	// ErrNotFound: no secret has this name.
	ErrNotFound = errors.New("kbs: no such resource")
	// ErrTooLarge: the secret exceeds MaxSecretSize; nothing was stored.
	ErrTooLarge = errors.New("kbs: secret too large")
	// ErrCorrupt: a stored value cannot be decrypted or authenticated (tampered, moved to
	// another name, or encrypted under another key-encryption key).
	ErrCorrupt = errors.New("kbs: stored secret corrupt or under another key")
	// ErrUnavailable: the backend (Redis, a revocation service) did not answer. Nothing is
	// released and nothing is lost: the caller may retry.
	ErrUnavailable = errors.New("kbs: backend unavailable")
)

// Store holds secrets by resource name. Implementations must be safe for concurrent use, must
// refuse an invalid ResourceID (api.ErrResourceName) before any I/O, and must never log secret
// bytes. DirStore and RedisStore pass one conformance suite.
type Store interface {
	// Get returns a copy of the secret. Errors: ErrNotFound, ErrCorrupt, ErrUnavailable.
	Get(ctx context.Context, id api.ResourceID) ([]byte, error)
	// Put stores secret (1 to MaxSecretSize bytes) under id, replacing any previous value
	// atomically: a concurrent Get sees the old or the new secret, never a mix. Errors:
	// ErrTooLarge, ErrUnavailable.
	Put(ctx context.Context, id api.ResourceID, secret []byte) error
	// Delete removes the secret. Errors: ErrNotFound, ErrUnavailable.
	Delete(ctx context.Context, id api.ResourceID) error
}

// checkPut validates the arguments of Store.Put.
func checkPut(id api.ResourceID, secret []byte) error {
	if err := id.Validate(); err != nil {
		return err
	}
	switch {
	case len(secret) == 0:
		return errors.New("kbs: empty secret")
	case len(secret) > MaxSecretSize:
		return ErrTooLarge
	}
	return nil
}
