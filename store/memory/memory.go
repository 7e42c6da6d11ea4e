// Package memory is the embedded, single-process backend of store.NonceStore,
// store.ClockStore, store.StatusStore, store.RevocationFeed and store.BlobStore (DESIGN.md
// section 5, "Embedded default"). It passes the same conformance
// suite (storetest) as the Redis backend.
//
// Entries are keyed by SHA-256 of the nonce (or of the AK identity), never by the raw bytes, so
// no lookup compares secrets byte by byte. Time comes from an injectable clock (WithClock), so
// expiry can be tested without sleeping. Expired entries are treated as absent as soon as they
// expire and are removed lazily: by the operation that finds them, and by a full sweep that runs
// on a write at most once per sweep interval (WithSweepInterval). Memory is therefore bounded by
// what was stored within the longest TTL plus one sweep interval, and optionally by a hard cap
// on live nonces (WithMaxNonces). No background goroutine is started, so a Store needs no Close.
package memory

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/passport-attest/passport/store"
)

// DefaultSweepInterval is the sweep interval used when WithSweepInterval is not given or is
// given a non-positive duration: at most one full sweep of expired entries per minute of the
// store's clock.
const DefaultSweepInterval = time.Minute

// errBadTTL is returned (wrapped) when a caller passes a non-positive time to live.
var errBadTTL = errors.New("ttl must be positive")

// Option configures a Store built by New.
type Option func(*Store)

// WithClock makes the Store read the current time from now instead of time.Now. Expiry of
// nonces and clock records, and sweep scheduling, are all decided by this clock. A nil now is
// ignored.
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// WithSweepInterval sets how often, in the store's clock time, a write sweeps every expired
// entry out of memory. A non-positive d selects DefaultSweepInterval.
func WithSweepInterval(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.sweepEvery = d
		}
	}
}

// WithMaxNonces caps the number of unexpired nonces held at once. When the cap is reached,
// even after sweeping expired entries, PutNonce fails with an error wrapping
// store.ErrUnavailable (the issuer fails closed and answers 503). n <= 0 means no cap (the
// default): memory is then bounded only by the issue rate times the longest TTL.
func WithMaxNonces(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.maxNonces = n
		} else {
			s.maxNonces = 0
		}
	}
}

// digest is SHA-256 of a nonce or AK identity: the map key of every entry.
type digest [sha256.Size]byte

type nonceEntry struct {
	value   []byte
	expires time.Time
}

type clockEntry struct {
	info    store.ClockInfo
	expires time.Time
}

// Store is an in-memory store.NonceStore and store.ClockStore. The zero value is not usable;
// build one with New. A Store is safe for concurrent use by multiple goroutines; every
// operation holds one mutex, which makes PutNonce, ConsumeNonce and AdvanceClock atomic.
type Store struct {
	now        func() time.Time
	sweepEvery time.Duration
	maxNonces  int

	mu        sync.Mutex
	nonces    map[digest]nonceEntry
	clocks    map[digest]clockEntry
	nextSweep time.Time

	akMu   sync.Mutex        // guards aks (store.AKStore, aks.go)
	aks    map[string][]byte // AK id -> record
	status statusState       // status lists, status.go
	blobs  map[string]blob
}

var (
	_ store.NonceStore = (*Store)(nil)
	_ store.ClockStore = (*Store)(nil)
)

// NonceNamespace implements store.NonceNamespacer: a new Store on s's clock (a separate map),
// so none of s's operations reaches its nonces. name only documents the caller's intent: each
// call returns a new, empty namespace.
func (s *Store) NonceNamespace(name string) store.NonceStore {
	return New(WithClock(s.now))
}

// New returns an empty Store configured by opts. Defaults: time.Now as clock,
// DefaultSweepInterval, no cap on nonces.
func New(opts ...Option) *Store {
	s := &Store{
		now:        time.Now,
		sweepEvery: DefaultSweepInterval,
		nonces:     make(map[digest]nonceEntry),
		clocks:     make(map[digest]clockEntry),
		status:     newStatusState(),
		blobs:      make(map[string]blob),
	}
	for _, o := range opts {
		o(s)
	}
	s.nextSweep = s.now().Add(s.sweepEvery)
	return s
}

// PutNonce implements store.NonceStore. It stores a copy of value (nil and empty are allowed)
// under SHA-256(nonce) until the store's clock reaches now+ttl. It returns an error wrapping
// store.ErrNonceExists if an unexpired entry for nonce exists (the stored value is kept), an
// error wrapping store.ErrUnavailable and the context's error if ctx is already done, or when
// the WithMaxNonces cap is reached, and a plain error if ttl <= 0.
func (s *Store) PutNonce(ctx context.Context, nonce, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: put nonce: %w: %w", store.ErrUnavailable, err)
	}
	if ttl <= 0 {
		return fmt.Errorf("memory: put nonce: %w, got %v", errBadTTL, ttl)
	}
	k := digest(sha256.Sum256(nonce))

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.maybeSweep(now)
	if e, ok := s.nonces[k]; ok {
		if now.Before(e.expires) {
			return fmt.Errorf("memory: put nonce: %w", store.ErrNonceExists)
		}
		delete(s.nonces, k)
	}
	if s.maxNonces > 0 && len(s.nonces) >= s.maxNonces {
		s.sweep(now)
		if len(s.nonces) >= s.maxNonces {
			return fmt.Errorf("memory: put nonce: %w: %d live nonces, the configured maximum",
				store.ErrUnavailable, s.maxNonces)
		}
	}
	s.nonces[k] = nonceEntry{value: append([]byte{}, value...), expires: now.Add(ttl)}
	return nil
}

// ConsumeNonce implements store.NonceStore. It removes the entry for nonce and returns its value
// (a fresh slice, non-nil, possibly empty). It returns an error wrapping store.ErrNonceUnknown
// if there is no entry or it has expired by the store's clock, and an error wrapping
// store.ErrUnavailable and the context's error if ctx is already done.
func (s *Store) ConsumeNonce(ctx context.Context, nonce []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: consume nonce: %w: %w", store.ErrUnavailable, err)
	}
	k := digest(sha256.Sum256(nonce))

	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.nonces[k]
	if !ok {
		return nil, fmt.Errorf("memory: consume nonce: %w", store.ErrNonceUnknown)
	}
	delete(s.nonces, k)
	if !s.now().Before(e.expires) {
		return nil, fmt.Errorf("memory: consume nonce: %w", store.ErrNonceUnknown)
	}
	return e.value, nil
}

// AdvanceClock implements store.ClockStore. The record for ak (keyed by SHA-256(ak)) is
// replaced by c, with a fresh ttl, unless c is Before the recorded, unexpired value; then it
// returns an error wrapping store.ErrClockRollback and leaves the record and its expiry
// unchanged. It returns an error wrapping store.ErrUnavailable and the context's error if ctx
// is already done, and a plain error if ttl <= 0.
func (s *Store) AdvanceClock(ctx context.Context, ak string, c store.ClockInfo, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: advance clock: %w: %w", store.ErrUnavailable, err)
	}
	if ttl <= 0 {
		return fmt.Errorf("memory: advance clock: %w, got %v", errBadTTL, ttl)
	}
	k := digest(sha256.Sum256([]byte(ak)))

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.maybeSweep(now)
	if err := s.checkClockLocked(now, k, c); err != nil {
		return err
	}
	s.clocks[k] = clockEntry{info: c, expires: now.Add(ttl)}
	return nil
}

// checkClockLocked returns an error wrapping store.ErrClockRollback if c is Before the
// unexpired record under k. s.mu must be held.
func (s *Store) checkClockLocked(now time.Time, k digest, c store.ClockInfo) error {
	if e, ok := s.clocks[k]; ok && now.Before(e.expires) && c.Before(e.info) {
		return fmt.Errorf("memory: advance clock: reset %d restart %d clock %d ms is before the recorded reset %d restart %d clock %d ms: %w",
			c.ResetCount, c.RestartCount, c.Clock,
			e.info.ResetCount, e.info.RestartCount, e.info.Clock, store.ErrClockRollback)
	}
	return nil
}

// maybeSweep runs sweep if the sweep interval has elapsed. s.mu must be held.
func (s *Store) maybeSweep(now time.Time) {
	if now.Before(s.nextSweep) {
		return
	}
	s.sweep(now)
}

// sweep deletes every expired entry and schedules the next sweep. s.mu must be held.
func (s *Store) sweep(now time.Time) {
	for k, e := range s.nonces {
		if !now.Before(e.expires) {
			delete(s.nonces, k)
		}
	}
	for k, e := range s.clocks {
		if !now.Before(e.expires) {
			delete(s.clocks, k)
		}
	}
	s.status.sweep(now)
	s.nextSweep = now.Add(s.sweepEvery)
}

// len reports how many entries (expired or not) are held; for tests.
func (s *Store) len() (nonces, clocks int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.nonces), len(s.clocks)
}
