package attester_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/proto/attest"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
)

// fakeIssuer is an httptest issuer whose answers the test sets per path.
type fakeIssuer struct {
	challenge http.HandlerFunc
	attest    http.HandlerFunc
	attests   atomic.Int32
}

func (f *fakeIssuer) start(t *testing.T) *attester.Client {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.PathChallenge, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "content type", http.StatusUnsupportedMediaType)
			return
		}
		f.challenge(w, r)
	})
	mux.HandleFunc("POST "+api.PathAttest, func(w http.ResponseWriter, r *http.Request) {
		f.attests.Add(1)
		f.attest(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &attester.Client{IssuerURL: srv.URL + "/"}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func challengeWith(nonce []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.ChallengeResponse{Nonce: nonce, ExpiresAt: time.Now().Add(time.Minute)})
	}
}

// TestClientAttest runs the whole exchange against a fake issuer that verifies the evidence
// the way the real one does (quote, extraData binding, event log).
func TestClientAttest(t *testing.T) {
	a, _ := newSimAttester(t, nil)
	nonce := randomNonce(t)
	f := &fakeIssuer{challenge: challengeWith(nonce)}
	f.attest = func(w http.ResponseWriter, r *http.Request) {
		var req api.AttestRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Code: "invalid_request", Description: err.Error()})
			return
		}
		if string(req.Nonce) != string(nonce) || req.Audience != "rp.example" {
			writeJSON(w, http.StatusBadRequest, api.Error{Code: "invalid_request", Description: "nonce or audience"})
			return
		}
		extra, err := api.ExtraData(req.Nonce, req.CNF)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Code: "invalid_request", Description: err.Error()})
			return
		}
		var att attest.Attestation
		if err := proto.Unmarshal(req.Attestation, &att); err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Code: "invalid_request", Description: err.Error()})
			return
		}
		if _, err := verifyAttestation(a, &att, extra); err != nil {
			writeJSON(w, http.StatusForbidden, api.Error{Code: "evidence_refused", Description: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, api.AttestResponse{Token: "header.claims.sig", ExpiresAt: time.Now().Add(5 * time.Minute)})
	}
	c := f.start(t)
	resp, err := c.Attest(context.Background(), a, "rp.example")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Token != "header.claims.sig" {
		t.Fatalf("token %q", resp.Token)
	}
}

func TestClientIssuerErrors(t *testing.T) {
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		wantStatus int
		wantCode   string
	}{
		{"json error", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusConflict, api.Error{Code: "nonce_reused", Description: "nonce already consumed"})
		}, 409, "nonce_reused"},
		{"plain text error", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "upstream exploded", http.StatusBadGateway)
		}, 502, "http_502"},
		{"json without code", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"message": "redis down"})
		}, 503, "http_503"},
		{"huge description", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusForbidden, api.Error{Code: "evidence_refused", Description: strings.Repeat("x", 100000)})
		}, 403, "evidence_refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeIssuer{challenge: tc.handler}
			_, err := f.start(t).Challenge(context.Background())
			var he *attester.HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v, want *HTTPError", err)
			}
			var ae *api.Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v does not unwrap to *api.Error", err)
			}
			if he.Status != tc.wantStatus || ae.Code != tc.wantCode {
				t.Fatalf("status %d code %q, want %d %q", he.Status, ae.Code, tc.wantStatus, tc.wantCode)
			}
			if len(ae.Description) > 1024 {
				t.Fatalf("description not cut: %d bytes", len(ae.Description))
			}
		})
	}
}

func TestClientSizeCap(t *testing.T) {
	huge := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			w.Write([]byte(`{"nonce":"`))
			w.Write([]byte(strings.Repeat("A", attester.MaxResponseSize)))
			w.Write([]byte(`"}`))
		}
	}
	for _, status := range []int{http.StatusOK, http.StatusBadRequest} {
		f := &fakeIssuer{challenge: huge(status)}
		_, err := f.start(t).Challenge(context.Background())
		if !errors.Is(err, attester.ErrResponseTooLarge) {
			t.Errorf("status %d: err = %v, want ErrResponseTooLarge", status, err)
		}
	}
}

func TestClientRefusesBadNonce(t *testing.T) {
	a, _ := newSimAttester(t, nil)
	for _, n := range []int{0, 16, api.NonceSize + 1} {
		f := &fakeIssuer{challenge: challengeWith(make([]byte, n))}
		f.attest = func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, api.AttestResponse{Token: "t"})
		}
		c := f.start(t)
		if _, err := c.Challenge(context.Background()); !errors.Is(err, attester.ErrBadResponse) {
			t.Errorf("%d-byte nonce: Challenge err = %v, want ErrBadResponse", n, err)
		}
		if _, err := c.Attest(context.Background(), a, ""); !errors.Is(err, attester.ErrBadResponse) {
			t.Errorf("%d-byte nonce: Attest err = %v, want ErrBadResponse", n, err)
		}
		if f.attests.Load() != 0 {
			t.Errorf("%d-byte nonce: evidence was submitted", n)
		}
	}
}

func TestClientMalformedSuccess(t *testing.T) {
	notJSON := &fakeIssuer{challenge: func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }}
	if _, err := notJSON.start(t).Challenge(context.Background()); !errors.Is(err, attester.ErrBadResponse) {
		t.Errorf("HTML challenge: err = %v, want ErrBadResponse", err)
	}
	noToken := &fakeIssuer{attest: func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{}) }}
	if _, err := noToken.start(t).Submit(context.Background(), &api.AttestRequest{}); !errors.Is(err, attester.ErrBadResponse) {
		t.Errorf("empty token: err = %v, want ErrBadResponse", err)
	}
	if _, err := noToken.start(t).Submit(context.Background(), nil); err == nil {
		t.Error("Submit(nil) succeeded")
	}
}

func TestClientURLAndContext(t *testing.T) {
	for _, u := range []string{"", "issuer.example", "ftp://issuer.example", "http://"} {
		c := &attester.Client{IssuerURL: u}
		if _, err := c.Challenge(context.Background()); err == nil {
			t.Errorf("IssuerURL %q accepted", u)
		}
	}
	block := make(chan struct{})
	f := &fakeIssuer{challenge: func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}}
	c := f.start(t)
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Challenge(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
}

// TestClientRetriesRateLimitOnce: a 429 with a short Retry-After is waited out and the request
// sent once more; a second 429, or a Retry-After over MaxRetryAfter, is returned at once.
func TestClientRetriesRateLimitOnce(t *testing.T) {
	for _, tc := range []struct {
		name       string
		limited    int    // answers 429 before the first 200
		retryAfter string // of each 429
		wantErr    bool
		wantCalls  int32
	}{
		{"one 429, then served", 1, "1", false, 2},
		{"two 429s", 2, "1", true, 2},
		{"Retry-After too long", 1, "60", true, 1},
		{"no Retry-After", 1, "", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if int(calls.Add(1)) <= tc.limited {
					if tc.retryAfter != "" {
						w.Header().Set("Retry-After", tc.retryAfter)
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusTooManyRequests)
					_, _ = w.Write([]byte(`{"error":"rate_limited"}`))
					return
				}
				_ = json.NewEncoder(w).Encode(api.ChallengeResponse{Nonce: make([]byte, api.NonceSize)})
			}))
			defer srv.Close()
			_, err := (&attester.Client{IssuerURL: srv.URL}).Challenge(context.Background())
			if (err != nil) != tc.wantErr || calls.Load() != tc.wantCalls {
				t.Fatalf("err %v after %d requests; want error %v after %d", err, calls.Load(), tc.wantErr, tc.wantCalls)
			}
			var he *attester.HTTPError
			if err != nil && (!errors.As(err, &he) || he.Status != http.StatusTooManyRequests) {
				t.Fatalf("err %v, want the 429 *HTTPError", err)
			}
		})
	}
}
