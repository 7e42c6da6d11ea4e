package store

import (
	"context"
	"errors"
)

// ErrAKUnknown means no record is kept under the AK identity asked for.
var ErrAKUnknown = errors.New("store: AK unknown")

// MaxAKRecord bounds one AK record (a public key and a few attributes): 16 KiB.
const MaxAKRecord = 16 << 10

// AKStore keeps the records of attestation keys trusted at run time (pinned through the admin
// API, or enrolled through the EK), shared by every issuer replica. Identities and values are
// opaque to the store; the evidence package gives them meaning (an RFC 7638 thumbprint and a
// JSON record).
type AKStore interface {
	// PutAK stores value (1..MaxAKRecord bytes) under id, replacing any previous value.
	PutAK(ctx context.Context, id string, value []byte) error
	// GetAK returns the value under id, or an error wrapping ErrAKUnknown.
	GetAK(ctx context.Context, id string) ([]byte, error)
	// DeleteAK removes id; it returns an error wrapping ErrAKUnknown when id is absent.
	DeleteAK(ctx context.Context, id string) error
	// ListAKs returns every record by id.
	ListAKs(ctx context.Context) (map[string][]byte, error)
}
