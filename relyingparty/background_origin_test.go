package relyingparty

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/token"
)

// TestBackgroundEvidenceBoundToOrigin: a malicious relying party ("evil") hands the attester
// an issuer nonce and keeps the evidence the attester answers with. The evidence binds evil's
// origin, so the issuer mints for it neither an appraisal result nor a passport for the
// victim, and a result for evil itself (what evil may legitimately get) is refused by the
// victim's audience check. Stripping or changing the origin breaks the quote's binding. The
// victim's middleware refuses evidence not bound to its own origin without asking the issuer.
func TestBackgroundEvidenceBoundToOrigin(t *testing.T) {
	w := newBGWorld(t)
	victim := w.protects(WithBackgroundCheck(w.bc))
	victimAud, victimV := w.aud, w.v
	var captured atomic.Value
	evil := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if ev := r.Header.Get(api.HeaderEvidence); ev != "" {
			captured.Store(ev)
			rw.WriteHeader(http.StatusNoContent)
			return
		}
		ch, err := w.bc.challenge(r.Context())
		if err != nil {
			http.Error(rw, err.Error(), 500)
			return
		}
		rw.Header().Set(api.HeaderNonce, api.EncodeNonce(ch.Nonce))
		rw.WriteHeader(http.StatusUnauthorized)
	}))
	defer evil.Close()
	capture := func() *api.AttestRequest {
		t.Helper()
		resp, err := w.evidenceClient(&recorder{}).Get(evil.URL + "/resource")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h, _ := captured.Load().(string)
		if resp.StatusCode != http.StatusNoContent || h == "" {
			t.Fatalf("the attester did not answer evil's challenge: %d", resp.StatusCode)
		}
		return decodeEvidence(t, h)
	}
	post := func(path string, body any) (int, api.Error) {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := http.Post(w.issuer.URL+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}

	ev := capture()
	if ev.Origin != evil.URL {
		t.Fatalf("evidence origin %q, want evil's %q", ev.Origin, evil.URL)
	}
	for _, tc := range []struct {
		name string
		path string
		body func(*api.AttestRequest) any
	}{
		{"appraise for the victim", api.PathAppraise, func(ev *api.AttestRequest) any {
			return api.AppraiseRequest{Evidence: ev, Audience: victimAud}
		}},
		{"passport for the victim", api.PathAttest, func(ev *api.AttestRequest) any {
			ev.Audience = victimAud
			return ev
		}},
	} {
		ev := capture()
		if status, e := post(tc.path, tc.body(ev)); status != http.StatusBadRequest || e.Code != "invalid_request" || !strings.Contains(e.Description, "not a URL of that origin") {
			t.Errorf("%s: %d %+v, want 400 invalid_request (audience not of the bound origin)", tc.name, status, e)
		}
	}
	for name, origin := range map[string]string{"origin stripped": "", "origin changed to the victim's": victimAud} {
		ev := capture()
		ev.Origin = origin
		if status, e := post(api.PathAppraise, api.AppraiseRequest{Evidence: ev, Audience: victimAud}); status != http.StatusForbidden || e.Code != "evidence_rejected_binding" {
			t.Errorf("%s: %d %+v, want 403 evidence_rejected_binding", name, status, e)
		}
	}
	// Control: evil may have its own evidence appraised for itself; that result names evil's
	// audience and is worthless at the victim.
	var res api.AppraiseResponse
	b, _ := json.Marshal(api.AppraiseRequest{Evidence: capture(), Audience: evil.URL})
	resp, err := http.Post(w.issuer.URL+api.PathAppraise, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != 200 || res.Result == "" {
		t.Fatalf("evil's own appraisal: %d", resp.StatusCode)
	}
	if _, err := victimV.Verify(context.Background(), res.Result); !errors.Is(err, token.ErrAudience) {
		t.Fatalf("evil's result at the victim: %v, want ErrAudience", err)
	}

	// The victim's middleware refuses evidence bound to another origin, or to none, before
	// the issuer sees it.
	appraisals := w.calls[api.PathAppraise].Load()
	for name, origin := range map[string]string{"evil's origin": evil.URL, "no origin": ""} {
		ev := capture()
		ev.Origin = origin
		eb, _ := json.Marshal(ev)
		req, _ := http.NewRequest(http.MethodGet, victim.URL+"/resource", nil)
		req.Header.Set(api.HeaderEvidence, base64.RawURLEncoding.EncodeToString(eb))
		req.Header.Set(dpop.HeaderName, proof(t, w.a.CNFPrivate(), "GET", victim.URL+"/resource", "", time.Now()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s at the victim: %d, want 400", name, resp.StatusCode)
		}
	}
	if w.calls[api.PathAppraise].Load() != appraisals {
		t.Error("the victim forwarded evidence not bound to its origin")
	}
}

// TestBackgroundCheckNeedsOriginAudience: the background check refuses to run (500, logged)
// when the Verifier's audience is not a URL of the external URL's origin, since attesters bind
// that origin and the issuer mints only for it.
func TestBackgroundCheckNeedsOriginAudience(t *testing.T) {
	w := newBGWorld(t)
	logs := &logBuffer{}
	rp := newServer(t, func(origin *url.URL) http.Handler {
		v, err := NewVerifier(Config{Issuer: w.issuer.URL, Audience: "payments-api", KeySet: NewStaticKeySet(w.issuer.Keyring.PublicSet())})
		if err != nil {
			t.Fatal(err)
		}
		return Middleware(v, WithBackgroundCheck(w.bc), WithExternalURL(origin), WithLogger(logs.logger()))(http.NotFoundHandler())
	})
	resp, err := http.Get(rp.URL + "/resource")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || resp.Header.Get(api.HeaderNonce) != "" || !strings.Contains(logs.String(), "is not a URL of the external URL's origin") {
		t.Fatalf("%d, log %q", resp.StatusCode, logs.String())
	}
}

// TestBackgroundCheckNeedsASCIIOrigin: a public URL whose host is not ASCII has no origin an
// attester binds (api.Origin refuses it), so a background-check route on it fails closed at
// start, saying why.
func TestBackgroundCheckNeedsASCIIOrigin(t *testing.T) {
	w := newBGWorld(t)
	logs := &logBuffer{}
	ext := &url.URL{Scheme: "https", Host: "v\u0130ctim.example"}
	v, err := NewVerifier(Config{Issuer: w.issuer.URL, Audience: "https://victim.example", KeySet: NewStaticKeySet(w.issuer.Keyring.PublicSet())})
	if err != nil {
		t.Fatal(err)
	}
	h := Middleware(v, WithBackgroundCheck(w.bc), WithExternalURL(ext), WithLogger(logs.logger()))(http.NotFoundHandler())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://victim.example/r", nil))
	if rec.Code != 500 || rec.Header().Get(api.HeaderNonce) != "" || !strings.Contains(logs.String(), "no origin attesters can bind") {
		t.Fatalf("%d, log %q", rec.Code, logs.String())
	}
}
