// Package storetest is the conformance suite that every backend of store.NonceStore and
// store.ClockStore must pass (DESIGN.md sections 2 and 5; modelled on dex's
// storage/conformance). A backend's test calls RunNonceStore and RunClockStore with a
// constructor that returns a fresh, empty store and a Clock the suite uses to let time pass.
//
// The suite never asserts how long anything takes. Subtests run in parallel, so the
// constructor must be safe for concurrent use and must isolate the stores it returns (a fresh
// map, or a fresh random key prefix).
package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/passport-attest/passport/store"
)

// Clock lets the suite move a backend's notion of time forward.
type Clock interface {
	// Advance returns once at least d has passed for the store under test, so that an entry
	// stored earlier with a TTL of at most d is expired.
	Advance(d time.Duration)
}

// FakeClock is a manual Clock for backends with an injectable time source (memory.WithClock).
// Its zero value is not usable; build one with NewFakeClock. It is safe for concurrent use.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewFakeClock returns a FakeClock that reads start until advanced.
func NewFakeClock(start time.Time) *FakeClock {
	return &FakeClock{now: start}
}

// Now returns the clock's current time; pass it as the store's time source.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d at once (no sleeping).
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// RealClock is a Clock for backends that expire entries on their own wall clock (Redis):
// Advance sleeps. The suite keeps the durations it asks for short (well under a second).
type RealClock struct {
	// Margin is added to every Advance to absorb clock granularity on the store's side
	// (Redis expires with millisecond resolution). Zero means 50 ms.
	Margin time.Duration
}

// Advance sleeps for d plus the margin.
func (c RealClock) Advance(d time.Duration) {
	m := c.Margin
	if m == 0 {
		m = 50 * time.Millisecond
	}
	time.Sleep(d + m)
}

const (
	// longTTL is the TTL of entries that must not expire during a test.
	longTTL = 10 * time.Minute
	// shortTTL is the TTL of entries the suite lets expire with Clock.Advance. Short because a
	// RealClock sleeps for it; long enough that an entry never expires between the put and the
	// first operation on it.
	shortTTL = 200 * time.Millisecond
	// racers is how many goroutines race in the concurrency cases.
	racers = 100
)

// RunNonceStore runs the store.NonceStore conformance cases as parallel subtests of t.
// newStore is called once per subtest and must return an empty store and the Clock that
// advances its time.
func RunNonceStore(t *testing.T, newStore func(t *testing.T) (store.NonceStore, Clock)) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, s store.NonceStore, clk Clock)
	}{
		{"PutConsume", testPutConsume},
		{"ConsumeTwice", testConsumeTwice},
		{"ConsumeUnknown", testConsumeUnknown},
		{"PutTwice", testPutTwice},
		{"Expiry", testNonceExpiry},
		{"ConcurrentConsume", testConcurrentConsume},
		{"ConcurrentPut", testConcurrentPut},
		{"Isolation", testNonceIsolation},
		{"EmptyValue", testEmptyValue},
		{"CallerBuffers", testCallerBuffers},
		{"InvalidTTL", testInvalidTTL},
		{"CanceledContext", testNonceCanceledContext},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, clk := newStore(t)
			c.run(t, s, clk)
		})
	}
}

// RunClockStore runs the store.ClockStore conformance cases as parallel subtests of t.
// newStore is called once per subtest and must return an empty store and the Clock that
// advances its time.
func RunClockStore(t *testing.T, newStore func(t *testing.T) (store.ClockStore, Clock)) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, s store.ClockStore, clk Clock)
	}{
		{"FirstRecord", testClockFirst},
		{"Equal", testClockEqual},
		{"Forward", testClockForward},
		{"Backward", testClockBackward},
		{"LargeValues", testClockLargeValues},
		{"PerAK", testClockPerAK},
		{"Expiry", testClockExpiry},
		{"Concurrent", testClockConcurrent},
		{"InvalidTTL", testClockInvalidTTL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, clk := newStore(t)
			c.run(t, s, clk)
		})
	}
}

// newNonce returns 32 random bytes, the issuer's nonce size.
func newNonce(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("rand: %v", err)
	}
	return b
}

func mustPut(t *testing.T, s store.NonceStore, nonce, value []byte, ttl time.Duration) {
	t.Helper()
	if err := s.PutNonce(context.Background(), nonce, value, ttl); err != nil {
		t.Fatalf("PutNonce: %v", err)
	}
}

func mustConsume(t *testing.T, s store.NonceStore, nonce, want []byte) {
	t.Helper()
	got, err := s.ConsumeNonce(context.Background(), nonce)
	if err != nil {
		t.Fatalf("ConsumeNonce: %v", err)
	}
	if string(got) != string(want) {
		t.Fatalf("ConsumeNonce = %q, want %q", got, want)
	}
}

func wantUnknown(t *testing.T, s store.NonceStore, nonce []byte) {
	t.Helper()
	got, err := s.ConsumeNonce(context.Background(), nonce)
	if !errors.Is(err, store.ErrNonceUnknown) {
		t.Fatalf("ConsumeNonce = %q, %v; want error wrapping ErrNonceUnknown", got, err)
	}
	if got != nil {
		t.Errorf("ConsumeNonce returned value %q alongside error", got)
	}
}

func testPutConsume(t *testing.T, s store.NonceStore, _ Clock) {
	n := newNonce(t)
	mustPut(t, s, n, []byte("binding-data"), longTTL)
	mustConsume(t, s, n, []byte("binding-data"))
}

func testConsumeTwice(t *testing.T, s store.NonceStore, _ Clock) {
	n := newNonce(t)
	mustPut(t, s, n, []byte("v"), longTTL)
	mustConsume(t, s, n, []byte("v"))
	wantUnknown(t, s, n)
}

func testConsumeUnknown(t *testing.T, s store.NonceStore, _ Clock) {
	wantUnknown(t, s, newNonce(t))
	wantUnknown(t, s, nil)
}

func testPutTwice(t *testing.T, s store.NonceStore, _ Clock) {
	n := newNonce(t)
	mustPut(t, s, n, []byte("first"), longTTL)
	err := s.PutNonce(context.Background(), n, []byte("second"), longTTL)
	if !errors.Is(err, store.ErrNonceExists) {
		t.Fatalf("second PutNonce = %v, want error wrapping ErrNonceExists", err)
	}
	// The refused put must not have replaced the first value.
	mustConsume(t, s, n, []byte("first"))
}

func testNonceExpiry(t *testing.T, s store.NonceStore, clk Clock) {
	n := newNonce(t)
	mustPut(t, s, n, []byte("v"), shortTTL)
	clk.Advance(shortTTL)
	wantUnknown(t, s, n)
	// An expired nonce is gone: the same bytes may be stored again.
	mustPut(t, s, n, []byte("again"), longTTL)
	mustConsume(t, s, n, []byte("again"))

	// Expiry without any consume in between also frees the key for PutNonce.
	m := newNonce(t)
	mustPut(t, s, m, []byte("v"), shortTTL)
	clk.Advance(shortTTL)
	mustPut(t, s, m, []byte("w"), longTTL)
	mustConsume(t, s, m, []byte("w"))
}

func testConcurrentConsume(t *testing.T, s store.NonceStore, _ Clock) {
	for round := 0; round < 3; round++ {
		n := newNonce(t)
		mustPut(t, s, n, []byte("prize"), longTTL)
		var (
			start   = make(chan struct{})
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners int
			others  []error
		)
		for i := 0; i < racers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				v, err := s.ConsumeNonce(context.Background(), n)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && string(v) == "prize":
					winners++
				case errors.Is(err, store.ErrNonceUnknown):
				default:
					others = append(others, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if winners != 1 {
			t.Errorf("round %d: %d of %d concurrent consumers won, want exactly 1", round, winners, racers)
		}
		for _, err := range others {
			t.Errorf("round %d: unexpected consume result: %v", round, err)
		}
	}
}

func testConcurrentPut(t *testing.T, s store.NonceStore, _ Clock) {
	n := newNonce(t)
	var (
		start   = make(chan struct{})
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []int
		others  []error
	)
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := s.PutNonce(context.Background(), n, []byte{byte(i)}, longTTL)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, i)
			case errors.Is(err, store.ErrNonceExists):
			default:
				others = append(others, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range others {
		t.Errorf("unexpected put result: %v", err)
	}
	if len(winners) != 1 {
		t.Fatalf("%d of %d concurrent puts succeeded, want exactly 1", len(winners), racers)
	}
	mustConsume(t, s, n, []byte{byte(winners[0])})
}

func testNonceIsolation(t *testing.T, s store.NonceStore, _ Clock) {
	base := newNonce(t)
	// Nonces that share prefixes or differ in one bit must not collide.
	nonces := [][]byte{
		base,
		base[:31],
		base[:1],
		append(append([]byte{}, base...), 0),
		append([]byte{base[0] ^ 1}, base[1:]...),
		[]byte("{tag}"),
		[]byte("nonce:*"),
	}
	for i, n := range nonces {
		mustPut(t, s, n, []byte{'v', byte('0' + i)}, longTTL)
	}
	// Consume in reverse order; each returns its own value.
	for i := len(nonces) - 1; i >= 0; i-- {
		mustConsume(t, s, nonces[i], []byte{'v', byte('0' + i)})
	}
	for _, n := range nonces {
		wantUnknown(t, s, n)
	}
}

func testEmptyValue(t *testing.T, s store.NonceStore, _ Clock) {
	for _, v := range [][]byte{nil, {}} {
		n := newNonce(t)
		mustPut(t, s, n, v, longTTL)
		got, err := s.ConsumeNonce(context.Background(), n)
		if err != nil {
			t.Fatalf("ConsumeNonce: %v", err)
		}
		if len(got) != 0 {
			t.Fatalf("ConsumeNonce = %q, want empty", got)
		}
		wantUnknown(t, s, n)
	}
}

func testCallerBuffers(t *testing.T, s store.NonceStore, _ Clock) {
	n := newNonce(t)
	nonce := append([]byte{}, n...)
	value := []byte("original")
	mustPut(t, s, nonce, value, longTTL)
	// The store must not keep references to the caller's slices.
	nonce[0] ^= 0xff
	copy(value, "mutated!")
	mustConsume(t, s, n, []byte("original"))
}

func testInvalidTTL(t *testing.T, s store.NonceStore, _ Clock) {
	for _, ttl := range []time.Duration{0, -time.Second} {
		n := newNonce(t)
		if err := s.PutNonce(context.Background(), n, []byte("v"), ttl); err == nil {
			t.Errorf("PutNonce with ttl %v succeeded, want an error", ttl)
		}
		wantUnknown(t, s, n)
	}
}

func testNonceCanceledContext(t *testing.T, s store.NonceStore, _ Clock) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := newNonce(t)
	if err := s.PutNonce(ctx, n, []byte("v"), longTTL); err == nil {
		t.Errorf("PutNonce with a canceled context succeeded, want an error")
	}
	m := newNonce(t)
	mustPut(t, s, m, []byte("v"), longTTL)
	if _, err := s.ConsumeNonce(ctx, m); err == nil {
		t.Errorf("ConsumeNonce with a canceled context succeeded, want an error")
	}
}

// Clock store cases.

func advance(s store.ClockStore, ak string, c store.ClockInfo) error {
	return s.AdvanceClock(context.Background(), ak, c, longTTL)
}

func mustAdvance(t *testing.T, s store.ClockStore, ak string, c store.ClockInfo) {
	t.Helper()
	if err := advance(s, ak, c); err != nil {
		t.Fatalf("AdvanceClock(%q, %+v): %v", ak, c, err)
	}
}

func wantRollback(t *testing.T, s store.ClockStore, ak string, c store.ClockInfo) {
	t.Helper()
	if err := advance(s, ak, c); !errors.Is(err, store.ErrClockRollback) {
		t.Fatalf("AdvanceClock(%q, %+v) = %v, want error wrapping ErrClockRollback", ak, c, err)
	}
}

// pred returns the greatest ClockInfo strictly Before c. c must not be the zero value.
func pred(c store.ClockInfo) store.ClockInfo {
	switch {
	case c.Clock > 0:
		c.Clock--
	case c.RestartCount > 0:
		c.RestartCount--
		c.Clock = math.MaxUint64
	default:
		c.ResetCount--
		c.RestartCount = math.MaxUint32
		c.Clock = math.MaxUint64
	}
	return c
}

// wantRecorded checks, through the interface alone, that the record for ak is exactly c: its
// predecessor is refused (record >= c) and c itself is accepted (record <= c). It leaves the
// record at c with a fresh TTL.
func wantRecorded(t *testing.T, s store.ClockStore, ak string, c store.ClockInfo) {
	t.Helper()
	if err := advance(s, ak, pred(c)); !errors.Is(err, store.ErrClockRollback) {
		t.Fatalf("record for %q is below %+v: AdvanceClock(%+v) = %v, want ErrClockRollback", ak, c, pred(c), err)
	}
	if err := advance(s, ak, c); err != nil {
		t.Fatalf("record for %q is above %+v: AdvanceClock(%+v) = %v", ak, c, c, err)
	}
}

var base = store.ClockInfo{ResetCount: 5, RestartCount: 7, Clock: 100_000}

func testClockFirst(t *testing.T, s store.ClockStore, _ Clock) {
	mustAdvance(t, s, "ak-first", base)
	wantRecorded(t, s, "ak-first", base)
	// The zero value is a valid first record too.
	mustAdvance(t, s, "ak-zero", store.ClockInfo{})
	mustAdvance(t, s, "ak-zero", store.ClockInfo{})
}

func testClockEqual(t *testing.T, s store.ClockStore, _ Clock) {
	mustAdvance(t, s, "ak", base)
	mustAdvance(t, s, "ak", base)
	mustAdvance(t, s, "ak", base)
	wantRecorded(t, s, "ak", base)
}

func testClockForward(t *testing.T, s store.ClockStore, _ Clock) {
	steps := []store.ClockInfo{
		base,
		{ResetCount: 5, RestartCount: 7, Clock: 100_001},            // clock ticks
		{ResetCount: 5, RestartCount: 8, Clock: 10},                 // restart, clock may drop
		{ResetCount: 6, RestartCount: 0, Clock: 0},                  // reset, both drop
		{ResetCount: 6, RestartCount: 0, Clock: math.MaxUint32 + 1}, // clock beyond 32 bits
		{ResetCount: math.MaxUint32, RestartCount: 0, Clock: 1},     // reset jumps to max
		{ResetCount: math.MaxUint32, RestartCount: math.MaxUint32, Clock: 1},
	}
	for _, c := range steps {
		mustAdvance(t, s, "ak", c)
	}
	wantRecorded(t, s, "ak", steps[len(steps)-1])
}

func testClockBackward(t *testing.T, s store.ClockStore, _ Clock) {
	backs := []struct {
		name string
		c    store.ClockInfo
	}{
		{"clock", store.ClockInfo{ResetCount: 5, RestartCount: 7, Clock: 99_999}},
		{"clock-zero", store.ClockInfo{ResetCount: 5, RestartCount: 7, Clock: 0}},
		{"restart", store.ClockInfo{ResetCount: 5, RestartCount: 6, Clock: 100_000}},
		{"restart-with-later-clock", store.ClockInfo{ResetCount: 5, RestartCount: 6, Clock: math.MaxUint64}},
		{"reset", store.ClockInfo{ResetCount: 4, RestartCount: 7, Clock: 100_000}},
		{"reset-with-later-restart-and-clock", store.ClockInfo{ResetCount: 4, RestartCount: math.MaxUint32, Clock: math.MaxUint64}},
		{"all", store.ClockInfo{}},
	}
	for _, b := range backs {
		t.Run(b.name, func(t *testing.T) {
			ak := "ak-" + b.name
			mustAdvance(t, s, ak, base)
			wantRollback(t, s, ak, b.c)
			wantRecorded(t, s, ak, base)
			// A refused value stays refused.
			wantRollback(t, s, ak, b.c)
			wantRecorded(t, s, ak, base)
		})
	}
}

func testClockLargeValues(t *testing.T, s store.ClockStore, _ Clock) {
	// Clock values that a float64 cannot tell apart must still be ordered exactly.
	hi := store.ClockInfo{ResetCount: 1, RestartCount: 1, Clock: 1<<53 + 1}
	lo := store.ClockInfo{ResetCount: 1, RestartCount: 1, Clock: 1 << 53}
	mustAdvance(t, s, "ak-53", hi)
	wantRollback(t, s, "ak-53", lo)
	wantRecorded(t, s, "ak-53", hi)

	top := store.ClockInfo{ResetCount: 1, RestartCount: 1, Clock: math.MaxUint64}
	mustAdvance(t, s, "ak-64", top)
	wantRollback(t, s, "ak-64", pred(top))
	wantRecorded(t, s, "ak-64", top)
}

func testClockPerAK(t *testing.T, s store.ClockStore, _ Clock) {
	high := store.ClockInfo{ResetCount: 9, RestartCount: 9, Clock: 9_999}
	low := store.ClockInfo{ResetCount: 1, RestartCount: 1, Clock: 1}
	aks := []string{"ak-a", "ak-b", "ak-a:", "{ak-a}", "ak-ä", ""}
	mustAdvance(t, s, aks[0], high)
	for _, ak := range aks[1:] {
		mustAdvance(t, s, ak, low)
	}
	wantRollback(t, s, aks[0], low)
	wantRecorded(t, s, aks[0], high)
	for _, ak := range aks[1:] {
		wantRecorded(t, s, ak, low)
	}
}

func testClockExpiry(t *testing.T, s store.ClockStore, clk Clock) {
	ctx := context.Background()
	if err := s.AdvanceClock(ctx, "ak", base, shortTTL); err != nil {
		t.Fatalf("AdvanceClock: %v", err)
	}
	// A refused value must not extend the record's life.
	if err := s.AdvanceClock(ctx, "ak", pred(base), longTTL); !errors.Is(err, store.ErrClockRollback) {
		t.Fatalf("AdvanceClock(pred) = %v, want ErrClockRollback", err)
	}
	clk.Advance(shortTTL)
	// The record is forgotten after its TTL: any value is a first record again.
	low := store.ClockInfo{Clock: 1}
	mustAdvance(t, s, "ak", low)
	wantRecorded(t, s, "ak", low)
}

func testClockConcurrent(t *testing.T, s store.ClockStore, _ Clock) {
	// Each goroutine submits a different interleaving of the same increasing sequence. Whatever
	// the schedule, no goroutine may see a value accepted that is Before a value it saw accepted
	// earlier, and the final record must be the maximum.
	const goroutines, steps = 8, 40
	seq := make([]store.ClockInfo, steps) // strictly increasing
	for i := range seq {
		seq[i] = store.ClockInfo{ResetCount: uint32(i / 20), RestartCount: uint32(i / 5 % 4), Clock: uint64(1000 + i)}
	}
	var (
		start = make(chan struct{})
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []string
	)
	report := func(msg string) {
		errMu.Lock()
		defer errMu.Unlock()
		errs = append(errs, msg)
	}
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var last *store.ClockInfo
			for i := 0; i < steps; i++ {
				// A deterministic per-goroutine order: stride 2g+1 from offset g, and
				// odd goroutines walk it backwards.
				j := (i*(2*g+1) + g) % steps
				if g%2 == 1 {
					j = steps - 1 - j
				}
				c := seq[j]
				err := advance(s, "ak-race", c)
				switch {
				case err == nil:
					if last != nil && c.Before(*last) {
						report("a value Before an earlier accepted one was accepted")
					}
					cc := c
					last = &cc
				case errors.Is(err, store.ErrClockRollback):
				default:
					report("unexpected error: " + err.Error())
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	wantRecorded(t, s, "ak-race", seq[steps-1])
}

func testClockInvalidTTL(t *testing.T, s store.ClockStore, _ Clock) {
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := s.AdvanceClock(context.Background(), "ak", base, ttl); err == nil {
			t.Errorf("AdvanceClock with ttl %v succeeded, want an error", ttl)
		}
	}
	// A refused call leaves no record behind: a lower value is still a first record.
	mustAdvance(t, s, "ak", store.ClockInfo{})
}
