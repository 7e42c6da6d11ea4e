package ratelimit_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/ratelimit"
)

// TestConcurrencyCaps: a client holds at most perClient slots (its /64 counts as one client),
// all clients together at most total; a released slot is free again, and releasing twice
// frees it once.
func TestConcurrencyCaps(t *testing.T) {
	c := ratelimit.NewConcurrency(5, 2)
	var rel []func()
	take := func(key, want string) {
		t.Helper()
		r, scope := c.Acquire(key)
		if scope != want || (r != nil) != (want == "") {
			t.Fatalf("Acquire(%s): scope %q, want %q", key, scope, want)
		}
		if r != nil {
			rel = append(rel, r)
		}
	}
	take("a", "")
	take("a", "")
	take("a", ratelimit.ScopeClient)
	take("b", "")
	take("b", "")
	take("c", "")
	take("d", ratelimit.ScopeGlobal)
	if n, clients := c.InUse(); n != 5 || clients != 3 {
		t.Fatalf("InUse %d slots, %d clients; want 5, 3", n, clients)
	}
	rel[0]()
	rel[0]() // twice: freed once
	take("d", "")
	take("d", ratelimit.ScopeGlobal)
	for _, r := range rel {
		r()
	}
	if n, clients := c.InUse(); n != 0 || clients != 0 {
		t.Fatalf("after every release: %d slots, %d clients", n, clients)
	}
}

// TestConcurrencyMiddleware: a request holds its slot while it is served; beyond the cap the
// answer is 503 with Retry-After and the JSON error, and the refusal is reported with its
// scope.
func TestConcurrencyMiddleware(t *testing.T) {
	c := ratelimit.NewConcurrency(3, 1)
	inside := make(chan struct{})
	leave := make(chan struct{})
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		inside <- struct{}{}
		<-leave
		w.WriteHeader(204)
	}), 30*time.Second, func(_ *http.Request, scope string) {
		if scope != ratelimit.ScopeClient {
			t.Errorf("scope %q, want client", scope)
		}
	})
	do := func(remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/v1/revocations", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	done := make(chan int)
	go func() { done <- do("[2001:db8:1:2::1]:1").Code }()
	<-inside
	w := do("[2001:db8:1:2::99]:2") // the same /64
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "30" ||
		!strings.Contains(w.Body.String(), `"error":"temporarily_unavailable"`) {
		t.Fatalf("second stream of one client: %d Retry-After %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	close(leave)
	if code := <-done; code != 204 {
		t.Fatalf("first stream: %d", code)
	}
	go func() { <-inside }()
	if w := do("[2001:db8:1:2::99]:2"); w.Code != 204 {
		t.Fatalf("after the first stream ended: %d", w.Code)
	}
}
