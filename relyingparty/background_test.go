package relyingparty

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/token"
)

const rpAudience = "https://rp.example"

// recorder is a RoundTripper that keeps the requests it sends and the responses' statuses.
type recorder struct {
	mu       sync.Mutex
	reqs     []*http.Request
	statuses []int
}

func (rec *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reqs = append(rec.reqs, r)
	if err == nil {
		rec.statuses = append(rec.statuses, resp.StatusCode)
	}
	return resp, err
}

// countRequests wraps h and counts requests by path.
func countRequests(h http.Handler, n map[string]*atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := n[r.URL.Path]; ok {
			c.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}

// bgWorld is an issuer over httptest trusting the simulator's AK, and a relying party whose
// route falls back to (or demands) the background check.
type bgWorld struct {
	a        *attester.Attester
	issuer   *testenv.Server
	v        *Verifier // of the last relying party protects built (audience: its origin)
	aud      string    // that relying party's audience: its origin, which attesters bind
	bc       *BackgroundCheck
	calls    map[string]*atomic.Int64
	seen     atomic.Pointer[token.Claims]
	protects func(opts ...MiddlewareOption) *httptest.Server
}

func newBGWorld(t *testing.T) *bgWorld {
	t.Helper()
	w := &bgWorld{a: testenv.Attester(t, testenv.DefaultLog)}
	w.issuer = testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{w.a.AKPublic()}})
	w.calls = map[string]*atomic.Int64{api.PathChallenge: {}, api.PathAppraise: {}, api.PathAttest: {}}
	w.issuer.HTTP.Config.Handler = countRequests(w.issuer.HTTP.Config.Handler, w.calls)
	w.bc = &BackgroundCheck{IssuerURL: w.issuer.URL}
	w.protects = func(opts ...MiddlewareOption) *httptest.Server {
		return newServer(t, func(origin *url.URL) http.Handler {
			v := w.verifierFor(t, origin)
			opts := append([]MiddlewareOption{WithExternalURL(origin)}, opts...)
			return Middleware(v, opts...)(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				c, _ := ClaimsFromContext(r.Context())
				w.seen.Store(c)
				io.WriteString(rw, "ok")
			}))
		})
	}
	return w
}

// verifierFor returns a Verifier of the world's issuer for the relying party at origin, whose
// audience is that origin (as the background check requires), and makes it w.v and w.aud.
func (w *bgWorld) verifierFor(t *testing.T, origin *url.URL) *Verifier {
	t.Helper()
	v, err := NewVerifier(Config{Issuer: w.issuer.URL, Audience: origin.String(), KeySet: NewStaticKeySet(w.issuer.Keyring.PublicSet())})
	if err != nil {
		t.Fatal(err)
	}
	w.v, w.aud = v, origin.String()
	return v
}

func (w *bgWorld) evidenceClient(rec *recorder) *http.Client {
	return &http.Client{Transport: &attester.EvidenceTransport{Attester: w.a, Base: rec}, Timeout: 30 * time.Second}
}

// TestBackgroundCheckFallback: a request without a token gets a challenge; the attester's
// EvidenceTransport answers it with fresh evidence and a DPoP proof; the relying party has the
// issuer appraise it and serves the request with a result addressed to itself. A request with
// a token does not involve the issuer at all.
func TestBackgroundCheckFallback(t *testing.T) {
	w := newBGWorld(t)
	rp := w.protects(WithBackgroundCheck(w.bc))

	// A bare request: 401 with the nonce and both challenges (a token would do too).
	resp, err := http.Get(rp.URL + "/resource")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	nonce := resp.Header.Get(api.HeaderNonce)
	chs := resp.Header.Values("WWW-Authenticate")
	if resp.StatusCode != 401 || len(chs) != 2 || chs[0] != `Bearer realm="passport"` ||
		chs[1] != `Attestation realm="passport", nonce="`+nonce+`"` || nonce == "" {
		t.Fatalf("challenge: %d %q nonce %q", resp.StatusCode, chs, nonce)
	}

	// The attester answers the challenge.
	rec := &recorder{}
	resp, err = w.evidenceClient(rec).Get(rp.URL + "/resource")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("evidence answer: %d %s", resp.StatusCode, body)
	}
	if len(rec.reqs) != 2 || rec.statuses[0] != 401 || rec.reqs[1].Header.Get(api.HeaderEvidence) == "" || rec.reqs[1].Header.Get("DPoP") == "" {
		t.Fatalf("exchange: statuses %v", rec.statuses)
	}
	c := w.seen.Load()
	ev := decodeEvidence(t, rec.reqs[1].Header.Get(api.HeaderEvidence))
	if c == nil || !c.Audience.Contains(w.aud) || c.EATNonce != api.EncodeNonce(ev.Nonce) {
		t.Fatalf("handler saw %+v", c)
	}
	if err := SameKey(w.a.CNF().Key, c.Confirmation.JWK); err != nil {
		t.Fatalf("result cnf: %v", err)
	}
	if w.calls[api.PathAppraise].Load() != 1 || w.v.CacheLen() != 0 {
		t.Fatalf("appraisals %d, cached results %d", w.calls[api.PathAppraise].Load(), w.v.CacheLen())
	}

	// A token (passport model) is served without the issuer.
	res, err := (&attester.Client{IssuerURL: w.issuer.URL}).Attest(context.Background(), w.a, w.aud)
	if err != nil {
		t.Fatal(err)
	}
	before := w.calls[api.PathChallenge].Load()
	req, _ := http.NewRequest(http.MethodGet, rp.URL+"/resource", nil)
	req.Header.Set("Authorization", "Bearer "+res.Token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || w.calls[api.PathChallenge].Load() != before {
		t.Fatalf("token on a fallback route: %d, challenges %d -> %d", resp.StatusCode, before, w.calls[api.PathChallenge].Load())
	}
}

func decodeEvidence(t *testing.T, h string) *api.AttestRequest {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var ev api.AttestRequest
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	return &ev
}

// TestBackgroundCheckRefusals: captured evidence is useless to a thief or a relay, malformed
// evidence is a 400, refused evidence a 403, and an unreachable issuer a 503.
func TestBackgroundCheckRefusals(t *testing.T) {
	w := newBGWorld(t)
	rp := w.protects(WithBackgroundCheck(w.bc))
	target := rp.URL + "/resource"

	// One genuine exchange, recorded.
	rec := &recorder{}
	resp, err := w.evidenceClient(rec).Get(target)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("genuine exchange: %d", resp.StatusCode)
	}
	captured := rec.reqs[1].Header.Get(api.HeaderEvidence)
	capturedProof := rec.reqs[1].Header.Get("DPoP")
	owner := w.a.CNFPrivate()
	thief := newKey(t)

	// fresh evidence for a new challenge, not yet used
	freshEvidence := func() string {
		ch, err := w.bc.challenge(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ev, err := w.a.Evidence(ch.Nonce)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(ev)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := func(k *ecdsa.PrivateKey, u string) string { return proof(t, k, "GET", u, "", time.Now()) }

	for _, tc := range []struct {
		name      string
		evidence  string
		proof     string
		status    int
		code      string
		challenge string // prefix of the first WWW-Authenticate
	}{
		{"replayed evidence and proof", captured, capturedProof, 401, "invalid_dpop_proof", "DPoP "},
		{"replayed evidence with a new proof (nonce already used)", captured, signed(owner, target), 401, "evidence_required", "Bearer "},
		{"evidence without a proof", freshEvidence(), "", 401, "invalid_dpop_proof", "DPoP "},
		{"evidence with a thief's proof", freshEvidence(), signed(thief, target), 401, "invalid_dpop_proof", "DPoP "},
		{"evidence relayed from another relying party", freshEvidence(), signed(owner, "https://other-rp.example/resource"), 401, "invalid_dpop_proof", "DPoP "},
		{"malformed evidence", "not-json", signed(owner, target), 400, "invalid_request", "Attestation "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, target, nil)
			req.Header.Set(api.HeaderEvidence, tc.evidence)
			if tc.proof != "" {
				req.Header.Set("DPoP", tc.proof)
			}
			appraisals := w.calls[api.PathAppraise].Load()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			_ = json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != tc.status || e.Code != tc.code || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), tc.challenge) {
				t.Fatalf("%d %s %q, want %d %s %q…", resp.StatusCode, e.Code, resp.Header.Get("WWW-Authenticate"), tc.status, tc.code, tc.challenge)
			}
			if tc.code == "invalid_dpop_proof" && w.calls[api.PathAppraise].Load() != appraisals {
				t.Fatal("evidence forwarded to the issuer without a valid proof")
			}
			if tc.code == "evidence_required" && resp.Header.Get(api.HeaderNonce) == "" {
				t.Fatal("no new challenge after a used nonce")
			}
		})
	}

	// An issuer that does not trust this TPM refuses the evidence: 403.
	distrust := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{&newKey(t).PublicKey}})
	rp2 := newServer(t, func(origin *url.URL) http.Handler {
		v2, err := NewVerifier(Config{Issuer: distrust.URL, Audience: origin.String(), KeySet: NewStaticKeySet(distrust.Keyring.PublicSet())})
		if err != nil {
			t.Fatal(err)
		}
		return Middleware(v2, WithBackgroundCheck(&BackgroundCheck{IssuerURL: distrust.URL}), WithExternalURL(origin))(http.NotFoundHandler())
	})
	resp, err = w.evidenceClient(&recorder{}).Get(rp2.URL)
	if err != nil {
		t.Fatal(err)
	}
	var e api.Error
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 403 || e.Code != "evidence_rejected" || !strings.Contains(e.Description, "evidence_rejected_") {
		t.Fatalf("untrusted AK: %d %+v", resp.StatusCode, e)
	}

	// No issuer at all: 503, no challenge.
	rp3 := newServer(t, func(origin *url.URL) http.Handler {
		return Middleware(w.verifierFor(t, origin), WithBackgroundCheck(&BackgroundCheck{IssuerURL: "http://127.0.0.1:1"}), WithExternalURL(origin))(http.NotFoundHandler())
	})
	resp, err = http.Get(rp3.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get(api.HeaderNonce) != "" {
		t.Fatalf("issuer down: %d", resp.StatusCode)
	}
}

// TestFreshEvidenceRoute: a route demanding fresh evidence ignores tokens, however valid.
func TestFreshEvidenceRoute(t *testing.T) {
	w := newBGWorld(t)
	rp := w.protects(RequireFreshEvidence(w.bc))
	res, err := (&attester.Client{IssuerURL: w.issuer.URL}).Attest(context.Background(), w.a, w.aud)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, rp.URL+"/", nil)
	req.Header.Set("Authorization", "Bearer "+res.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if chs := resp.Header.Values("WWW-Authenticate"); resp.StatusCode != 401 || len(chs) != 1 || !strings.HasPrefix(chs[0], "Attestation ") {
		t.Fatalf("token on a fresh-evidence route: %d %q", resp.StatusCode, chs)
	}
	rec := &recorder{}
	resp, err = w.evidenceClient(rec).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(rec.statuses) != 2 {
		t.Fatalf("fresh evidence: %d after %v", resp.StatusCode, rec.statuses)
	}
}

// TestBackgroundResultMismatch: a result that does not answer the forwarded evidence (another
// eat_nonce, another cnf key, another audience) is never accepted, even when validly signed.
// The issuer here is a fake that signs whatever it is told to.
func TestBackgroundResultMismatch(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.Audience = rpOrigin.String() }) // the background check's audience: the origin
	owner, other := newKey(t), newKey(t)
	var nonce [api.NonceSize]byte
	nonce[0] = 7
	var mutate func(*token.Claims)
	fake := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var req api.AppraiseRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Evidence == nil {
			http.Error(rw, "bad", 400)
			return
		}
		c := claimsAt(t, clk.Now())
		c.Audience = token.Audience{req.Audience}
		c.EATNonce = api.EncodeNonce(req.Evidence.Nonce)
		c.Confirmation = &token.Confirmation{JWK: req.Evidence.CNF}
		mutate(&c)
		json.NewEncoder(rw).Encode(api.AppraiseResponse{Result: iss.sign(t, c), ExpiresAt: c.Expires()})
	}))
	defer fake.Close()
	var called bool
	h := Middleware(v, WithBackgroundCheck(&BackgroundCheck{IssuerURL: fake.URL}), WithExternalURL(rpOrigin))(okHandler(t, &called))
	evidence := func() string {
		b, _ := json.Marshal(api.AttestRequest{Nonce: nonce[:], Attestation: []byte{1}, CNF: &jose.JSONWebKey{Key: &owner.PublicKey}, Origin: rpOrigin.String()})
		return base64.RawURLEncoding.EncodeToString(b)
	}()
	const target = "http://rp.example/resource"
	for _, tc := range []struct {
		name   string
		mutate func(*token.Claims)
		status int
		code   string
	}{
		{"faithful result", func(*token.Claims) {}, 204, ""},
		{"another eat_nonce", func(c *token.Claims) { c.EATNonce = "AAAA" }, 502, "server_error"},
		{"no eat_nonce", func(c *token.Claims) { c.EATNonce = "" }, 502, "server_error"},
		{"another cnf key", func(c *token.Claims) {
			c.Confirmation = &token.Confirmation{JWK: &jose.JSONWebKey{Key: &other.PublicKey}}
		}, 502, "server_error"},
		{"another audience", func(c *token.Claims) { c.Audience = token.Audience{"https://other.example"} }, 401, "invalid_token"},
		{"contraindicated", func(c *token.Claims) { c.Submods[token.SubmodTPM].Status = token.TierContraindicated }, 403, "insufficient_scope"},
	} {
		mutate = tc.mutate
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set(api.HeaderEvidence, evidence)
		r.Header.Set(dpop.HeaderName, proof(t, owner, "GET", target, "", clk.Now()))
		got := serveOnce(t, h, r, &called)
		if tc.status == 204 {
			if got.status != 204 || !got.called {
				t.Fatalf("%s: %+v", tc.name, got)
			}
			continue
		}
		if got.status != tc.status || got.code != tc.code || got.called {
			t.Fatalf("%s: %+v, want %d %s", tc.name, got, tc.status, tc.code)
		}
	}
}
