package relyingparty

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/dpop"
)

// rpOrigin is the public URL the unit tests' relying party is configured with; their requests
// go to http://rp.example/....
var rpOrigin = mustParseURL("http://rp.example")

func mustParseURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// newServer starts a loopback httptest server whose handler build makes for the server's own
// URL, the origin a middleware must be configured with (WithExternalURL).
func newServer(t testing.TB, build func(origin *url.URL) http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = build(mustParseURL("http://" + srv.Listener.Addr().String()))
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// logBuffer collects log lines written from server goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// do sends req and returns the status and the error code of the body.
func do(t *testing.T, client *http.Client, req *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Error
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Code, resp.Header
}

// TestDPoPRelayRefused: a malicious relying party that obtained a token and a proof made for
// its own URL relays them to the victim with "Host:" set to its own host. The victim checks the
// proof against its configured origin and refuses it; a victim without a configured origin
// fails closed (500) instead of trusting the Host header. Over loopback HTTP.
func TestDPoPRelayRefused(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	owner := newKey(t)
	tok := boundToken(t, iss, clk.Now(), owner)
	var called bool
	logs := &logBuffer{}
	configured := newServer(t, func(origin *url.URL) http.Handler {
		return Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(origin))(okHandler(t, &called))
	})
	unset := newServer(t, func(*url.URL) http.Handler {
		return Middleware(v, RequirePoP(PoPDPoP), WithLogger(logs.logger()))(okHandler(t, &called))
	})
	bearerRoute := newServer(t, func(*url.URL) http.Handler {
		return Middleware(v, WithLogger(logs.logger()))(okHandler(t, &called))
	})
	relay := func(srv *httptest.Server, host, proofURL string) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/a", nil)
		req.Host = host
		req.Header.Set("Authorization", "DPoP "+tok)
		req.Header.Set("DPoP", proof(t, owner, "GET", proofURL, tok, clk.Now()))
		return req
	}
	const evil = "evil.example"
	for _, tc := range []struct {
		name   string
		srv    *httptest.Server
		status int
		code   string
	}{
		{"configured origin", configured, 401, "invalid_dpop_proof"},
		{"no origin, DPoP route", unset, 500, "server_error"},
		{"no origin, DPoP presentation on a bearer route", bearerRoute, 500, "server_error"},
	} {
		called = false
		st, code, h := do(t, http.DefaultClient, relay(tc.srv, evil, "http://"+evil+"/a"))
		if st != tc.status || code != tc.code || called {
			t.Fatalf("%s: relayed proof for http://%s/a with Host %s: %d %s (handler called %v), want %d %s",
				tc.name, evil, evil, st, code, called, tc.status, tc.code)
		}
		if st == 500 && len(h.Values("WWW-Authenticate")) != 0 {
			t.Fatalf("%s: a challenge on a misconfiguration: %q", tc.name, h.Values("WWW-Authenticate"))
		}
	}
	// The genuine request to the configured origin still passes.
	host := strings.TrimPrefix(configured.URL, "http://")
	if st, code, _ := do(t, http.DefaultClient, relay(configured, host, configured.URL+"/a")); st != 204 {
		t.Fatalf("genuine proof: %d %s", st, code)
	}
	out := logs.String()
	if !strings.Contains(out, "misconfigured") || !strings.Contains(out, "WithExternalURL") || strings.Contains(out, tok) {
		t.Fatalf("misconfiguration log: %q", out)
	}
}

// TestExternalURLInvalid: an unusable WithExternalURL fails every request closed, bearer
// routes included, and is logged when the middleware is built.
func TestExternalURLInvalid(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	tok := boundToken(t, iss, clk.Now(), newKey(t))
	for _, bad := range []string{"rp.example", "ftp://rp.example", "https://", "https://rp.example/?q=1", "https://rp.example/#f", "https://u:p@rp.example"} {
		logs := &logBuffer{}
		var called bool
		h := Middleware(v, WithExternalURL(mustParseURL(bad)), WithLogger(logs.logger()))(okHandler(t, &called))
		if !strings.Contains(logs.String(), "misconfigured") || strings.Contains(logs.String(), "u:p@") {
			t.Fatalf("%s: construction log %q", bad, logs.String())
		}
		r := httptest.NewRequest(http.MethodGet, "http://rp.example/a", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		if got := serveOnce(t, h, r, &called); got.status != 500 || got.code != "server_error" || got.called {
			t.Fatalf("WithExternalURL(%q): %+v, want 500", bad, got)
		}
	}
	// Built without an origin, DPoP and background-check routes say so at once.
	for _, opt := range []MiddlewareOption{RequirePoP(PoPDPoP), WithBackgroundCheck(&BackgroundCheck{IssuerURL: "http://127.0.0.1:1"}),
		RequireFreshEvidence(&BackgroundCheck{IssuerURL: "http://127.0.0.1:1"})} {
		logs := &logBuffer{}
		Middleware(v, opt, WithLogger(logs.logger()))
		if !strings.Contains(logs.String(), "WithExternalURL") {
			t.Fatalf("no construction log: %q", logs.String())
		}
	}
}

// TestDPoPEscapedPath: htu is compared on the request's escaped path; a proof for /api/x/y is
// not good for /api/x%2Fy, which is another resource.
func TestDPoPEscapedPath(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	owner := newKey(t)
	tok := boundToken(t, iss, clk.Now(), owner)
	var called bool
	base := mustParseURL("https://example.com/base")
	for _, tc := range []struct {
		name         string
		origin       *url.URL
		request, htu string
		status       int
	}{
		{"decoded proof, escaped request", rpOrigin, "http://rp.example/api/x%2Fy", "http://rp.example/api/x/y", 401},
		{"escaped proof, decoded request", rpOrigin, "http://rp.example/api/x/y", "http://rp.example/api/x%2Fy", 401},
		{"escaped proof, escaped request", rpOrigin, "http://rp.example/api/x%2Fy", "http://rp.example/api/x%2fy", 204},
		{"under a base path, decoded proof", base, "http://10.0.0.7/api/x%2Fy", "https://example.com/base/api/x/y", 401},
		{"under a base path, escaped proof", base, "http://10.0.0.7/api/x%2Fy", "https://example.com/base/api/x%2Fy", 204},
	} {
		h := Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(tc.origin))(okHandler(t, &called))
		r := httptest.NewRequest(http.MethodGet, tc.request, nil)
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("DPoP", proof(t, owner, "GET", tc.htu, tok, clk.Now()))
		if got := serveOnce(t, h, r, &called); got.status != tc.status {
			t.Fatalf("%s: %+v, want %d", tc.name, got, tc.status)
		}
	}
}

// TestBackgroundCheckRelayRefused: a malicious relying party relays the victim's challenge to
// the attester, receives evidence and a proof for its own URL, and relays both to the victim
// with "Host:" set to its own host. The victim refuses them without asking the issuer; a victim
// without a configured origin fails closed before even issuing a challenge.
func TestBackgroundCheckRelayRefused(t *testing.T) {
	w := newBGWorld(t)
	victim := w.protects(WithBackgroundCheck(w.bc))
	logs := &logBuffer{}
	unset := newServer(t, func(*url.URL) http.Handler {
		return Middleware(w.v, WithBackgroundCheck(w.bc), WithLogger(logs.logger()))(http.NotFoundHandler())
	})
	const evil = "evil.example"
	relay := func(srv *httptest.Server) *http.Request {
		// The victim's challenge, relayed to the attester, answered for the evil URL.
		resp, err := http.Get(victim.URL + "/resource")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		nonce, err := api.DecodeNonce(resp.Header.Get(api.HeaderNonce))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := w.a.Evidence(nonce)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(ev)
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/resource", nil)
		req.Host = evil
		req.Header.Set(api.HeaderEvidence, base64.RawURLEncoding.EncodeToString(b))
		req.Header.Set("DPoP", proof(t, w.a.CNFPrivate(), "GET", "http://"+evil+"/resource", "", time.Now()))
		return req
	}
	for _, tc := range []struct {
		name   string
		srv    *httptest.Server
		status int
		code   string
	}{
		{"configured origin", victim, 401, "invalid_dpop_proof"},
		{"no origin", unset, 500, "server_error"},
	} {
		req := relay(tc.srv)
		appraisals, challenges := w.calls[api.PathAppraise].Load(), w.calls[api.PathChallenge].Load()
		st, code, _ := do(t, http.DefaultClient, req)
		if st != tc.status || code != tc.code || w.seen.Load() != nil {
			t.Fatalf("%s: relayed evidence: %d %s, want %d %s", tc.name, st, code, tc.status, tc.code)
		}
		if w.calls[api.PathAppraise].Load() != appraisals || w.calls[api.PathChallenge].Load() != challenges {
			t.Fatalf("%s: the issuer was asked about relayed evidence", tc.name)
		}
	}
	if !strings.Contains(logs.String(), "WithExternalURL") {
		t.Fatalf("misconfiguration not logged: %q", logs.String())
	}
	// The attester talking to the victim directly is served.
	resp, err := w.evidenceClient(&recorder{}).Get(victim.URL + "/resource")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("genuine exchange: %d", resp.StatusCode)
	}
}

// TestBackgroundFloodKeepsTokenRoutes: anonymous clients flood a background-check route with
// junk evidence, each with a valid proof by a throw-away key for the route's URL. The proofs
// pass (the junk reaches the issuer, which refuses it) but take no room in the replay cache,
// so a token holder's DPoP requests on a route sharing that cache are still served.
func TestBackgroundFloodKeepsTokenRoutes(t *testing.T) {
	w := newBGWorld(t)
	const capacity = 16
	shared := &dpop.Verifier{MaxReplayEntries: capacity}
	ok := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { rw.WriteHeader(http.StatusNoContent) })
	rp := newServer(t, func(origin *url.URL) http.Handler {
		v := w.verifierFor(t, origin)
		mux := http.NewServeMux()
		mux.Handle("/evidence", Middleware(v, WithBackgroundCheck(w.bc), WithDPoPVerifier(shared), WithExternalURL(origin))(ok))
		mux.Handle("/api", Middleware(v, RequirePoP(PoPDPoP), WithDPoPVerifier(shared), WithExternalURL(origin))(ok))
		return mux
	})
	res, err := (&attester.Client{IssuerURL: w.issuer.URL}).Attest(context.Background(), w.a, w.aud)
	if err != nil {
		t.Fatal(err)
	}
	before := w.calls[api.PathAppraise].Load()
	const junk = 2 * capacity
	for i := range junk {
		k := newKey(t)
		nonce := make([]byte, api.NonceSize)
		_, _ = rand.Read(nonce)
		b, _ := json.Marshal(api.AttestRequest{Nonce: nonce, Attestation: []byte("junk"), CNF: &jose.JSONWebKey{Key: &k.PublicKey}, Origin: w.aud})
		req, _ := http.NewRequest(http.MethodGet, rp.URL+"/evidence", nil)
		req.Header.Set(api.HeaderEvidence, base64.RawURLEncoding.EncodeToString(b))
		req.Header.Set("DPoP", proof(t, k, "GET", rp.URL+"/evidence", "", time.Now()))
		if st, code, _ := do(t, http.DefaultClient, req); st/100 == 2 {
			t.Fatalf("junk evidence %d accepted: %d %s", i, st, code)
		}
	}
	// Each junk request that reached the issuer passed the proof check: at least a cache's worth.
	if n := w.calls[api.PathAppraise].Load() - before; n < capacity {
		t.Fatalf("%d of %d junk requests passed the proof check, want at least %d (else the test proves nothing)", n, junk, capacity)
	}
	owner := &attester.DPoPTransport{Token: attester.StaticToken(res.Token), Key: w.a.CNFPrivate()}
	for i := range capacity / 2 {
		resp, err := (&http.Client{Transport: owner}).Get(rp.URL + "/api")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Fatalf("token holder's request %d after the flood: %d %s", i, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
}

// TestBackgroundReplayAfterCacheLoss: the replay cache is not what stops replayed evidence. A
// relying party that lost its cache (restarted, or another replica with the same origin)
// receives a captured evidence+proof: the proof passes, but the issuer has consumed the
// evidence's nonce, so no result comes back and the attester gets a new challenge. The
// relying party that served the original refuses the same proof outright: its jti was
// remembered once the evidence was authenticated.
func TestBackgroundReplayAfterCacheLoss(t *testing.T) {
	w := newBGWorld(t)
	var origin *url.URL
	rp := newServer(t, func(o *url.URL) http.Handler {
		origin = o
		return Middleware(w.verifierFor(t, o), WithBackgroundCheck(w.bc), WithExternalURL(o))(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			io.WriteString(rw, "ok")
		}))
	})
	rec := &recorder{}
	resp, err := w.evidenceClient(rec).Get(rp.URL + "/resource")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(rec.reqs) != 2 {
		t.Fatalf("genuine exchange: %d", resp.StatusCode)
	}
	captured := rec.reqs[1]
	replay := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, rp.URL+"/resource", nil)
		r.Header.Set(api.HeaderEvidence, captured.Header.Get(api.HeaderEvidence))
		r.Header.Set("DPoP", captured.Header.Get("DPoP"))
		return r
	}
	var called bool
	restarted := Middleware(w.verifierFor(t, origin), WithBackgroundCheck(w.bc), WithExternalURL(origin))(okHandler(t, &called)) // a restart: a new Verifier, an empty replay cache
	appraisals := w.calls[api.PathAppraise].Load()
	got := serveOnce(t, restarted, replay(), &called)
	if got.status != 401 || got.code != "evidence_required" || got.called {
		t.Fatalf("replay to a relying party without the proof's jti: %+v, want a new challenge", got)
	}
	if w.calls[api.PathAppraise].Load() != appraisals+1 {
		t.Fatal("the replay did not reach the issuer: the test proves nothing about its nonce")
	}
	st, code, _ := do(t, http.DefaultClient, func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, rp.URL+"/resource", nil)
		r.Header = replay().Header
		return r
	}())
	if st != 401 || code != "invalid_dpop_proof" {
		t.Fatalf("replay to the relying party that served it: %d %s, want 401 invalid_dpop_proof", st, code)
	}
}
