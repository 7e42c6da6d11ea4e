package attester

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/passport-attest/passport/api"
)

// fakeTime is the refresher's injected clock: Sleep records the delay and advances time.
type fakeTime struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
	stopAt int // cancel after this many sleeps
	cancel context.CancelFunc
}

func (f *fakeTime) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeTime) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.sleeps = append(f.sleeps, d)
	f.t = f.t.Add(d)
	n := len(f.sleeps)
	f.mu.Unlock()
	if n >= f.stopAt {
		f.cancel()
	}
	return ctx.Err()
}

// script is a Fetch that answers from a list of outcomes (true: a token valid for lifetime).
type script struct {
	clk      *fakeTime
	lifetime time.Duration
	outcomes []bool
	calls    int
}

var errIssuerDown = errors.New("issuer down")

func (s *script) fetch(ctx context.Context) (*api.AttestResponse, error) {
	ok := s.outcomes[min(s.calls, len(s.outcomes)-1)]
	s.calls++
	if !ok {
		return nil, errIssuerDown
	}
	return &api.AttestResponse{Token: fmt.Sprintf("token-%d", s.calls), ExpiresAt: s.clk.Now().Add(s.lifetime)}, nil
}

func runRefresher(t *testing.T, r *Refresher, clk *fakeTime, sleeps int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	clk.stopAt, clk.cancel = sleeps, cancel
	r.Now, r.Sleep = clk.Now, clk.Sleep
	if err := r.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
}

// TestRefresherSchedule: renewals land at 80% of the lifetime, spread by the jitter.
func TestRefresherSchedule(t *testing.T) {
	const lifetime = 5 * time.Minute
	for _, tc := range []struct {
		rand float64
		want time.Duration
	}{
		{0.5, 4 * time.Minute},                     // 80%
		{0, 3*time.Minute + 45*time.Second},        // 75%
		{0.999999, 4*time.Minute + 15*time.Second}, // just under 85%
	} {
		clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
		s := &script{clk: clk, lifetime: lifetime, outcomes: []bool{true}}
		r := &Refresher{Fetch: s.fetch, Rand: func() float64 { return tc.rand }}
		runRefresher(t, r, clk, 3)
		if s.calls != 3 { // one at start, one after each of the first two sleeps
			t.Fatalf("rand %v: %d fetches, want 3", tc.rand, s.calls)
		}
		for i, d := range clk.sleeps {
			if diff := d - tc.want; diff < -time.Millisecond || diff > time.Millisecond {
				t.Fatalf("rand %v: sleep %d = %s, want %s", tc.rand, i, d, tc.want)
			}
		}
	}
}

// TestRefresherBackoff: failures back off exponentially up to the cap, the old token is served
// meanwhile, and a success returns to the lifetime schedule (and resets the backoff).
func TestRefresherBackoff(t *testing.T) {
	clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
	const lifetime = 10 * time.Minute
	// ok, then 6 failures, ok, failure.
	s := &script{clk: clk, lifetime: lifetime, outcomes: []bool{true, false, false, false, false, false, false, true, false}}
	var seen []error
	r := &Refresher{
		Fetch: s.fetch, Rand: func() float64 { return 0.999999 },
		MinBackoff: time.Second, MaxBackoff: 10 * time.Second,
		OnRefresh: func(_ time.Time, err error) { seen = append(seen, err) },
	}
	runRefresher(t, r, clk, 9)
	near := func(d, want time.Duration) bool { return d > want-time.Millisecond && d <= want }
	want := []time.Duration{
		lifetime * 85 / 100,                                                                                // renewal of the first token (rand ~1: 85%)
		time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second, // capped
		lifetime * 85 / 100, // renewed: back on schedule
		time.Second,         // the backoff starts over
	}
	if len(clk.sleeps) != len(want) {
		t.Fatalf("sleeps %v, want %v", clk.sleeps, want)
	}
	for i := range want {
		if !near(clk.sleeps[i], want[i]) {
			t.Fatalf("sleep %d = %s, want %s (all: %v)", i, clk.sleeps[i], want[i], clk.sleeps)
		}
	}
	if len(seen) != 9 || seen[0] != nil || !errors.Is(seen[1], errIssuerDown) || seen[7] != nil {
		t.Fatalf("OnRefresh saw %v", seen)
	}
	// Backoff with the lower end of the jitter: half the nominal delay.
	r2 := &Refresher{Rand: func() float64 { return 0 }, MinBackoff: time.Second, MaxBackoff: time.Minute}
	if d := r2.backoff(3); d != 2*time.Second {
		t.Fatalf("backoff(3) with rand 0 = %s, want 2s", d)
	}
}

// TestRefresherToken: the previous token is served while the renewal fails, until its exp.
func TestRefresherToken(t *testing.T) {
	clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
	s := &script{clk: clk, lifetime: time.Minute, outcomes: []bool{true, false}}
	r := &Refresher{Fetch: s.fetch, Now: clk.Now}
	if _, err := r.Token(); !errors.Is(err, ErrNoToken) {
		t.Fatalf("before any fetch: %v", err)
	}
	ctx := context.Background()
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := r.Token()
	if err != nil || tok != "token-1" {
		t.Fatalf("%q %v", tok, err)
	}
	if err := r.Refresh(ctx); !errors.Is(err, errIssuerDown) {
		t.Fatalf("failing renewal: %v", err)
	}
	if tok, err := r.Token(); err != nil || tok != "token-1" {
		t.Fatalf("old token not kept while valid: %q %v", tok, err)
	}
	clk.t = r.Expiry()
	if _, err := r.Token(); !errors.Is(err, ErrNoToken) || !errors.Is(err, errIssuerDown) {
		t.Fatalf("expired token handed out: %v", err)
	}
	// A response already expired is refused and changes nothing.
	r3 := &Refresher{Now: clk.Now, Fetch: func(context.Context) (*api.AttestResponse, error) {
		return &api.AttestResponse{Token: "x", ExpiresAt: clk.Now().Add(-time.Second)}, nil
	}}
	if err := r3.Refresh(ctx); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("expired response: %v", err)
	}
	if _, err := r3.Token(); !errors.Is(err, ErrNoToken) {
		t.Fatal("expired response stored")
	}
}

// TestRefresherRunKeepsHeldToken: Run does not refetch a token obtained just before.
func TestRefresherRunKeepsHeldToken(t *testing.T) {
	clk := &fakeTime{t: time.Unix(1_800_000_000, 0)}
	s := &script{clk: clk, lifetime: 5 * time.Minute, outcomes: []bool{true}}
	r := &Refresher{Fetch: s.fetch, Now: clk.Now, Rand: func() float64 { return 0.5 }}
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(time.Minute) // Run starts a minute after the token was obtained
	runRefresher(t, r, clk, 2)
	if s.calls != 2 || clk.sleeps[0] != 3*time.Minute {
		t.Fatalf("%d fetches, sleeps %v; want 2 fetches, first sleep 3m (80%% of 5m, less the minute gone)", s.calls, clk.sleeps)
	}
}
