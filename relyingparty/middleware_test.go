package relyingparty

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/token"
)

func TestMiddleware(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	var seen *token.Claims
	var seenRaw string
	h := Middleware(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := ClaimsFromContext(r.Context())
		raw, ok2 := TokenFromContext(r.Context())
		if !ok || !ok2 {
			t.Error("claims or token missing from the context")
		}
		seen, seenRaw = c, raw
		w.WriteHeader(http.StatusNoContent)
	}))
	good := claimsAt(t, clk.Now())
	goodTok := iss.sign(t, good)
	expired := claimsAt(t, clk.Now())
	expired.Expiry = clk.Now().Add(-time.Hour).Unix()
	warning := claimsAt(t, clk.Now())
	warning.Submods[token.SubmodTPM].Status = token.TierWarning

	tests := []struct {
		name      string
		auth      []string
		status    int
		challenge string // exact WWW-Authenticate, "" for none
		code      string
	}{
		{name: "valid", auth: []string{"Bearer " + goodTok}, status: 204},
		{name: "scheme case-insensitive", auth: []string{"bearer " + goodTok}, status: 204},
		{name: "missing", status: 401, challenge: `Bearer realm="passport"`, code: "unauthorized"},
		{name: "garbage", auth: []string{"Bearer abc.def.ghi"}, status: 401, code: "invalid_token",
			challenge: `Bearer realm="passport", error="invalid_token", error_description="malformed token"`},
		{name: "expired", auth: []string{"Bearer " + iss.sign(t, expired)}, status: 401, code: "invalid_token",
			challenge: `Bearer realm="passport", error="invalid_token", error_description="token expired"`},
		{name: "forged", auth: []string{"Bearer " + newSigner(t).forge(t, iss.header(), good)}, status: 401, code: "invalid_token",
			challenge: `Bearer realm="passport", error="invalid_token", error_description="invalid signature"`},
		{name: "warning tier", auth: []string{"Bearer " + iss.sign(t, warning)}, status: 403, code: "insufficient_scope",
			challenge: `Bearer realm="passport", error="insufficient_scope", error_description="attestation status below the required tier"`},
		{name: "basic scheme", auth: []string{"Basic dXNlcjpwYXNz"}, status: 400, code: "invalid_request",
			challenge: `Bearer realm="passport", error="invalid_request", error_description="malformed Authorization header"`},
		{name: "two headers", auth: []string{"Bearer " + goodTok, "Bearer " + goodTok}, status: 400, code: "invalid_request",
			challenge: `Bearer realm="passport", error="invalid_request", error_description="malformed Authorization header"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen, seenRaw = nil, ""
			r := httptest.NewRequest(http.MethodGet, "/resource", nil)
			for _, a := range tc.auth {
				r.Header.Add("Authorization", a)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tc.challenge {
				t.Fatalf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			if tc.status/100 == 2 {
				if seen == nil || seen.ID != good.ID || seenRaw != goodTok {
					t.Fatalf("handler saw claims %v", seen)
				}
				return
			}
			if seen != nil {
				t.Fatal("handler called for a refused request")
			}
			var body api.Error
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Code != tc.code {
				t.Fatalf("body %q (%v), want code %s", w.Body.String(), err, tc.code)
			}
			if strings.Contains(w.Body.String(), "eyJ") || strings.Contains(w.Body.String(), testIssuer) {
				t.Fatalf("response echoes the token or its claims: %s", w.Body.String())
			}
		})
	}
}

func TestMiddlewareOptions(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	tok := iss.sign(t, claimsAt(t, clk.Now()))
	var handled error
	mw := Middleware(v,
		WithRealm(`rp "one"`),
		WithTokenExtractor(func(r *http.Request) (string, error) { return r.Header.Get("X-Passport"), nil }),
	)
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got := w.Header().Get("WWW-Authenticate"); w.Code != 401 || got != `Bearer realm="rp \"one\""` {
		t.Fatalf("%d %q", w.Code, got)
	}
	r.Header.Set("X-Passport", tok)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 204 {
		t.Fatalf("custom extractor: %d", w.Code)
	}

	h = Middleware(v, WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
		handled = err
		w.WriteHeader(418)
	}))(http.NotFoundHandler())
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != 418 || handled != ErrNoToken {
		t.Fatalf("error handler: %d, %v", w.Code, handled)
	}
}

// TestMiddlewareKeysUnavailable: an issuer whose keys were never fetched is a 503, not a 401.
func TestMiddlewareKeysUnavailable(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	srv := newJWKSServer(t, iss.ring)
	srv.mode.Store("500")
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = srv.keySet(clk) })
	h := Middleware(v)(http.NotFoundHandler())
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+iss.sign(t, claimsAt(t, clk.Now())))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("WWW-Authenticate") != "" {
		t.Fatalf("%d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
}
