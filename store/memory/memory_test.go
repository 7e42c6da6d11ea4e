package memory

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/storetest"
)

var epoch = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func TestNonceStore(t *testing.T) {
	storetest.RunNonceStore(t, func(t *testing.T) (store.NonceStore, storetest.Clock) {
		clk := storetest.NewFakeClock(epoch)
		return New(WithClock(clk.Now)), clk
	})
}

func TestClockStore(t *testing.T) {
	storetest.RunClockStore(t, func(t *testing.T) (store.ClockStore, storetest.Clock) {
		clk := storetest.NewFakeClock(epoch)
		return New(WithClock(clk.Now)), clk
	})
}

// TestSweep checks that expired entries leave memory even if nobody consumes them.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	clk := storetest.NewFakeClock(epoch)
	s := New(WithClock(clk.Now), WithSweepInterval(time.Minute))
	for i := 0; i < 1000; i++ {
		n := binary.BigEndian.AppendUint32(nil, uint32(i))
		if err := s.PutNonce(ctx, n, nil, time.Second); err != nil {
			t.Fatal(err)
		}
		if err := s.AdvanceClock(ctx, string(n), store.ClockInfo{}, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if n, c := s.len(); n != 1000 || c != 1000 {
		t.Fatalf("len = %d nonces, %d clocks; want 1000, 1000", n, c)
	}
	clk.Advance(time.Minute)
	if err := s.PutNonce(ctx, []byte("fresh"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n, c := s.len(); n != 1 || c != 0 {
		t.Fatalf("after sweep len = %d nonces, %d clocks; want 1, 0", n, c)
	}
}

// TestConsumeRemovesExpired checks the lazy path: consuming an expired nonce deletes it.
func TestConsumeRemovesExpired(t *testing.T) {
	ctx := context.Background()
	clk := storetest.NewFakeClock(epoch)
	s := New(WithClock(clk.Now))
	if err := s.PutNonce(ctx, []byte("n"), nil, time.Second); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if _, err := s.ConsumeNonce(ctx, []byte("n")); !errors.Is(err, store.ErrNonceUnknown) {
		t.Fatalf("ConsumeNonce = %v, want ErrNonceUnknown", err)
	}
	if n, _ := s.len(); n != 0 {
		t.Fatalf("len = %d, want 0", n)
	}
}

func TestMaxNonces(t *testing.T) {
	ctx := context.Background()
	clk := storetest.NewFakeClock(epoch)
	s := New(WithClock(clk.Now), WithMaxNonces(2))
	for _, n := range []string{"a", "b"} {
		if err := s.PutNonce(ctx, []byte(n), nil, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutNonce(ctx, []byte("c"), nil, time.Second); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("PutNonce over the cap = %v, want ErrUnavailable", err)
	}
	// Consuming frees a slot.
	if _, err := s.ConsumeNonce(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutNonce(ctx, []byte("c"), nil, time.Second); err != nil {
		t.Fatalf("PutNonce after consume: %v", err)
	}
	// Expiry frees slots too, before the sweep interval is due.
	clk.Advance(time.Second)
	if err := s.PutNonce(ctx, []byte("d"), nil, time.Second); err != nil {
		t.Fatalf("PutNonce after expiry: %v", err)
	}
}

func TestCanceledContextIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := New()
	err := s.PutNonce(ctx, []byte("n"), nil, time.Second)
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("PutNonce = %v, want ErrUnavailable and context.Canceled", err)
	}
	if _, err := s.ConsumeNonce(ctx, []byte("n")); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ConsumeNonce = %v, want ErrUnavailable", err)
	}
	if err := s.AdvanceClock(ctx, "ak", store.ClockInfo{}, time.Second); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("AdvanceClock = %v, want ErrUnavailable", err)
	}
}

func BenchmarkNonceRoundTrip(b *testing.B) {
	ctx := context.Background()
	s := New()
	nonce := make([]byte, 32)
	value := []byte("binding-data")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(nonce, uint64(i))
		if err := s.PutNonce(ctx, nonce, value, time.Minute); err != nil {
			b.Fatal(err)
		}
		if _, err := s.ConsumeNonce(ctx, nonce); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAKStore(t *testing.T) {
	storetest.RunAKStore(t, func(t *testing.T) store.AKStore { return New() })
}

func TestStatusStore(t *testing.T) {
	storetest.RunStatusStore(t, func(t *testing.T) (store.StatusStore, storetest.Clock) {
		clk := storetest.NewFakeClock(epoch)
		return New(WithClock(clk.Now), WithStatusListSize(16)), clk
	})
}

func TestRevocationFeed(t *testing.T) {
	storetest.RunRevocationFeed(t, func(t *testing.T) (store.StatusStore, store.RevocationFeed) {
		s := New(WithStatusListSize(16))
		return s, s
	})
}

func TestBlobStore(t *testing.T) {
	storetest.RunBlobStore(t, func(t *testing.T) store.BlobStore { return New() })
}
