package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors of StatusStore and BlobStore; backends wrap them with %w.
var (
	// ErrStatusListUnknown means ReadStatusList was asked for a list no allocation ever
	// started.
	ErrStatusListUnknown = errors.New("store: status list unknown")
	// ErrEntryExists means AllocateStatus was given an ID that already holds a live index.
	ErrEntryExists = errors.New("store: status entry already exists")
	// ErrConflict means PutBlob's expected version is not the stored one: another writer got
	// there first. Reload and decide again.
	ErrConflict = errors.New("store: blob version conflict")
	// ErrLabelRevoked means AllocateStatus was given a label that RevokeStatus has revoked
	// (and ReinstateLabel has not lifted since): nothing was allocated.
	ErrLabelRevoked = errors.New("store: status entry label revoked")
)

// DefaultStatusListSize is the number of entries per status list when a backend is not told
// otherwise: 131072 (2^17) one-bit statuses, 16 KiB uncompressed. Large lists give each token
// herd privacy (draft-ietf-oauth-status-list section 12.1) and compress to a few dozen bytes
// while few entries are set.
const DefaultStatusListSize = 1 << 17

// StatusRef names one entry of a Token Status List (draft-ietf-oauth-status-list section
// 6.2): the list's id and the entry's index in it, counted from 0.
type StatusRef struct {
	List  uint64
	Index uint64
}

// ClockAdvance asks AllocateStatus to perform ClockStore.AdvanceClock (AK, Info, TTL)
// atomically with the allocation: on a rollback nothing is allocated. It lets an issuer check
// the TPM clock and reserve the token's status index in one store round trip.
type ClockAdvance struct {
	AK   string
	Info ClockInfo
	TTL  time.Duration
}

// StatusEntry describes the token an index is allocated for. The store does not interpret the
// strings; the issuer passes the jti as ID, the AK thumbprint (sub) as Subject and the matched
// reference-value digests as Labels, so that it can later revoke by any of them.
type StatusEntry struct {
	// ID identifies the entry (required, unique among live entries).
	ID string
	// Subject groups entries (required): RevokeStatus(Selector{Subject}) revokes all live
	// entries of one subject.
	Subject string
	// Labels group entries across subjects: RevokeStatus(Selector{Label}) revokes every live
	// entry carrying that label. May be empty.
	Labels []string
	// Expires is when the entry stops being live (required, in the future): the store forgets
	// its ID, subject and label records then, and the list that holds it may be dropped once
	// every entry in it has expired.
	Expires time.Time
	// Clock, when set, is checked and recorded atomically with the allocation.
	Clock *ClockAdvance
}

// Selector picks the live entries RevokeStatus applies to. Exactly one field must be set.
type Selector struct {
	ID      string
	Subject string
	Label   string
}

// Revocation reports entries whose status was set to invalid, grouped by list.
type Revocation struct {
	List    uint64
	Indexes []uint64
}

// StatusStore keeps Token Status Lists (draft-ietf-oauth-status-list section 4): fixed-size
// arrays of one-bit statuses (0 valid, 1 invalid), allocated entry by entry, with the records
// needed to revoke an entry by ID, by subject or by label while it is live.
type StatusStore interface {
	// StatusListSize returns the number of entries of every list; ReadStatusList returns
	// StatusListSize()/8 bytes.
	StatusListSize() int
	// AllocateStatus reserves a fresh entry (status valid) for e and records e.ID, e.Subject
	// and e.Labels until e.Expires. Indexes are handed out in order; when a list is full the
	// next entry starts a new list. Errors wrap ErrEntryExists, ErrClockRollback (e.Clock went
	// backwards: nothing allocated), ErrLabelRevoked (a label of e is revoked: nothing
	// allocated) or ErrUnavailable.
	AllocateStatus(ctx context.Context, e StatusEntry) (StatusRef, error)
	// RevokeStatus sets the status of every live entry sel picks to invalid and reports them.
	// A label selector also revokes the label itself, atomically with the entries it finds:
	// from then on AllocateStatus refuses entries carrying it (ErrLabelRevoked) until
	// ReinstateLabel, so that no entry allocated concurrently escapes the revocation.
	// Revoking nothing is not an error (an empty result); revoking twice is harmless. Every
	// revocation is also delivered to RevocationFeed watchers. Errors wrap ErrUnavailable, or
	// are plain for an invalid selector.
	RevokeStatus(ctx context.Context, sel Selector) ([]Revocation, error)
	// ReinstateLabel lifts the revocation of label that RevokeStatus(Selector{Label}) made:
	// entries carrying it may be allocated again (those revoked stay revoked). Lifting a label
	// that is not revoked is harmless. Errors wrap ErrUnavailable.
	ReinstateLabel(ctx context.Context, label string) error
	// ReadStatusList returns the list's bytes in the status list's own order: entry i is bit
	// i%8 of byte i/8, counting from the least significant bit (draft-ietf-oauth-status-list
	// section 4.1). Errors wrap ErrStatusListUnknown or ErrUnavailable.
	ReadStatusList(ctx context.Context, list uint64) ([]byte, error)
}

// RevocationEvent is one message of a RevocationFeed: entries revoked (by any issuer sharing
// the store), or, with Resync set, a notice that events may have been missed (a reconnection):
// consumers then re-read the lists they rely on.
type RevocationEvent struct {
	Revocation
	Resync bool
}

// RevocationFeed pushes revocations to connected consumers (Redis pub/sub for the Redis
// backend), so that relying parties drop revoked tokens without waiting for a list refresh.
type RevocationFeed interface {
	// WatchRevocations calls fn for every event, in order, from one goroutine, until ctx is
	// done; it then returns ctx.Err(). The first event is always a Resync. fn must not block
	// for long.
	WatchRevocations(ctx context.Context, fn func(RevocationEvent)) error
}

// BlobStore keeps small named documents with optimistic concurrency: every write names the
// version it replaces, so that several replicas updating one document (the shared signing-key
// set) cannot lose each other's writes.
type BlobStore interface {
	// GetBlob returns the document and its version, or (nil, 0, nil) when there is none.
	// Errors wrap ErrUnavailable.
	GetBlob(ctx context.Context, name string) (data []byte, version uint64, err error)
	// PutBlob stores data as version+1 if the stored version is version (0: no document yet)
	// and returns the new version. Among concurrent writers with the same version exactly one
	// succeeds; the others get an error wrapping ErrConflict and change nothing. Other errors
	// wrap ErrUnavailable.
	PutBlob(ctx context.Context, name string, data []byte, version uint64) (uint64, error)
}

// StatusBit returns the status bit (0 or 1) of entry idx in a list's bytes in the order of
// ReadStatusList, and false when idx lies outside b.
func StatusBit(b []byte, idx uint64) (byte, bool) {
	if idx/8 >= uint64(len(b)) {
		return 0, false
	}
	return b[idx/8] >> (idx % 8) & 1, true
}

// Check returns an error when e lacks its ID or Subject, has an empty label, or expires at or
// before now. Backends call it before touching any state.
func (e StatusEntry) Check(now time.Time) error {
	switch {
	case e.ID == "":
		return errors.New("store: status entry needs an ID")
	case e.Subject == "":
		return errors.New("store: status entry needs a subject")
	case !e.Expires.After(now):
		return errors.New("store: status entry expires in the past")
	case e.Clock != nil && e.Clock.TTL <= 0:
		return errors.New("store: clock ttl must be positive")
	}
	for _, l := range e.Labels {
		if l == "" {
			return errors.New("store: empty status entry label")
		}
	}
	return nil
}

// Check returns an error unless exactly one field of s is set.
func (s Selector) Check() error {
	n := 0
	for _, v := range []string{s.ID, s.Subject, s.Label} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return errors.New("store: a revocation selector names exactly one of ID, subject or label")
	}
	return nil
}
