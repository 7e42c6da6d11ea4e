package relyingparty

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/token"
)

// TestDPoPReplayCachePerAttester: one attester (one sub: one attestation key) holding tokens
// bound to many cnf keys takes at most the per-holder share of the DPoP replay cache; another
// attester's proofs are still accepted. Counted per cnf key, the first attester would fill the
// cache and lock every other client out for the proof window.
func TestDPoPReplayCachePerAttester(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	dv := &dpop.Verifier{Now: clk.Now, MaxReplayEntries: 10, MaxEntriesPerKey: 3}
	var called bool
	h := Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(rpOrigin), WithDPoPVerifier(dv))(okHandler(t, &called))
	const target = "http://rp.example/resource"
	present := func(sub string) popResult { // a new token bound to a new key, and a proof by it
		k := newKey(t)
		c := claimsAt(t, clk.Now())
		c.Subject = sub
		c.Confirmation = &token.Confirmation{JWK: &jose.JSONWebKey{Key: &k.PublicKey}}
		tok := iss.sign(t, c)
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set(dpop.HeaderName, proof(t, k, "GET", target, tok, clk.Now()))
		return serveOnce(t, h, r, &called)
	}
	accepted := 0
	for i := range 12 {
		switch got := present("ak-greedy"); {
		case got.status == 204:
			accepted++
		case got.status != 401 || got.code != "invalid_dpop_proof":
			t.Fatalf("greedy attester's request %d: %+v", i, got)
		}
	}
	if accepted != 3 {
		t.Fatalf("one attester had %d proofs by 12 keys accepted, want its share 3", accepted)
	}
	for i := range 3 {
		if got := present("ak-other"); got.status != 204 {
			t.Fatalf("another attester's request %d: %+v", i, got)
		}
	}
}

// TestBackgroundProofsCountPerAttester: on a background-check route, an evidence's proof counts
// against the attester the issuer's result names (its sub), not against the evidence's cnf key,
// which the attester picks per evidence: one attester answering with a fresh key each time
// takes at most its share of the cache, and another attester is still served.
func TestBackgroundProofsCountPerAttester(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.Audience = rpOrigin.String() })
	var sub atomic.Value // the attester the fake issuer's next result names
	fake := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var req api.AppraiseRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Evidence == nil {
			http.Error(rw, "bad", 400)
			return
		}
		c := claimsAt(t, clk.Now())
		c.Subject = sub.Load().(string)
		c.Audience = token.Audience{req.Audience}
		c.EATNonce = api.EncodeNonce(req.Evidence.Nonce)
		c.Confirmation = &token.Confirmation{JWK: req.Evidence.CNF}
		json.NewEncoder(rw).Encode(api.AppraiseResponse{Result: iss.sign(t, c), ExpiresAt: c.Expires()})
	}))
	defer fake.Close()
	dv := &dpop.Verifier{Now: clk.Now, MaxReplayEntries: 10, MaxEntriesPerKey: 3}
	var called bool
	h := Middleware(v, WithBackgroundCheck(&BackgroundCheck{IssuerURL: fake.URL}), WithExternalURL(rpOrigin), WithDPoPVerifier(dv))(okHandler(t, &called))
	const target = "http://rp.example/resource"
	present := func(attester string) popResult { // evidence naming a new cnf key, a proof by it
		sub.Store(attester)
		k := newKey(t)
		nonce := make([]byte, api.NonceSize)
		b, _ := json.Marshal(api.AttestRequest{Nonce: nonce, Attestation: []byte{1}, CNF: &jose.JSONWebKey{Key: &k.PublicKey}, Origin: rpOrigin.String()})
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set(api.HeaderEvidence, base64.RawURLEncoding.EncodeToString(b))
		r.Header.Set(dpop.HeaderName, proof(t, k, "GET", target, "", clk.Now()))
		return serveOnce(t, h, r, &called)
	}
	accepted := 0
	for i := range 12 {
		switch got := present("ak-greedy"); {
		case got.status == 204:
			accepted++
		case got.status != 401 || got.code != "invalid_dpop_proof":
			t.Fatalf("greedy attester's evidence %d: %+v", i, got)
		}
	}
	if accepted != 3 {
		t.Fatalf("one attester had %d evidence proofs by 12 keys accepted, want its share 3", accepted)
	}
	for i := range 3 {
		if got := present("ak-other"); got.status != 204 {
			t.Fatalf("another attester's evidence %d: %+v", i, got)
		}
	}
}
