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
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }), func(_ *http.Request, scope string) {
		if scope != ratelimit.ScopeClient {
			t.Errorf("scope %q, want client", scope)
		}
		limited++
	})
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

// TestIPv6Slash64: the addresses of one IPv6 /64 share a bucket (a client cannot escape the
// limit by rotating addresses inside its /64), another /64 has its own, and an IPv4-mapped
// IPv6 address is the IPv4 client.
func TestIPv6Slash64(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	l := ratelimit.New(0.25, 1, 10, ratelimit.WithClock(clk.Now))
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }), nil)
	do := func(remote string) int {
		r := httptest.NewRequest("POST", "/v1/challenge", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for _, tc := range []struct {
		remote string
		code   int
	}{
		{"[2001:db8:1:2::1]:1000", 204},
		{"[2001:db8:1:2:ffff:ffff:ffff:fffe]:1000", 429}, // same /64
		{"[2001:db8:1:2::1%eth0]:1000", 429},             // same /64, with a zone
		{"[2001:db8:1:3::1]:1000", 204},                  // next /64
		{"192.0.2.1:1000", 204},
		{"[::ffff:192.0.2.1]:1000", 429}, // the same IPv4 client
		{"192.0.2.2:1000", 204},          // IPv4 is keyed on the whole address
	} {
		if code := do(tc.remote); code != tc.code {
			t.Errorf("%s: %d, want %d", tc.remote, code, tc.code)
		}
	}
	for remote, want := range map[string]string{
		"[2001:db8:1:2:3:4:5:6]:1": "2001:db8:1:2::/64",
		"[::ffff:10.0.0.1]:1":      "10.0.0.1",
		"10.0.0.1:1":               "10.0.0.1",
		"[fe80::1%eth0]:1":         "fe80::/64",
		"@":                        "@", // not an IP (a Unix socket peer)
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if got := ratelimit.ClientKey(r); got != want {
			t.Errorf("ClientKey(%s) = %q, want %q", remote, got, want)
		}
	}
}

// TestGlobalCeiling: many clients, each within its own limit, are held together to the global
// bucket (one IPv6 /48 holds 65,536 /64 clients: without a shared ceiling their buckets add
// up); a refusal by the ceiling gives the client its token back, and a client over its own
// limit spends no shared token.
func TestGlobalCeiling(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	l := ratelimit.New(1, 2, 100_000, ratelimit.WithClock(clk.Now), ratelimit.WithGlobal(10, 5))
	allowed := 0
	for i := 0; i < 1000; i++ {
		if scope, _ := l.Take("2001:db8:0:" + strconv.FormatInt(int64(i), 16) + "::/64"); scope == "" {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("%d of 1000 distinct clients allowed at once, want the global burst 5", allowed)
	}
	scope, wait := l.Take("192.0.2.1")
	if scope != ratelimit.ScopeGlobal || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("fresh client over the ceiling: scope %q wait %v, want global within 0.1 s at 10/s", scope, wait)
	}
	// 192.0.2.1 got its token back: once the global bucket refills, it still has its burst of 2.
	clk.Advance(time.Second) // global: 5 tokens again (burst), 192.0.2.1: full
	for i := 0; i < 2; i++ {
		if scope, _ := l.Take("192.0.2.1"); scope != "" {
			t.Fatalf("request %d of 192.0.2.1 after the refill refused by %s", i, scope)
		}
	}
	// Over its own limit, a client is refused by its own bucket and leaves the 3 shared
	// tokens left to others.
	for i := 0; i < 10; i++ {
		if scope, _ := l.Take("192.0.2.1"); scope != ratelimit.ScopeClient {
			t.Fatalf("flooding client: scope %q, want client", scope)
		}
	}
	for i := 0; i < 3; i++ {
		if scope, _ := l.Take("192.0.2." + strconv.Itoa(10+i)); scope != "" {
			t.Fatalf("other client %d refused by %s after a flood refused by its own limit", i, scope)
		}
	}
}

// TestGlobalOnly: with the per-client limit off, the global ceiling still applies and the
// middleware answers 429 with the global scope.
func TestGlobalOnly(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	l := ratelimit.New(0, 0, 10, ratelimit.WithClock(clk.Now), ratelimit.WithGlobal(0.5, 2))
	var scopes []string
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }),
		func(_ *http.Request, scope string) { scopes = append(scopes, scope) })
	codes := []int{}
	for i := 0; i < 3; i++ {
		r := httptest.NewRequest("POST", "/v1/enroll", nil)
		r.RemoteAddr = "198.51.100." + strconv.Itoa(i) + ":1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		codes = append(codes, w.Code)
		if w.Code == http.StatusTooManyRequests && w.Header().Get("Retry-After") != "2" {
			t.Errorf("Retry-After %q, want 2 at 0.5/s", w.Header().Get("Retry-After"))
		}
	}
	if codes[0] != 204 || codes[1] != 204 || codes[2] != http.StatusTooManyRequests || len(scopes) != 1 || scopes[0] != ratelimit.ScopeGlobal {
		t.Fatalf("codes %v scopes %v, want 204 204 429 and one global refusal", codes, scopes)
	}
}
