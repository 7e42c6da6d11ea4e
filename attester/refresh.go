package attester

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/passport-attest/passport/api"
)

// Defaults of Refresher.
const (
	// DefaultRefreshFraction: a token is renewed after 80% of its lifetime (exp minus the time
	// it was obtained), leaving a fifth of it to ride out an issuer outage.
	DefaultRefreshFraction = 0.8
	// DefaultRefreshJitter spreads renewals by ±5% of the lifetime, so that a fleet started
	// together does not attest in lockstep.
	DefaultRefreshJitter = 0.05
	// DefaultMinBackoff is the first retry delay after a failed renewal: 1 s.
	DefaultMinBackoff = time.Second
	// DefaultMaxBackoff caps the retry delay: 1 min (doubling from DefaultMinBackoff).
	DefaultMaxBackoff = time.Minute
)

// ErrNoToken is returned (wrapped, with the last renewal error when there was one) by
// Refresher.Token when it holds no token that is still valid.
var ErrNoToken = errors.New("attester: no valid token")

// Refresher keeps an attestation-result token fresh: it obtains one, renews it after about
// Fraction of its lifetime (with ±Jitter of the lifetime spread uniformly at random), and
// retries failed renewals with exponential backoff (MinBackoff doubling up to MaxBackoff, each
// delay drawn uniformly from its upper half) while handing out the previous token until its
// exp. Only Fetch is required; set the other fields before Run. Token is safe for concurrent
// use with Run.
type Refresher struct {
	// Fetch obtains a new token and its expiry, e.g. NewRefresher's closure over Client.Attest.
	Fetch func(ctx context.Context) (*api.AttestResponse, error)
	// Fraction of the lifetime after which to renew, in (0, 1); default DefaultRefreshFraction.
	Fraction float64
	// Jitter is the spread of the renewal time as a fraction of the lifetime, in [0, Fraction);
	// default DefaultRefreshJitter. A negative value means none.
	Jitter float64
	// MinBackoff and MaxBackoff bound the retry delays; defaults DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Sleep waits d or until ctx is done, returning ctx.Err() then (default: a real timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns uniform values in [0, 1) for the jitter (default math/rand/v2.Float64).
	Rand func() float64
	// OnRefresh, when set, is told the outcome of every renewal attempt: the new expiry, or the
	// error. It must not block. Tokens are never passed to it.
	OnRefresh func(exp time.Time, err error)

	mu      sync.RWMutex
	tok     string
	exp     time.Time
	got     time.Time // when tok was obtained (the start of its Fetch)
	lastErr error
}

// NewRefresher returns a Refresher whose Fetch runs the whole passport exchange with c for a
// (Client.Attest) and audience.
func NewRefresher(c *Client, a *Attester, audience string) *Refresher {
	return &Refresher{Fetch: func(ctx context.Context) (*api.AttestResponse, error) {
		return c.Attest(ctx, a, audience)
	}}
}

// Token returns the current token while it is valid (before its exp). Otherwise it fails with
// ErrNoToken, wrapping the last renewal error if any.
func (r *Refresher) Token() (string, error) {
	now := r.now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.tok != "" && now.Before(r.exp) {
		return r.tok, nil
	}
	if r.lastErr != nil {
		return "", fmt.Errorf("%w: last renewal: %w", ErrNoToken, r.lastErr)
	}
	return "", ErrNoToken
}

// Expiry returns the current token's exp (the zero time when there is none).
func (r *Refresher) Expiry() time.Time {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.exp
}

// Refresh obtains a new token now. On failure the previous token is kept.
func (r *Refresher) Refresh(ctx context.Context) error {
	if r.Fetch == nil {
		return errors.New("attester: Refresher.Fetch is nil")
	}
	start := r.now()
	res, err := r.Fetch(ctx)
	if err == nil && (res == nil || res.Token == "") {
		err = fmt.Errorf("%w: no token", ErrBadResponse)
	}
	if err == nil && !res.ExpiresAt.After(start) {
		err = fmt.Errorf("%w: token expires at %s, before it was obtained", ErrBadResponse, res.ExpiresAt.UTC().Format(time.RFC3339))
	}
	r.mu.Lock()
	if err != nil {
		r.lastErr = err
	} else {
		r.tok, r.exp, r.got, r.lastErr = res.Token, res.ExpiresAt, start, nil
	}
	exp := r.exp
	r.mu.Unlock()
	if r.OnRefresh != nil {
		r.OnRefresh(exp, err)
	}
	return err
}

// Run keeps the token fresh until ctx is done, and then returns ctx.Err(). It fetches at once
// unless a valid token is already held (from Refresh, say); afterwards it renews at Fraction
// (± Jitter) of each token's lifetime, counted from when it was obtained, and after a failure
// retries with backoff.
func (r *Refresher) Run(ctx context.Context) error {
	failures := 0
	if _, err := r.Token(); err != nil {
		if err := r.attempt(ctx, &failures); err != nil {
			return err
		}
	}
	for {
		if err := r.sleep(ctx, r.next(failures)); err != nil {
			return err
		}
		if err := r.attempt(ctx, &failures); err != nil {
			return err
		}
	}
}

// attempt runs one renewal; only a done context is returned as an error.
func (r *Refresher) attempt(ctx context.Context, failures *int) error {
	if err := r.Refresh(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		*failures++
		return nil
	}
	*failures = 0
	return nil
}

// next is the delay before the next attempt: renewal time of the current token after a
// success, backoff after failures.
func (r *Refresher) next(failures int) time.Duration {
	if failures > 0 {
		return r.backoff(failures)
	}
	r.mu.RLock()
	obtained, exp := r.got, r.exp
	r.mu.RUnlock()
	lifetime := exp.Sub(obtained)
	frac, jit := r.Fraction, r.Jitter
	if frac <= 0 || frac >= 1 {
		frac = DefaultRefreshFraction
	}
	switch {
	case jit == 0:
		jit = DefaultRefreshJitter
	case jit < 0:
		jit = 0
	}
	jit = min(jit, frac, 1-frac)
	at := frac + jit*(2*r.rand()-1) // uniform in [frac-jit, frac+jit)
	wait := time.Duration(at*float64(lifetime)) - r.now().Sub(obtained)
	return max(wait, 0)
}

// backoff returns the delay after n consecutive failures: uniform in [d/2, d) with d =
// MinBackoff·2^(n-1), at most MaxBackoff.
func (r *Refresher) backoff(n int) time.Duration {
	lo, hi := r.MinBackoff, r.MaxBackoff
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + time.Duration(r.rand()*float64(d/2))
}

func (r *Refresher) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Refresher) rand() float64 {
	if r.Rand != nil {
		return r.Rand()
	}
	return rand.Float64()
}

func (r *Refresher) sleep(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
