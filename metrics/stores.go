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
