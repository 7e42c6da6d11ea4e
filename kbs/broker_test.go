package kbs_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/token"
)

// TestReleaseToAffirmingMachine: a DPoP-bound affirming token gets the secret as a compact JWE
// that only its cnf key opens, with one audit line saying so.
func TestReleaseToAffirmingMachine(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok := f.token(t, nil)
	r := f.do(t, req{token: tok})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != kbs.MediaType {
		t.Errorf("Content-Type %q, want %q", ct, kbs.MediaType)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	assertNoPlaintext(t, r.body, f.secret)
	got, err := attester.OpenSecret(string(r.body), f.cnf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, f.secret) {
		t.Fatal("decrypted secret differs")
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := attester.OpenSecret(string(r.body), other); err == nil {
		t.Fatal("another key opened the JWE")
	}
	lines := f.audit.lines(t)
	if len(lines) != 1 {
		t.Fatalf("%d audit lines, want 1", len(lines))
	}
	want := map[string]any{"event": "kbs.release", "resource": diskKey, "sub": "ak-thumbprint-1", "jti": "jti-1",
		"decision": "release", "reason": "granted", "status": float64(200), "alg": "ECDH-ES+A256KW", "rule": "*/*/*"}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("audit %s = %v, want %v", k, lines[0][k], v)
		}
	}
	assertAuditClean(t, f, tok)
}

// assertNoPlaintext fails if the secret appears raw, in hex or in base64 in b.
func assertNoPlaintext(t *testing.T, b, secret []byte) {
	t.Helper()
	for _, enc := range [][]byte{secret, []byte(hex.EncodeToString(secret)), []byte(base64.StdEncoding.EncodeToString(secret)),
		[]byte(base64.RawURLEncoding.EncodeToString(secret))} {
		if bytes.Contains(b, enc) {
			t.Fatal("the secret appears in plaintext")
		}
	}
}

// assertAuditClean: the audit log never holds the token, a proof or the secret.
func assertAuditClean(t *testing.T, f *fixture, tokens ...string) {
	t.Helper()
	log := f.audit.String()
	assertNoPlaintext(t, []byte(log), f.secret)
	for _, tok := range tokens {
		if strings.Contains(log, tok) || strings.Contains(log, strings.Split(tok, ".")[1]) {
			t.Fatal("the audit log holds a token")
		}
	}
	if strings.Contains(log, "eyJ") {
		t.Fatal("the audit log holds something JOSE-encoded (token or proof)")
	}
}

// TestRefusals: each refusal answers its status and code, never touches the secret store when
// the caller may not have the secret, never carries the secret, and is audited with its
// reason. Each case fails if its check is removed: the same request with the check passing is
// a release (TestReleaseToAffirmingMachine).
func TestRefusals(t *testing.T) {
	f := newFixture(t, fixtureOpts{policy: `
rules:
  - resource: "default/key/pcr7"
    allow: 'status == "affirming" && claims.submods.tpm.measurements.pcrs["7"] == "` + strings.Repeat("ab", 32) + `"'
  - resource: "default/key/disk"
    allow: 'status == "affirming" && claims.aud == "kbs" && claims.submods.tpm.measurements.secure_boot == true'
`})
	if err := f.store.Put(t.Context(), api.ResourceID{Repository: "default", Type: "key", Tag: "pcr7"}, []byte("pcr7 secret")); err != nil {
		t.Fatal(err)
	}
	thief, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	offCurve := f.claims()
	offCurveMap := claimsMap(t, offCurve)
	jwk := offCurveMap["cnf"].(map[string]any)["jwk"].(map[string]any)
	y, _ := base64.RawURLEncoding.DecodeString(jwk["y"].(string))
	y[len(y)-1] ^= 1
	jwk["y"] = base64.RawURLEncoding.EncodeToString(y)

	tests := []struct {
		name      string
		r         req
		status    int
		code      string
		reason    string
		storeRead bool
		setup     func()
	}{
		{name: "no token", r: req{scheme: "-"}, status: 401, code: "unauthorized", reason: "no_token"},
		{name: "garbage token", r: req{token: "abc.def.ghi"}, status: 401, code: "invalid_token", reason: "malformed_token"},
		{name: "forged signature", r: req{token: forge(t, f.token(t, nil))}, status: 401, code: "invalid_token", reason: "bad_signature"},
		{name: "another audience", r: req{token: f.token(t, func(c *token.Claims) { c.Audience = token.Audience{"other-service"} })},
			status: 401, code: "invalid_token", reason: "wrong_audience"},
		{name: "another issuer", r: req{token: f.token(t, func(c *token.Claims) { c.Issuer = "https://evil.example" })},
			status: 401, code: "invalid_token", reason: "wrong_issuer"},
		{name: "expired", r: req{token: f.token(t, func(c *token.Claims) { c.Expiry = f.now.Add(-time.Hour).Unix() })},
			status: 401, code: "invalid_token", reason: "expired"},
		{name: "warning tier (default policy wants affirming)", r: req{resource: "default/key/other", token: f.token(t, func(c *token.Claims) {
			c.Submods[token.SubmodTPM].Status = token.TierWarning
		})}, status: 403, code: "insufficient_scope", reason: "policy"},
		{name: "warning claim in the vector", r: req{token: f.token(t, func(c *token.Claims) {
			c.Submods[token.SubmodTPM].Vector[token.ClaimExecutables] = token.ValueUnrecognized
		})}, status: 403, code: "insufficient_scope", reason: "policy"},
		{name: "contraindicated (below the verifier floor)", r: req{token: f.token(t, func(c *token.Claims) {
			c.Submods[token.SubmodTPM].Status = token.TierContraindicated
		})}, status: 403, code: "insufficient_scope", reason: "status"},
		{name: "policy mismatch: PCR 7", r: req{resource: "default/key/pcr7", token: f.token(t, nil)}, status: 403, code: "insufficient_scope", reason: "policy"},
		{name: "policy mismatch: secure boot off", r: req{token: f.token(t, func(c *token.Claims) {
			sb := false
			c.Submods[token.SubmodTPM].Measurements.SecureBoot = &sb
		})}, status: 403, code: "insufficient_scope", reason: "policy"},
		{name: "stolen token presented as bearer", r: req{scheme: "Bearer", token: f.token(t, nil), noProof: true},
			status: 401, code: "invalid_token", reason: "dpop_required"},
		{name: "stolen token, bearer with the thief's proof", r: req{scheme: "Bearer", token: f.token(t, nil), proofKey: thief},
			status: 401, code: "invalid_token", reason: "dpop_required"},
		{name: "stolen token, proof signed by another key", r: req{token: f.token(t, nil), proofKey: thief},
			status: 401, code: "invalid_dpop_proof", reason: "proof_key_mismatch"},
		{name: "DPoP scheme without proof", r: req{token: f.token(t, nil), noProof: true}, status: 401, code: "invalid_dpop_proof", reason: "proof_missing"},
		{name: "proof for another URL", r: req{token: f.token(t, nil), proofURL: "http://127.0.0.1:1/kbs/v0/resource/default/key/disk"},
			status: 401, code: "invalid_dpop_proof", reason: "proof_target_mismatch"},
		{name: "proof for another method", r: req{token: f.token(t, nil), method: http.MethodHead}, status: 405},
		{name: "revoked", r: req{token: f.token(t, func(c *token.Claims) { c.ID = "revoked-jti" })}, status: 401, code: "invalid_token", reason: "revoked",
			setup: func() { f.revs.revoke("revoked-jti") }},
		{name: "token without cnf", r: req{token: f.token(t, func(c *token.Claims) { c.Confirmation = nil }), noProof: true},
			status: 401, code: "invalid_token", reason: "no_cnf"},
		{name: "cnf without a jwk, thief's proof", r: req{token: f.token(t, func(c *token.Claims) { c.Confirmation = &token.Confirmation{} }), proofKey: thief},
			status: 401, code: "invalid_token", reason: "no_cnf"},
		{name: "cnf that cannot encrypt (Ed25519)", r: req{token: f.token(t, func(c *token.Claims) {
			c.Confirmation = &token.Confirmation{JWK: &jose.JSONWebKey{Key: edPriv.Public()}}
		}), proofKey: edPriv}, status: 403, code: "insufficient_scope", reason: "cnf_unusable"},
		{name: "cnf off its curve", r: req{token: f.sign(t, offCurveMap), noProof: true}, status: 401, code: "invalid_token", reason: "malformed_claims"},
		{name: "unknown resource, no token", r: req{resource: "default/key/nope", scheme: "-"}, status: 401, code: "unauthorized", reason: "no_token"},
		{name: "unknown resource, forbidden token", r: req{resource: "default/key/nope", token: f.token(t, func(c *token.Claims) {
			c.Submods[token.SubmodTPM].Status = token.TierWarning
		})}, status: 403, code: "insufficient_scope", reason: "policy"},
		{name: "unknown resource, allowed token", r: req{resource: "default/key/nope", token: f.token(t, nil)}, status: 404, code: "not_found", reason: "not_found", storeRead: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			before := f.store.gets.Load()
			nLines := len(f.audit.lines(t))
			r := f.do(t, tc.r)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			assertNoPlaintext(t, r.body, f.secret)
			if read := f.store.gets.Load() != before; read != tc.storeRead {
				t.Errorf("secret store read: %v, want %v", read, tc.storeRead)
			}
			if tc.code == "" {
				return
			}
			var e api.Error
			if err := json.Unmarshal(r.body, &e); err != nil || e.Code != tc.code {
				t.Errorf("body %s, want error %q", r.body, tc.code)
			}
			if tc.status == 401 || tc.status == 403 {
				ch := r.header.Values("WWW-Authenticate")
				if len(ch) == 0 || !strings.HasPrefix(ch[0], `DPoP realm="passport-kbs", algs="ES256`) {
					t.Errorf("WWW-Authenticate %q", ch)
				}
			}
			lines := f.audit.lines(t)
			if len(lines) != nLines+1 {
				t.Fatalf("%d new audit lines, want 1", len(lines)-nLines)
			}
			l := lines[len(lines)-1]
			if l["decision"] != "refuse" || l["reason"] != tc.reason || l["status"] != float64(tc.status) {
				t.Errorf("audit line %v, want refuse/%s/%d", l, tc.reason, tc.status)
			}
		})
	}
	assertAuditClean(t, f)
}

// TestRevocationOutageFailsClosed: when the revocation check cannot answer, nothing is
// released (503), and the release resumes when it answers again.
func TestRevocationOutageFailsClosed(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.revs.setDown(true)
	if r := f.do(t, req{token: f.token(t, nil)}); r.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d during a revocation outage, want 503", r.status)
	}
	f.revs.setDown(false)
	if r := f.do(t, req{token: f.token(t, nil)}); r.status != http.StatusOK {
		t.Fatalf("status %d after the outage, want 200", r.status)
	}
	if f.revs.calls.Load() != 2 {
		t.Fatalf("revocation checked %d times, want 2", f.revs.calls.Load())
	}
}

// TestRevokedAfterFirstRelease: a token released once is refused once revoked, even though the
// verifier caches it.
func TestRevokedAfterFirstRelease(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok := f.token(t, nil)
	if r := f.do(t, req{token: tok}); r.status != 200 {
		t.Fatalf("first request: %d", r.status)
	}
	f.revs.revoke("jti-1")
	if r := f.do(t, req{token: tok}); r.status != 401 {
		t.Fatalf("revoked token: %d, want 401", r.status)
	}
}

// TestReplayedProofRefused: a DPoP proof is single use (RFC 9449 section 11.1).
func TestReplayedProofRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok := f.token(t, nil)
	// One proof, sent twice: the first use releases, the second is a replay.
	hr, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/kbs/v0/resource/"+diskKey, nil)
	proof := mustProof(t, f, hr, tok)
	for i, want := range []int{200, 401} {
		r2 := hr.Clone(t.Context())
		r2.Header.Set("Authorization", "DPoP "+tok)
		r2.Header.Set("DPoP", proof)
		res, err := f.srv.Client().Do(r2)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("use %d of one proof: %d, want %d", i+1, res.StatusCode, want)
		}
	}
	if l := f.audit.lines(t); l[len(l)-1]["reason"] != "proof_replayed" {
		t.Fatalf("audit reason %v", l[len(l)-1]["reason"])
	}
}

// TestBearerOptIn: a rule with bearer: true releases to a token without proof, still encrypted
// to its cnf key; other resources keep requiring DPoP.
func TestBearerOptIn(t *testing.T) {
	f := newFixture(t, fixtureOpts{policy: `
rules:
  - resource: "public/config/*"
    bearer: true
`})
	id := api.ResourceID{Repository: "public", Type: "config", Tag: "motd"}
	if err := f.store.Put(t.Context(), id, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	tok := f.token(t, nil)
	r := f.do(t, req{resource: id.String(), scheme: "Bearer", token: tok, noProof: true})
	if r.status != 200 {
		t.Fatalf("bearer on an opted-in resource: %d %s", r.status, r.body)
	}
	if got, err := attester.OpenSecret(string(r.body), f.cnf); err != nil || string(got) != "hello" {
		t.Fatalf("decrypt: %q %v", got, err)
	}
	if r := f.do(t, req{scheme: "Bearer", token: tok, noProof: true}); r.status != 401 {
		t.Fatalf("bearer on a DPoP resource: %d, want 401", r.status)
	}
	// A proof sent anyway is still checked.
	thief, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if r := f.do(t, req{resource: id.String(), scheme: "Bearer", token: tok, proofKey: thief}); r.status != 401 {
		t.Fatalf("bearer with a bad proof: %d, want 401", r.status)
	}
}

// TestPolicyDecidesWarning: the verifier's floor is warning, so a rule may release to a
// warning-tier machine while the default keeps requiring affirming.
func TestPolicyDecidesWarning(t *testing.T) {
	f := newFixture(t, fixtureOpts{policy: `
rules:
  - resource: "default/key/*"
    allow: 'status in ["affirming", "warning"] && resource.type == "key" && claims.sub.startsWith("ak-")'
`})
	warn := f.token(t, func(c *token.Claims) { c.Submods[token.SubmodTPM].Status = token.TierWarning })
	if r := f.do(t, req{token: warn}); r.status != 200 {
		t.Fatalf("warning token on a warning-tolerant resource: %d %s", r.status, r.body)
	}
	id := api.ResourceID{Repository: "other", Type: "key", Tag: "x"}
	if err := f.store.Put(t.Context(), id, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if r := f.do(t, req{resource: id.String(), token: warn}); r.status != 403 {
		t.Fatalf("warning token on a default resource: %d, want 403", r.status)
	}
}

// TestResourceNamesValidatedFirst: bad names are refused with 400 (or never routed) before
// authentication and before the store, whatever their encoding.
func TestResourceNamesValidatedFirst(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok := f.token(t, nil)
	for _, p := range []string{
		"/kbs/v0/resource/../key/disk",
		"/kbs/v0/resource/default/../disk",
		"/kbs/v0/resource/%2e%2e/key/disk",
		"/kbs/v0/resource/default/key/%2e%2e%2fsecret",
		"/kbs/v0/resource/default%2Fkey/disk/x",
		"/kbs/v0/resource/default/key",
		"/kbs/v0/resource/default/key/disk/extra",
		"/kbs/v0/resource/default/key/",
		"/kbs/v0/resource//key/disk",
		"/kbs/v0/resource/.hidden/key/disk",
		"/kbs/v0/resource/default/key/disk%00",
		"/kbs/v0/resource/default/key/di$k",
		"/kbs/v0/resource/default/key/" + strings.Repeat("a", 129),
	} {
		before := f.store.gets.Load()
		r := f.do(t, req{rawPath: p, token: tok})
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", p, r.status)
		}
		if f.store.gets.Load() != before {
			t.Errorf("%s: the store was read", p)
		}
	}
}

// TestAuditOnePerDecision: concurrent requests give exactly one audit line each.
func TestAuditOnePerDecision(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	const n = 20
	done := make(chan int, n)
	for i := range n {
		go func() {
			r := req{token: f.token(t, nil)}
			if i%2 == 1 {
				r.scheme = "-"
			}
			done <- f.do(t, r).status
		}()
	}
	counts := map[int]int{}
	for range n {
		counts[<-done]++
	}
	if counts[200] != n/2 || counts[401] != n/2 {
		t.Fatalf("statuses %v", counts)
	}
	lines := f.audit.lines(t)
	if len(lines) != n {
		t.Fatalf("%d audit lines for %d requests", len(lines), n)
	}
	for _, l := range lines {
		for _, k := range []string{"resource", "sub", "jti", "decision", "reason", "status"} {
			if _, ok := l[k]; !ok {
				t.Fatalf("audit line lacks %s: %v", k, l)
			}
		}
	}
}

// TestHealthAndRouting: /healthz answers; other paths are 404 without touching anything.
func TestHealthAndRouting(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	if r := f.do(t, req{rawPath: "/healthz", scheme: "-"}); r.status != 200 {
		t.Fatalf("/healthz: %d", r.status)
	}
	if r := f.do(t, req{rawPath: "/kbs/v0/other", scheme: "-"}); r.status != 404 {
		t.Fatalf("unknown path: %d", r.status)
	}
	if r := f.do(t, req{method: http.MethodPost, token: f.token(t, nil)}); r.status != 405 {
		t.Fatalf("POST: %d", r.status)
	}
}

func claimsMap(t *testing.T, c token.Claims) map[string]any {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// forge flips one bit of tok's signature.
func forge(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sig[5] ^= 1
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func mustProof(t *testing.T, f *fixture, r *http.Request, tok string) string {
	t.Helper()
	p, err := dpopProof(f, r, tok)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPublicURL: behind a proxy the proof names the public URL, not the listener's; New refuses
// a PublicURL that is not an absolute http(s) base.
func TestPublicURL(t *testing.T) {
	const public = "https://kbs.example:8443/prefix"
	f := newFixture(t, fixtureOpts{mod: func(c *kbs.Config) { c.PublicURL = public }})
	tok := f.token(t, nil)
	if r := f.do(t, req{token: tok, proofURL: public + "/kbs/v0/resource/" + diskKey}); r.status != 200 {
		t.Fatalf("proof for the public URL: %d %s", r.status, r.body)
	}
	if r := f.do(t, req{token: tok}); r.status != 401 {
		t.Fatalf("proof for the listener's URL: %d, want 401", r.status)
	}
	for _, bad := range []string{"kbs.example", "ftp://kbs.example", "https://", "https://kbs.example/?q=1", "://", "https://u@kbs.example", "https://kbs.example/#f"} {
		if _, err := kbs.New(kbs.Config{Verifier: f.verifier, Store: f.store, PublicURL: bad}); err == nil {
			t.Errorf("PublicURL %q accepted", bad)
		}
	}
	if _, err := kbs.New(kbs.Config{Store: f.store, PublicURL: public}); err == nil {
		t.Error("New without a Verifier")
	}
	if _, err := kbs.New(kbs.Config{Verifier: f.verifier, PublicURL: public}); err == nil {
		t.Error("New without a Store")
	}
	if _, err := kbs.New(kbs.Config{Verifier: f.verifier, Store: f.store}); err == nil {
		t.Error("New without a PublicURL: the htu would come from the Host header")
	}
}

// TestRelayedProofRefused: a relying party that obtained a token and a proof made for its own
// URL relays them to the broker with "Host:" set to its own host. The broker checks the proof
// against its PublicURL, never the Host header, and refuses it; the genuine request passes.
func TestRelayedProofRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok := f.token(t, nil)
	const evil = "evil.example"
	r := f.do(t, req{token: tok, host: evil, proofURL: "http://" + evil + "/kbs/v0/resource/" + diskKey})
	if r.status != 401 || !strings.Contains(string(r.body), "invalid_dpop_proof") {
		t.Fatalf("relayed token and proof with Host %s: %d %s, want 401 invalid_dpop_proof", evil, r.status, r.body)
	}
	if !strings.Contains(f.audit.String(), `"reason":"proof_target_mismatch"`) {
		t.Fatalf("audit: %s", f.audit.String())
	}
	if n := f.store.gets.Load(); n != 0 {
		t.Fatalf("the store was read %d times for a relayed request", n)
	}
	if r := f.do(t, req{token: tok}); r.status != 200 {
		t.Fatalf("genuine request: %d %s", r.status, r.body)
	}
}

// TestRefusalClasses: Release errors match their class and keep their cause.
func TestRefusalClasses(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := t.Context()
	for _, tc := range []struct {
		r     kbs.Request
		class error
	}{
		{kbs.Request{Resource: "../x/y"}, kbs.ErrBadRequest},
		{kbs.Request{Resource: diskKey}, kbs.ErrUnauthorized},
		{kbs.Request{Resource: diskKey, Authorization: []string{"Bearer " + f.token(t, nil)}}, kbs.ErrUnauthorized},
		{kbs.Request{Resource: diskKey, Authorization: []string{"DPoP " + f.token(t, func(c *token.Claims) {
			c.Submods[token.SubmodTPM].Status = token.TierWarning
		})}, DPoP: nil}, kbs.ErrUnauthorized},
	} {
		_, err := f.broker.Release(ctx, tc.r)
		var rf *kbs.Refusal
		if !errors.Is(err, tc.class) || !errors.As(err, &rf) {
			t.Errorf("%v: want class %v", err, tc.class)
		}
	}
	_, err := f.broker.Release(ctx, kbs.Request{Resource: diskKey, Authorization: []string{"DPoP " + f.token(t, func(c *token.Claims) { c.Audience = token.Audience{"x"} })}})
	if !errors.Is(err, kbs.ErrUnauthorized) || !errors.Is(err, token.ErrAudience) {
		t.Fatalf("cause lost: %v", err)
	}
}
