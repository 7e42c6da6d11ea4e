package relyingparty

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/token"
)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// boundToken signs a valid token whose cnf.jwk is key's public half (nil: no cnf at all).
func boundToken(t testing.TB, iss *signer, now time.Time, key *ecdsa.PrivateKey) string {
	t.Helper()
	c := claimsAt(t, now)
	c.Confirmation = nil
	if key != nil {
		c.Confirmation = &token.Confirmation{JWK: &jose.JSONWebKey{Key: &key.PublicKey}}
	}
	return iss.sign(t, c)
}

func proof(t testing.TB, key *ecdsa.PrivateKey, method, target, tok string, now time.Time) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p, err := dpop.NewProof(key, method, u, tok, now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// popResult is what a refused or accepted request looked like.
type popResult struct {
	status    int
	challenge []string
	code      string
	called    bool
}

func serveOnce(t testing.TB, h http.Handler, r *http.Request, called *bool) popResult {
	t.Helper()
	*called = false
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := popResult{status: w.Code, challenge: w.Header().Values("WWW-Authenticate"), called: *called}
	if w.Code/100 != 2 {
		var e api.Error
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("refusal body %q: %v", w.Body.String(), err)
		}
		res.code = e.Code
	}
	return res
}

func okHandler(t testing.TB, called *bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := ClaimsFromContext(r.Context()); !ok {
			t.Error("handler reached without claims")
		}
		*called = true
		w.WriteHeader(http.StatusNoContent)
	})
}

// TestDPoPRequired: on a DPoP-required route, only a DPoP presentation with a fresh proof by the
// token's cnf key over this very request passes. A stolen token is refused however it is
// presented; each refusal is an RFC 9449 section 7.1 DPoP challenge.
func TestDPoPRequired(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	var called bool
	h := Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(rpOrigin))(okHandler(t, &called))
	owner, thief := newKey(t), newKey(t)
	tok := boundToken(t, iss, clk.Now(), owner)
	unbound := boundToken(t, iss, clk.Now(), nil)
	expiredClaims := claimsAt(t, clk.Now())
	expiredClaims.Expiry = clk.Now().Add(-time.Hour).Unix()
	expiredClaims.Confirmation = &token.Confirmation{JWK: &jose.JSONWebKey{Key: &owner.PublicKey}}
	expired := iss.sign(t, expiredClaims)
	const target = "http://rp.example/resource"
	now := clk.Now()
	replayed := proof(t, owner, "GET", target, tok, now)

	const algs = `algs="ES256 ES384 EdDSA PS256 RS256"`
	tests := []struct {
		name      string
		auth      string
		proofs    []string
		status    int
		code      string
		challenge string
	}{
		{name: "valid", auth: "DPoP " + tok, proofs: []string{proof(t, owner, "GET", target, tok, now)}, status: 204},
		{name: "scheme case-insensitive", auth: "dpop " + tok, proofs: []string{proof(t, owner, "GET", target+"?q=1", tok, now)}, status: 204},
		{name: "first use of a proof", auth: "DPoP " + tok, proofs: []string{replayed}, status: 204},
		{name: "replayed proof", auth: "DPoP " + tok, proofs: []string{replayed}, status: 401, code: "invalid_dpop_proof",
			challenge: `DPoP realm="passport", error="invalid_dpop_proof", error_description="DPoP proof replayed", ` + algs},
		{name: "no token", status: 401, code: "unauthorized", challenge: `DPoP realm="passport", ` + algs},
		{name: "stolen token as bearer", auth: "Bearer " + tok, status: 401, code: "invalid_token",
			challenge: `DPoP realm="passport", error="invalid_token", error_description="proof of possession required", ` + algs},
		{name: "stolen token as bearer with a thief's proof", auth: "Bearer " + tok, proofs: []string{proof(t, thief, "GET", target, tok, now)},
			status: 401, code: "invalid_token"},
		{name: "no proof", auth: "DPoP " + tok, status: 401, code: "invalid_dpop_proof",
			challenge: `DPoP realm="passport", error="invalid_dpop_proof", error_description="DPoP proof required", ` + algs},
		{name: "proof by another key", auth: "DPoP " + tok, proofs: []string{proof(t, thief, "GET", target, tok, now)},
			status: 401, code: "invalid_dpop_proof",
			challenge: `DPoP realm="passport", error="invalid_dpop_proof", error_description="DPoP proof not signed by the token's cnf key", ` + algs},
		{name: "proof for another URL", auth: "DPoP " + tok, proofs: []string{proof(t, owner, "GET", "http://rp.example/other", tok, now)},
			status: 401, code: "invalid_dpop_proof"},
		{name: "proof for another host", auth: "DPoP " + tok, proofs: []string{proof(t, owner, "GET", "http://evil.example/resource", tok, now)},
			status: 401, code: "invalid_dpop_proof"},
		{name: "proof for another method", auth: "DPoP " + tok, proofs: []string{proof(t, owner, "POST", target, tok, now)},
			status: 401, code: "invalid_dpop_proof"},
		{name: "proof without ath", auth: "DPoP " + tok, proofs: []string{proof(t, owner, "GET", target, "", now)},
			status: 401, code: "invalid_dpop_proof"},
		{name: "proof for another token", auth: "DPoP " + tok, proofs: []string{proof(t, owner, "GET", target, unbound, now)},
			status: 401, code: "invalid_dpop_proof"},
		{name: "stale proof", auth: "DPoP " + tok, proofs: []string{proof(t, owner, "GET", target, tok, now.Add(-5*time.Minute))},
			status: 401, code: "invalid_dpop_proof"},
		{name: "two proofs", auth: "DPoP " + tok, proofs: []string{proof(t, owner, "GET", target, tok, now), proof(t, owner, "GET", target, tok, now)},
			status: 401, code: "invalid_dpop_proof"},
		{name: "token without cnf", auth: "DPoP " + unbound, proofs: []string{proof(t, owner, "GET", target, unbound, now)},
			status: 401, code: "invalid_token",
			challenge: `DPoP realm="passport", error="invalid_token", error_description="token is not bound to a key", ` + algs},
		{name: "expired token with a good proof", auth: "DPoP " + expired, proofs: []string{proof(t, owner, "GET", target, expired, now)},
			status: 401, code: "invalid_token",
			challenge: `DPoP realm="passport", error="invalid_token", error_description="token expired", ` + algs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, target, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			for _, p := range tc.proofs {
				r.Header.Add("DPoP", p)
			}
			if strings.Contains(tc.name, "case-insensitive") {
				r = httptest.NewRequest(http.MethodGet, target+"?q=1", nil)
				r.Header.Set("Authorization", tc.auth)
				r.Header.Set("DPoP", tc.proofs[0])
			}
			got := serveOnce(t, h, r, &called)
			if got.status != tc.status || got.called != (tc.status == 204) {
				t.Fatalf("status %d (handler called %v), want %d; challenge %q", got.status, got.called, tc.status, got.challenge)
			}
			if got.code != tc.code {
				t.Fatalf("error %q, want %q", got.code, tc.code)
			}
			if tc.challenge != "" && (len(got.challenge) != 1 || got.challenge[0] != tc.challenge) {
				t.Fatalf("WWW-Authenticate %q, want %q", got.challenge, tc.challenge)
			}
		})
	}
}

// TestDPoPOnBearerRoute: a bearer-allowed route takes a bare token, but a token presented with
// the DPoP scheme is held to its proof (RFC 9449 section 7.1).
func TestDPoPOnBearerRoute(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	var called bool
	h := Middleware(v, WithExternalURL(rpOrigin))(okHandler(t, &called))
	owner, thief := newKey(t), newKey(t)
	tok := boundToken(t, iss, clk.Now(), owner)
	const target = "http://rp.example/resource"
	req := func(auth, p string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("Authorization", auth)
		if p != "" {
			r.Header.Set("DPoP", p)
		}
		return r
	}
	if got := serveOnce(t, h, req("Bearer "+tok, ""), &called); got.status != 204 {
		t.Fatalf("bearer on a bearer route: %+v", got)
	}
	if got := serveOnce(t, h, req("DPoP "+tok, proof(t, owner, "GET", target, tok, clk.Now())), &called); got.status != 204 {
		t.Fatalf("DPoP on a bearer route: %+v", got)
	}
	got := serveOnce(t, h, req("DPoP "+tok, proof(t, thief, "GET", target, tok, clk.Now())), &called)
	if got.status != 401 || got.code != "invalid_dpop_proof" || got.called || !strings.HasPrefix(got.challenge[0], "DPoP ") {
		t.Fatalf("DPoP presentation with a thief's proof on a bearer route: %+v", got)
	}
	got = serveOnce(t, h, req("DPoP "+tok, ""), &called)
	if got.status != 401 || got.code != "invalid_dpop_proof" {
		t.Fatalf("DPoP presentation without a proof on a bearer route: %+v", got)
	}
}

// TestDPoPCachedToken: the token is verified once, the proof on every request.
func TestDPoPCachedToken(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v, ks := newCountingVerifier(t, iss, clk, 0)
	var called bool
	h := Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(rpOrigin))(okHandler(t, &called))
	owner, thief := newKey(t), newKey(t)
	tok := boundToken(t, iss, clk.Now(), owner)
	const target = "http://rp.example/resource"
	for i := range 5 {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("DPoP", proof(t, owner, "GET", target, tok, clk.Now()))
		if got := serveOnce(t, h, r, &called); got.status != 204 {
			t.Fatalf("request %d: %+v", i, got)
		}
	}
	if n := ks.n.Load(); n != 1 {
		t.Fatalf("token verified %d times for 5 requests, want 1", n)
	}
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("Authorization", "DPoP "+tok)
	r.Header.Set("DPoP", proof(t, thief, "GET", target, tok, clk.Now()))
	if got := serveOnce(t, h, r, &called); got.status != 401 || got.code != "invalid_dpop_proof" {
		t.Fatalf("cached token with a thief's proof: %+v", got)
	}
}

// TestDPoPSharedReplayCache: two middlewares sharing a dpop.Verifier accept a proof once.
func TestDPoPSharedReplayCache(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	shared := &dpop.Verifier{Now: clk.Now}
	var called bool
	a := Middleware(v, RequirePoP(PoPDPoP), WithDPoPVerifier(shared), WithExternalURL(rpOrigin))(okHandler(t, &called))
	b := Middleware(v, RequirePoP(PoPDPoP), WithDPoPVerifier(shared), WithExternalURL(rpOrigin))(okHandler(t, &called))
	owner := newKey(t)
	tok := boundToken(t, iss, clk.Now(), owner)
	const target = "http://rp.example/resource"
	p := proof(t, owner, "GET", target, tok, clk.Now())
	for i, h := range []http.Handler{a, b} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("DPoP", p)
		got := serveOnce(t, h, r, &called)
		if want := []int{204, 401}[i]; got.status != want {
			t.Fatalf("presentation %d: status %d, want %d", i, got.status, want)
		}
	}
}

// TestDPoPExternalURL: behind a proxy the proof names the public URL; WithExternalURL makes it
// match, and forwarded headers never do: a middleware configured with its internal URL refuses
// the proof, and one without any URL fails closed.
func TestDPoPExternalURL(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	owner := newKey(t)
	tok := boundToken(t, iss, clk.Now(), owner)
	public, _ := url.Parse("https://api.example.com/base/")
	var called bool
	behind := Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(public))(okHandler(t, &called))
	internal, _ := url.Parse("http://10.0.0.7:8080")
	direct := Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(internal))(okHandler(t, &called))
	unset := Middleware(v, RequirePoP(PoPDPoP), WithLogger(discardLogger()))(okHandler(t, &called))
	req := func(p string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "http://10.0.0.7:8080/resource?x=1", nil)
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("X-Forwarded-Host", "api.example.com")
		r.Header.Set("X-Forwarded-Proto", "https")
		r.Header.Set("Forwarded", "host=api.example.com;proto=https")
		r.Header.Set("DPoP", p)
		return r
	}
	if got := serveOnce(t, behind, req(proof(t, owner, "GET", "https://api.example.com/base/resource", tok, clk.Now())), &called); got.status != 204 {
		t.Fatalf("public URL behind the proxy: %+v", got)
	}
	if got := serveOnce(t, direct, req(proof(t, owner, "GET", "https://api.example.com/base/resource", tok, clk.Now())), &called); got.status != 401 || got.code != "invalid_dpop_proof" {
		t.Fatalf("forwarded headers were trusted: %+v", got)
	}
	if got := serveOnce(t, unset, req(proof(t, owner, "GET", "https://api.example.com/base/resource", tok, clk.Now())), &called); got.status != 500 || got.code != "server_error" || got.called {
		t.Fatalf("forwarded headers without WithExternalURL: %+v, want 500 server_error", got)
	}
	if got := serveOnce(t, behind, req(proof(t, owner, "GET", "http://10.0.0.7:8080/resource", tok, clk.Now())), &called); got.status != 401 {
		t.Fatalf("internal URL accepted behind the proxy: %+v", got)
	}
}

// selfSigned returns a TLS certificate for key (self-signed: trust comes from the token).
func selfSigned(t testing.TB, key *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "workload"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestMTLSRequired: over real TLS on loopback, the client certificate's key must be the
// token's cnf key.
func TestMTLSRequired(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	var called bool
	srv := httptest.NewUnstartedServer(Middleware(v, RequirePoP(PoPMTLS))(okHandler(t, &called)))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	defer srv.Close()
	owner, thief := newKey(t), newKey(t)
	tok := boundToken(t, iss, clk.Now(), owner)
	unbound := boundToken(t, iss, clk.Now(), nil)

	do := func(cert *tls.Certificate, auth string) (int, string) {
		t.Helper()
		tr := srv.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = nil
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		defer tr.CloseIdleConnections()
		r, _ := http.NewRequest(http.MethodGet, srv.URL+"/resource", nil)
		r.Header.Set("Authorization", auth)
		resp, err := (&http.Client{Transport: tr}).Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Code + " " + resp.Header.Get("WWW-Authenticate")
	}
	ownerCert, thiefCert := selfSigned(t, owner), selfSigned(t, thief)
	if st, msg := do(&ownerCert, "Bearer "+tok); st != 204 {
		t.Fatalf("owner's certificate: %d %s", st, msg)
	}
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		auth string
		want string
	}{
		{"stolen token, thief's certificate", &thiefCert, "Bearer " + tok, "client certificate key does not match the token"},
		{"stolen token, no certificate", nil, "Bearer " + tok, "proof of possession required"},
		{"token without cnf", &ownerCert, "Bearer " + unbound, "token is not bound to a key"},
	} {
		st, msg := do(tc.cert, tc.auth)
		if st != 401 || !strings.Contains(msg, "invalid_token") || !strings.Contains(msg, tc.want) || !strings.Contains(msg, "Bearer realm") {
			t.Fatalf("%s: %d %q, want 401 invalid_token %q", tc.name, st, msg, tc.want)
		}
	}
}

// TestSameKey compares keys by thumbprint.
func TestSameKey(t *testing.T) {
	a, b := newKey(t), newKey(t)
	if err := SameKey(&a.PublicKey, &jose.JSONWebKey{Key: &a.PublicKey}); err != nil {
		t.Fatal(err)
	}
	// A copy of the key (another pointer, another JWK with kid and alg) is the same key.
	cp := a.PublicKey
	if err := SameKey(&cp, &jose.JSONWebKey{Key: &a.PublicKey, KeyID: "x", Algorithm: "ES256"}); err != nil {
		t.Fatal(err)
	}
	if err := SameKey(&b.PublicKey, &jose.JSONWebKey{Key: &a.PublicKey}); err != ErrMTLSBinding {
		t.Fatalf("different keys: %v", err)
	}
	if err := SameKey(&a.PublicKey, nil); err != ErrNotBound {
		t.Fatalf("nil cnf: %v", err)
	}
	if PoPDPoP.String() != "dpop" || PoPMTLS.String() != "mtls" || PoPBearer.String() != "bearer" {
		t.Fatal("PoP names")
	}
}

// TestPoPCustomExtractor: a token found by a custom extractor is a bearer presentation, which
// a DPoP-required route refuses even with a valid proof alongside.
func TestPoPCustomExtractor(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	owner := newKey(t)
	tok := boundToken(t, iss, clk.Now(), owner)
	var called bool
	h := Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(rpOrigin), WithTokenExtractor(func(r *http.Request) (string, error) {
		return r.Header.Get("X-Passport"), nil
	}))(okHandler(t, &called))
	const target = "http://rp.example/resource"
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("X-Passport", tok)
	r.Header.Set("DPoP", proof(t, owner, "GET", target, tok, clk.Now()))
	if got := serveOnce(t, h, r, &called); got.status != 401 || got.code != "invalid_token" || got.called {
		t.Fatalf("custom extractor on a DPoP route: %+v", got)
	}
}

// TestDPoPReplayAcrossMiddlewares: by default the Middlewares built on one Verifier share one
// DPoP replay cache, so a proof accepted by one route is refused by another (a proof names a
// URL, and several handlers may serve the same one, e.g. per method).
func TestDPoPReplayAcrossMiddlewares(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	var called bool
	h1 := Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(rpOrigin))(okHandler(t, &called))
	h2 := Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(rpOrigin))(okHandler(t, &called))
	owner := newKey(t)
	tok := boundToken(t, iss, clk.Now(), owner)
	const target = "http://rp.example/resource"
	p := proof(t, owner, "GET", target, tok, clk.Now())
	req := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("DPoP", p)
		return r
	}
	if got := serveOnce(t, h1, req(), &called); got.status != 204 {
		t.Fatalf("first use: %+v", got)
	}
	if got := serveOnce(t, h2, req(), &called); got.status != 401 || got.code != "invalid_dpop_proof" || got.called {
		t.Fatalf("the same proof at a second middleware on the same Verifier: %+v, want 401 invalid_dpop_proof", got)
	}
}
