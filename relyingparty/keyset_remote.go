package relyingparty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of RemoteKeySet.
const (
	// DefaultRefetchInterval is the minimum time between two fetches triggered by tokens (an
	// unknown kid, stale keys, no keys yet): 30 s. A flood of forged tokens costs at most one
	// JWKS fetch per interval.
	DefaultRefetchInterval = 30 * time.Second
	// DefaultMinMaxAge is the lower bound of the Cache-Control max-age honoured: 1 min.
	DefaultMinMaxAge = time.Minute
	// DefaultMaxMaxAge is the upper bound of the Cache-Control max-age honoured: 1 h.
	DefaultMaxMaxAge = time.Hour
	// DefaultMaxAge is the freshness of a response without Cache-Control max-age: 5 min.
	DefaultMaxAge = 5 * time.Minute
	// DefaultFetchTimeout bounds one JWKS request: 10 s.
	DefaultFetchTimeout = 10 * time.Second
)

// RemoteOption configures NewRemoteKeySet.
type RemoteOption func(*RemoteKeySet)

// WithHTTPClient sets the client used for JWKS requests (default: a client with a 10 s
// timeout and http.DefaultTransport).
func WithHTTPClient(c *http.Client) RemoteOption { return func(k *RemoteKeySet) { k.client = c } }

// WithClock injects the clock used for freshness and the refetch interval (default time.Now).
// Background refresh still sleeps in real time.
func WithClock(now func() time.Time) RemoteOption { return func(k *RemoteKeySet) { k.now = now } }

// WithRefetchInterval sets the minimum time between two fetches triggered by tokens with an
// unknown kid, and between retries of a failed refresh (default DefaultRefetchInterval).
// Fetches already in flight are joined, never repeated.
func WithRefetchInterval(d time.Duration) RemoteOption {
	return func(k *RemoteKeySet) { k.interval = d }
}

// WithMaxAgeBounds clamps the Cache-Control max-age of JWKS responses to [min, max] (defaults
// DefaultMinMaxAge, DefaultMaxMaxAge). "no-cache" and "no-store" count as min.
func WithMaxAgeBounds(min, max time.Duration) RemoteOption {
	return func(k *RemoteKeySet) { k.minAge, k.maxAge = min, max }
}

// WithDefaultMaxAge sets the freshness of a response without max-age (default DefaultMaxAge,
// clamped by WithMaxAgeBounds).
func WithDefaultMaxAge(d time.Duration) RemoteOption {
	return func(k *RemoteKeySet) { k.defaultAge = d }
}

// WithoutBackgroundRefresh disables the refresh goroutine: keys are then fetched on first use
// and refreshed when a token meets stale keys or an unknown kid, within the refetch interval.
func WithoutBackgroundRefresh() RemoteOption { return func(k *RemoteKeySet) { k.background = false } }

// WithFetchObserver calls fn after every JWKS request (for metrics). fn must not block.
func WithFetchObserver(fn func(FetchResult)) RemoteOption {
	return func(k *RemoteKeySet) { k.observer = fn }
}

// FetchResult describes one JWKS request, for WithFetchObserver.
type FetchResult struct {
	Status      int           // HTTP status, 0 when no response arrived
	NotModified bool          // 304 to If-None-Match: the keys were kept and made fresh again
	Keys        int           // usable keys now held
	Duration    time.Duration // wall time of the request
	Err         error         // nil on success; the previous keys are kept on error
}

// RemoteStats are a RemoteKeySet's counters since creation.
type RemoteStats struct {
	Fetches     uint64    // JWKS requests sent
	Failures    uint64    // requests that did not yield a usable key set (keys kept)
	NotModified uint64    // 304 answers
	Suppressed  uint64    // token-triggered fetches refused by the refetch interval
	Keys        int       // usable keys held
	FreshUntil  time.Time // when the held keys go stale
	LastError   error     // error of the latest request, nil if it succeeded
}

// RemoteKeySet is a KeySet backed by an issuer's jwks_uri (RFC 8414 section 2). It keeps the
// last good key set across failed refreshes (an error status, an HTML page or bad JSON never
// replaces or empties it), refreshes in the background as Cache-Control max-age says, uses
// ETag/If-None-Match, merges concurrent fetches into one, and refetches for an unknown kid at
// most once per refetch interval. A bad signature never causes a fetch. It is safe for
// concurrent use.
type RemoteKeySet struct {
	url                            string
	client                         *http.Client
	now                            func() time.Time
	interval                       time.Duration
	minAge, maxAge, defaultAge     time.Duration
	background                     bool
	observer                       func(FetchResult)
	keys                           atomic.Pointer[keyIndex]
	fetches, failures, notModified atomic.Uint64
	suppressed                     atomic.Uint64

	mu          sync.Mutex
	inflight    *fetchCall
	lastAttempt time.Time // start of the latest request
	freshUntil  time.Time
	etag        string
	lastErr     error
}

// fetchCall is one JWKS request that several callers may wait for.
type fetchCall struct {
	done chan struct{}
	err  error
}

// NewRemoteKeySet returns a key set for the JWKS at jwksURL. Unless WithoutBackgroundRefresh is
// given it starts a goroutine that fetches the keys at once and again whenever they go stale
// (failed fetches are retried every refetch interval); the goroutine stops when ctx is done,
// after which the key set keeps working with on-demand fetches. ctx's values (not its
// cancellation) also reach every request.
func NewRemoteKeySet(ctx context.Context, jwksURL string, opts ...RemoteOption) *RemoteKeySet {
	k := &RemoteKeySet{
		url:        jwksURL,
		client:     &http.Client{Timeout: DefaultFetchTimeout},
		now:        time.Now,
		interval:   DefaultRefetchInterval,
		minAge:     DefaultMinMaxAge,
		maxAge:     DefaultMaxMaxAge,
		defaultAge: DefaultMaxAge,
		background: true,
	}
	for _, o := range opts {
		o(k)
	}
	if k.maxAge < k.minAge {
		k.maxAge = k.minAge
	}
	if k.background {
		go k.refreshLoop(ctx)
	}
	return k
}

// VerifySignature implements KeySet. A kid not in the held keys triggers one fetch if the last
// one started at least a refetch interval ago (or joins a fetch in flight), then fails with
// ErrUnknownKey if the kid is still unknown. When no key set was ever fetched the error also
// matches ErrKeySetUnavailable.
func (k *RemoteKeySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	h, err := headerFor(ctx, raw)
	if err != nil {
		return nil, err
	}
	ix := k.keys.Load()
	if h.Kid != "" && !ix.has(h.Kid) {
		if err := k.fetchLimited(ctx); err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnknownKey, ctx.Err())
		}
		ix = k.keys.Load()
	} else {
		k.refreshIfStale(ctx)
	}
	if ix == nil {
		k.mu.Lock()
		last := k.lastErr
		k.mu.Unlock()
		return nil, fmt.Errorf("%w: %w: %s: %v", ErrUnknownKey, ErrKeySetUnavailable, k.url, last)
	}
	return verifyWith(ctx, ix, raw, h)
}

// holds reports whether the key set held now (the last good one) has the key ref names. It
// never fetches.
func (k *RemoteKeySet) holds(ref keyRef) bool { return k.keys.Load().holds(ref) }

// Refresh fetches the key set now, regardless of the refetch interval (joining a fetch in
// flight), and returns that fetch's error. Use it at startup to fail fast.
func (k *RemoteKeySet) Refresh(ctx context.Context) error {
	k.mu.Lock()
	c := k.startLocked(ctx)
	k.mu.Unlock()
	return k.wait(ctx, c)
}

// Fetches returns the number of JWKS requests sent so far.
func (k *RemoteKeySet) Fetches() uint64 { return k.fetches.Load() }

// Stats returns the key set's counters and state.
func (k *RemoteKeySet) Stats() RemoteStats {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := RemoteStats{
		Fetches: k.fetches.Load(), Failures: k.failures.Load(),
		NotModified: k.notModified.Load(), Suppressed: k.suppressed.Load(),
		FreshUntil: k.freshUntil, LastError: k.lastErr,
	}
	if ix := k.keys.Load(); ix != nil {
		s.Keys = ix.n
	}
	return s
}

// fetchLimited fetches and waits for the result, unless a fetch started less than an interval
// ago. A fetch in flight is joined.
func (k *RemoteKeySet) fetchLimited(ctx context.Context) error {
	k.mu.Lock()
	c := k.inflight
	if c == nil {
		if !k.lastAttempt.IsZero() && k.now().Sub(k.lastAttempt) < k.interval {
			k.mu.Unlock()
			k.suppressed.Add(1)
			return nil
		}
		c = k.startLocked(ctx)
	}
	k.mu.Unlock()
	return k.wait(ctx, c)
}

// refreshIfStale starts a fetch, without waiting for it, when the keys went stale: at once for
// the first use after max-age ran out, then (if that fetch failed) at most once per interval.
func (k *RemoteKeySet) refreshIfStale(ctx context.Context) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if k.inflight != nil || k.freshUntil.IsZero() || !now.After(k.freshUntil) {
		return
	}
	if k.lastAttempt.After(k.freshUntil) && now.Sub(k.lastAttempt) < k.interval {
		return // a refresh since the keys went stale failed: wait out the interval
	}
	k.startLocked(ctx)
}

// startLocked returns the fetch in flight or starts one. k.mu is held.
func (k *RemoteKeySet) startLocked(ctx context.Context) *fetchCall {
	if k.inflight != nil {
		return k.inflight
	}
	c := &fetchCall{done: make(chan struct{})}
	k.inflight = c
	k.lastAttempt = k.now()
	etag := ""
	if k.keys.Load() != nil {
		etag = k.etag
	}
	// The request outlives the caller that started it: others may be waiting for it.
	go k.fetch(context.WithoutCancel(ctx), c, etag)
	return c
}

func (k *RemoteKeySet) wait(ctx context.Context, c *fetchCall) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetch performs one request and installs its result; on any failure the held keys stay.
func (k *RemoteKeySet) fetch(ctx context.Context, c *fetchCall, etag string) {
	ctx, cancel := context.WithTimeout(ctx, DefaultFetchTimeout)
	defer cancel()
	start := time.Now()
	k.fetches.Add(1)
	res := k.do(ctx, etag)
	res.Duration = time.Since(start)

	k.mu.Lock()
	switch {
	case res.Err != nil:
		k.failures.Add(1)
	case res.NotModified:
		k.notModified.Add(1)
	}
	if res.Err == nil {
		k.freshUntil = k.now().Add(res.age)
	}
	if res.ix != nil {
		k.keys.Store(res.ix)
		k.etag = res.etag
	}
	if ix := k.keys.Load(); ix != nil {
		res.Keys = ix.n
	}
	k.lastErr = res.Err
	k.inflight = nil
	c.err = res.Err
	k.mu.Unlock()
	// The observer runs before waiters wake: a caller of Refresh sees the fetch counted.
	if k.observer != nil {
		k.observer(res.FetchResult)
	}
	close(c.done)
}

type fetchOutcome struct {
	FetchResult
	ix   *keyIndex
	etag string
	age  time.Duration
}

func (k *RemoteKeySet) do(ctx context.Context, etag string) fetchOutcome {
	var out fetchOutcome
	fail := func(err error) fetchOutcome {
		out.Err = fmt.Errorf("relyingparty: fetch JWKS %s: %w", k.url, err)
		return out
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	out.Status = resp.StatusCode
	switch {
	case resp.StatusCode == http.StatusNotModified && etag != "":
		out.NotModified = true
		out.age = k.cacheAge(resp.Header)
		return out
	case resp.StatusCode != http.StatusOK:
		return fail(fmt.Errorf("HTTP status %d", resp.StatusCode))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return fail(err)
	}
	if len(b) > maxJWKSSize {
		return fail(fmt.Errorf("document exceeds %d bytes", maxJWKSSize))
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return fail(err)
	}
	ix := newKeyIndex(keys)
	if ix.n == 0 {
		return fail(errors.New("no usable public signing key"))
	}
	out.ix, out.etag, out.age = ix, resp.Header.Get("ETag"), k.cacheAge(resp.Header)
	return out
}

// cacheAge reads Cache-Control max-age (RFC 9111 section 5.2.2.1), clamped to the bounds.
func (k *RemoteKeySet) cacheAge(h http.Header) time.Duration {
	age := k.defaultAge
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-cache" || d == "no-store":
				age = 0
			case strings.HasPrefix(d, "max-age="):
				if n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64); err == nil && n >= 0 {
					age = time.Duration(min(n, int64(1<<31))) * time.Second
				}
			}
		}
	}
	return max(k.minAge, min(age, k.maxAge))
}

// refreshLoop keeps the keys fresh until ctx is done: a fetch now, then one when the keys go
// stale, or after a refetch interval when the last fetch failed.
func (k *RemoteKeySet) refreshLoop(ctx context.Context) {
	for {
		err := k.Refresh(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := max(k.interval, time.Second) // retry of a failed fetch
		if err == nil {
			k.mu.Lock()
			wait = max(k.freshUntil.Sub(k.now()), 10*time.Millisecond)
			k.mu.Unlock()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
