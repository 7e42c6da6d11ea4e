package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/passport-attest/passport/store"
)

// NonceStore wraps s so that every operation failing with store.ErrUnavailable is counted in
// passport_nonce_store_errors_total{op="put"|"consume"}. Other errors (a reused nonce) are
// answers, not store errors, and are not counted. A Ping method of s (readiness) is kept.
func (m *Metrics) NonceStore(s store.NonceStore) store.NonceStore {
	if m == nil {
		return s
	}
	return &nonceStore{inner: s, m: m}
}

type nonceStore struct {
	inner store.NonceStore
	m     *Metrics
}

func (n *nonceStore) PutNonce(ctx context.Context, nonce, value []byte, ttl time.Duration) error {
	err := n.inner.PutNonce(ctx, nonce, value, ttl)
	if errors.Is(err, store.ErrUnavailable) {
		n.m.NonceStoreError("put")
	}
	return err
}

func (n *nonceStore) ConsumeNonce(ctx context.Context, nonce []byte) ([]byte, error) {
	v, err := n.inner.ConsumeNonce(ctx, nonce)
	if errors.Is(err, store.ErrUnavailable) {
		n.m.NonceStoreError("consume")
	}
	return v, err
}

// Ping forwards to the wrapped store's Ping, if it has one (nil otherwise).
func (n *nonceStore) Ping(ctx context.Context) error {
	if p, ok := n.inner.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Status-list store operations, the op label of passport_status_list_store_errors_total.
const (
	StatusOpAllocate = "allocate" // AllocateStatus: a token's entry, during an attestation
	StatusOpRevoke   = "revoke"   // RevokeStatus and ReinstateLabel: the admin revoke and reinstate endpoints
	StatusOpRead     = "read"     // ReadStatusList: GET /v1/status-list/{id}
)

// StatusStore wraps s so that every operation failing with store.ErrUnavailable is counted in
// passport_status_list_store_errors_total{op=StatusOpAllocate|StatusOpRevoke|StatusOpRead}.
// Other errors (an entry that exists, a clock rollback, an unknown list, a bad selector) are
// answers, not store errors, and are not counted. When s is also a store.ClockStore the
// result is one too (AdvanceClock forwarded, not counted), so that it can stand for s as the
// issuer's Clocks: the issuer folds the TPM clock check into AllocateStatus only when its
// Clocks and Status are the same object. With m nil, s is returned as it is.
func (m *Metrics) StatusStore(s store.StatusStore) store.StatusStore {
	if m == nil {
		return s
	}
	w := &statusStore{inner: s, m: m}
	if c, ok := s.(store.ClockStore); ok {
		return &statusClockStore{statusStore: w, clocks: c}
	}
	return w
}

type statusStore struct {
	inner store.StatusStore
	m     *Metrics
}

func (s *statusStore) count(op string, err error) {
	if errors.Is(err, store.ErrUnavailable) {
		s.m.StatusListStoreError(op)
	}
}

func (s *statusStore) StatusListSize() int { return s.inner.StatusListSize() }

func (s *statusStore) AllocateStatus(ctx context.Context, e store.StatusEntry) (store.StatusRef, error) {
	ref, err := s.inner.AllocateStatus(ctx, e)
	s.count(StatusOpAllocate, err)
	return ref, err
}

func (s *statusStore) RevokeStatus(ctx context.Context, sel store.Selector) ([]store.Revocation, error) {
	revs, err := s.inner.RevokeStatus(ctx, sel)
	s.count(StatusOpRevoke, err)
	return revs, err
}

func (s *statusStore) ReinstateLabel(ctx context.Context, label string) error {
	err := s.inner.ReinstateLabel(ctx, label)
	s.count(StatusOpRevoke, err)
	return err
}

func (s *statusStore) ReadStatusList(ctx context.Context, list uint64) ([]byte, error) {
	b, err := s.inner.ReadStatusList(ctx, list)
	s.count(StatusOpRead, err)
	return b, err
}

// statusClockStore is a statusStore whose inner store is also a ClockStore.
type statusClockStore struct {
	*statusStore
	clocks store.ClockStore
}

func (s *statusClockStore) AdvanceClock(ctx context.Context, ak string, c store.ClockInfo, ttl time.Duration) error {
	return s.clocks.AdvanceClock(ctx, ak, c, ttl)
}

// JWKSResult maps the outcome of a relying-party JWKS request (relyingparty.FetchResult's Err
// and NotModified) to the result label of JWKSFetch.
func JWKSResult(err error, notModified bool) string {
	switch {
	case err != nil:
		return ResultError
	case notModified:
		return ResultNotModified
	}
	return ResultOK
}
