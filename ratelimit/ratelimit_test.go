package ratelimit_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/passport-attest/passport/ratelimit"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestBurstThenRefill(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	l := ratelimit.New(2, 3, 10, ratelimit.WithClock(clk.Now))
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("past the burst: ok=%v wait=%v, want refused with a wait of at most 0.5 s at 2/s", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another client refused")
	}
	clk.Advance(500 * time.Millisecond)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused after a token was refilled")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("two requests allowed on one refilled token")
	}
}

// TestBoundedClients: a flood from many addresses keeps at most maxClients buckets.
func TestBoundedClients(t *testing.T) {
	l := ratelimit.New(1, 1, 100)
	for i := 0; i < 10_000; i++ {
		l.Allow("10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256))
	}
	if n := l.Len(); n != 100 {
		t.Fatalf("%d clients remembered, want 100", n)
	}
}

func TestDisabled(t *testing.T) {
	l := ratelimit.New(0, 0, 1)
	for i := 0; i < 1000; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatal("a disabled limiter refused")
		}
	}
}

func TestMiddleware429(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	l := ratelimit.New(0.25, 1, 10, ratelimit.WithClock(clk.Now))
	limited := 0
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }), func(*http.Request) { limited++ })
	do := func(remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/v1/challenge", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do("192.0.2.1:1000"); w.Code != 204 {
		t.Fatalf("first request: %d", w.Code)
	}
	w := do("192.0.2.1:1001") // same IP, another port: same client
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "4" || limited != 1 {
		t.Fatalf("second request: %d Retry-After %q limited %d, want 429, 4 s, 1", w.Code, w.Header().Get("Retry-After"), limited)
	}
	if w := do("[2001:db8::1]:1000"); w.Code != 204 {
		t.Fatalf("another client: %d", w.Code)
	}
}
