package kbs_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/passport-attest/passport/kbs"
)

// TestWriteRefusalRetryAfter: a 503 refusal tells the client when to retry; other refusals
// do not.
func TestWriteRefusalRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   string
	}{
		{http.StatusServiceUnavailable, kbs.RetryAfterUnavailable},
		{http.StatusUnauthorized, ""},
		{http.StatusNotFound, ""},
	} {
		w := httptest.NewRecorder()
		kbs.WriteRefusal(w, &kbs.Refusal{Status: tc.status, Code: "temporarily_unavailable", Reason: "store_unavailable", Description: "x"})
		if w.Code != tc.status || w.Header().Get("Retry-After") != tc.want {
			t.Errorf("status %d: got %d, Retry-After %q, want %q", tc.status, w.Code, w.Header().Get("Retry-After"), tc.want)
		}
	}
}
