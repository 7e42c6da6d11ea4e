package attester

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/passport-attest/passport/api"
)

// TestActivateNotRetried: a 429 from the activation endpoint is not sent again (the issuer may
// have used up the enrollment before refusing), while the same answer from the challenge
// endpoint is retried once.
func TestActivateNotRetried(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"error":"reenroll_too_soon"}`))
	}))
	defer srv.Close()
	c := &Client{IssuerURL: srv.URL}
	for path, want := range map[string]int32{api.PathEnrollActivate: 1, api.PathChallenge: 2} {
		calls.Store(0)
		if err := c.post(context.Background(), path, struct{}{}, &struct{}{}); err == nil {
			t.Fatalf("%s: no error", path)
		}
		if got := calls.Load(); got != want {
			t.Errorf("%s: %d requests, want %d", path, got, want)
		}
	}
}
