package store

import (
	"context"
	"errors"
	"fmt"
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
	// ReplaceEnrolled performs, as one atomic step, the replacement of the record an index
	// entry names (one AK enrolled per endorsement key): it reads the id stored under index
	// (previous, "" when index is absent), stores value (1..MaxAKRecord bytes) under id, stores
	// id under index, and removes the record under previous when it differs from id. Among
	// concurrent calls for one index, exactly the record of the call that ran last remains, and
	// index names it. index and id must be non-empty and differ. Errors wrap ErrUnavailable
	// (nothing, or everything, was written), or are plain for invalid arguments.
	ReplaceEnrolled(ctx context.Context, index, id string, value []byte) (previous string, err error)
}

// CheckReplaceEnrolled returns an error when the arguments of AKStore.ReplaceEnrolled are
// invalid: an empty index or id, index equal to id, or a value outside 1..MaxAKRecord bytes.
// Backends call it before touching any state.
func CheckReplaceEnrolled(index, id string, value []byte) error {
	switch {
	case index == "" || id == "":
		return errors.New("store: replace enrolled AK: empty index or id")
	case index == id:
		return errors.New("store: replace enrolled AK: index and id are the same entry")
	case len(value) == 0 || len(value) > MaxAKRecord:
		return fmt.Errorf("store: replace enrolled AK: record is %d bytes, want 1..%d", len(value), MaxAKRecord)
	}
	return nil
}
