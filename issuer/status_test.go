package issuer_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/internal/testredis"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
	redisstore "github.com/passport-attest/passport/store/redis"
	"github.com/passport-attest/passport/token"
)

// issuerWith is testenv.Issuer with a final edit of the issuer's configuration (status store,
// keys, ttl): an issuer over httptest, closed at the end of the test. Zero options give a
// memory store, an allowlist of o.TrustAKs, the empty reference policy and an ES256 key.
func issuerWith(t testing.TB, o testenv.IssuerOptions, configure func(*issuer.Config)) *testenv.Server {
	t.Helper()
	allow, err := evidence.NewAllowlist(o.TrustAKs...)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evidence.NewVerifier(evidence.Options{AKTrust: allow})
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	if o.Nonces == nil {
		o.Nonces = memory.New()
	}
	if o.Clocks == nil {
		o.Clocks, _ = o.Nonces.(store.ClockStore)
	}
	if o.Policy == nil {
		o.Policy = &policy.Reference{}
	}
	srv := httptest.NewServer(nil)
	t.Cleanup(srv.Close)
	cfg := issuer.Config{URL: srv.URL, Keyring: jwks.NewKeyring(key), Nonces: o.Nonces, Clocks: o.Clocks,
		Evidence: ev, Policy: o.Policy, Now: o.Now, TokenLifetime: o.Lifetime}
	if configure != nil {
		configure(&cfg)
	}
	is, err := issuer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = is.Handler()
	return &testenv.Server{URL: srv.URL, Issuer: is, Keyring: cfg.Keyring, HTTP: srv}
}

// admin serves srv's admin API over httptest and returns its URL.
func admin(t *testing.T, is *issuer.Issuer) string {
	t.Helper()
	auth, err := issuer.NewAdminAuth([]byte(adminCredential))
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(is.AdminHandler(auth))
	t.Cleanup(s.Close)
	return s.URL
}

// adminPost posts body to the admin API and returns the status and body.
func adminPost(t *testing.T, url, path string, body any, credential string) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url+path, bytes.NewReader(b))
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, out
}

func revoke(t *testing.T, adminURL string, req api.RevokeRequest) api.RevokeResponse {
	t.Helper()
	code, body := adminPost(t, adminURL, api.PathAdminRevoke, req, adminCredential)
	if code != http.StatusOK {
		t.Fatalf("revoke %+v: %d %s", req, code, body)
	}
	var res api.RevokeResponse
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// reinstate lifts the revocation of a reference value (DELETE on the admin API).
func reinstate(t *testing.T, adminURL, digest string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, adminURL+api.PathReferenceValueRevocations+"/"+digest, nil)
	req.Header.Set("Authorization", "Bearer "+adminCredential)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("reinstate %s: %d", digest, resp.StatusCode)
	}
}

// verifier returns a relying-party verifier for srv's tokens that checks their status online
// (no verified-token cache, so each Verify reads the status again).
func verifier(t *testing.T, srv *testenv.Server, mod func(*relyingparty.StatusConfig)) (*relyingparty.Verifier, *relyingparty.StatusChecker) {
	t.Helper()
	ks := relyingparty.NewStaticKeySet(srv.Keyring.PublicSet())
	cfg := relyingparty.StatusConfig{Issuer: srv.URL, KeySet: ks}
	if mod != nil {
		mod(&cfg)
	}
	sc, err := relyingparty.NewStatusChecker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: srv.URL, Audience: "test", KeySet: ks, Require: sc.Require})
	if err != nil {
		t.Fatal(err)
	}
	return v, sc
}

// attestOnce gets one token from srv.
func attestOnce(t *testing.T, c *attester.Client, a *attester.Attester) string {
	t.Helper()
	res, err := c.Submit(context.Background(), fresh(t, c, a))
	if err != nil {
		t.Fatal(err)
	}
	return res.Token
}

// claimsOf decodes a token's payload without verifying it.
func claimsOf(t *testing.T, tok string) *token.Claims {
	t.Helper()
	parts := strings.Split(tok, ".")
	var c token.Claims
	b, err := base64URL(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

type backend struct {
	name string
	new  func(t *testing.T) store.NonceStore // also a ClockStore and StatusStore
}

var backends = []backend{
	{"memory", func(t *testing.T) store.NonceStore { return memory.New(memory.WithStatusListSize(64)) }},
	{"redis", func(t *testing.T) store.NonceStore {
		c, prefix := testredis.Redis(t)
		return redisstore.New(c, prefix, redisstore.WithStatusListSize(64))
	}},
}

// TestRevokeByJTI: every token carries a status list entry; revoking one jti through the
// admin API makes a relying party refuse that token and only that one.
func TestRevokeByJTI(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.new(t)
			srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: s, Clocks: s.(store.ClockStore)})
			c := &attester.Client{IssuerURL: srv.URL}
			adminURL := admin(t, srv.Issuer)
			t1, t2 := attestOnce(t, c, a), attestOnce(t, c, a)
			c1, c2 := claimsOf(t, t1), claimsOf(t, t2)
			for _, cl := range []*token.Claims{c1, c2} {
				if cl.Status == nil || !strings.HasPrefix(cl.Status.StatusList.URI, srv.URL+api.PathStatusList+"/") {
					t.Fatalf("token without a status list entry: %+v", cl.Status)
				}
			}
			if c1.Status.StatusList == c2.Status.StatusList {
				t.Fatalf("two tokens share the entry %+v", c1.Status.StatusList)
			}
			v, _ := verifier(t, srv, nil)
			for _, tok := range []string{t1, t2} {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					t.Fatal(err)
				}
			}
			res := revoke(t, adminURL, api.RevokeRequest{JTI: c1.ID})
			if res.Count != 1 || res.Revoked[0].URI != c1.Status.StatusList.URI || res.Revoked[0].Indexes[0] != c1.Status.StatusList.Index {
				t.Fatalf("revoke answered %+v, want the entry %+v", res, c1.Status.StatusList)
			}
			v2, _ := verifier(t, srv, nil)
			if _, err := v2.Verify(context.Background(), t1); !errors.Is(err, relyingparty.ErrRevoked) {
				t.Fatalf("revoked token: Verify = %v, want ErrRevoked", err)
			}
			if _, err := v2.Verify(context.Background(), t2); err != nil {
				t.Fatalf("the other token: %v", err)
			}
			// Unknown jti: 404; bad requests: 400; no credential: 401.
			if code, _ := adminPost(t, adminURL, api.PathAdminRevoke, api.RevokeRequest{JTI: "no-such-jti"}, adminCredential); code != http.StatusNotFound {
				t.Errorf("unknown jti: %d, want 404", code)
			}
			for _, bad := range []any{api.RevokeRequest{}, api.RevokeRequest{JTI: "a", Subject: "b"}, map[string]string{"jti": "a", "extra": "x"}} {
				if code, _ := adminPost(t, adminURL, api.PathAdminRevoke, bad, adminCredential); code != http.StatusBadRequest {
					t.Errorf("bad request %+v: %d, want 400", bad, code)
				}
			}
			if code, _ := adminPost(t, adminURL, api.PathAdminRevoke, api.RevokeRequest{JTI: c2.ID}, ""); code != http.StatusUnauthorized {
				t.Errorf("no credential: %d, want 401", code)
			}
			if _, err := v2.Verify(context.Background(), t2); err != nil {
				t.Fatalf("an unauthenticated request revoked a token: %v", err)
			}
		})
	}
}

// TestRevokeBySubjectAndReferenceValue revokes every live token of an attester (sub) and
// every live token that matched a reference value.
func TestRevokeBySubjectAndReferenceValue(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.new(t)
			// Learn PCR 0 from a first token, then serve a policy with it as reference value.
			probe := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}})
			pcr0 := claimsOf(t, attestOnce(t, &attester.Client{IssuerURL: probe.URL}, a)).Submods[token.SubmodTPM].Measurements.PCRs["0"]
			pol := &policy.Reference{PCRs: map[string][]string{"0": {pcr0}}}
			srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: s, Clocks: s.(store.ClockStore), Policy: pol})
			plain := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: s, Clocks: s.(store.ClockStore)})
			adminURL := admin(t, srv.Issuer)
			c := &attester.Client{IssuerURL: srv.URL}
			var toks []string
			for i := 0; i < 3; i++ {
				toks = append(toks, attestOnce(t, c, a))
			}
			cl := claimsOf(t, toks[0])
			if rv := cl.Submods[token.SubmodTPM].Measurements.ReferenceValues; len(rv) != 1 || rv[0] != pcr0 {
				t.Fatalf("reference_values %v, want [%s]", rv, pcr0)
			}
			// A token of the same attester without reference values (another policy).
			other := attestOnce(t, &attester.Client{IssuerURL: plain.URL}, a)

			res := revoke(t, adminURL, api.RevokeRequest{ReferenceValue: strings.ToUpper(pcr0)})
			if res.Count != 3 {
				t.Fatalf("revoking the reference value revoked %d tokens, want 3", res.Count)
			}
			v, _ := verifier(t, srv, nil)
			for i, tok := range toks {
				if _, err := v.Verify(context.Background(), tok); !errors.Is(err, relyingparty.ErrRevoked) {
					t.Fatalf("token %d matched the revoked reference value: Verify = %v", i, err)
				}
			}
			vo, _ := verifier(t, plain, nil)
			if _, err := vo.Verify(context.Background(), other); err != nil {
				t.Fatalf("a token without the reference value: %v", err)
			}
			// By subject: every live token of the AK, whichever policy minted it.
			res = revoke(t, adminURL, api.RevokeRequest{Subject: cl.Subject})
			if res.Count != 4 {
				t.Fatalf("revoking the subject revoked %d tokens, want 4", res.Count)
			}
			vo2, _ := verifier(t, plain, nil)
			if _, err := vo2.Verify(context.Background(), other); !errors.Is(err, relyingparty.ErrRevoked) {
				t.Fatalf("after revoking the subject: Verify = %v, want ErrRevoked", err)
			}
			// The revoked reference value stays revoked for new tokens: the store refuses to
			// allocate one carrying it (even under a policy that keeps no revocations, which
			// appraised the evidence as fine) until it is reinstated.
			if _, err := c.Submit(context.Background(), fresh(t, c, a)); err == nil || !strings.Contains(err.Error(), "403") {
				t.Fatalf("a token carrying the revoked reference value after the revocation: %v, want 403", err)
			}
			reinstate(t, adminURL, pcr0)
			// A new token of the same attester is not revoked: revocation by subject covers
			// live tokens.
			if _, err := v.Verify(context.Background(), attestOnce(t, c, a)); err != nil {
				t.Fatalf("a token minted after the reinstatement: %v", err)
			}
		})
	}
}

// TestStatusListEndpoint checks GET /v1/status-list/{id}: a statuslist+jwt signed by the
// issuer's keys whose sub is the list URI, Cache-Control from its ttl, an ETag honoured with
// 304, 404 for an unknown list, 400 for a bad id; and the discovery document's status_list_uri.
func TestStatusListEndpoint(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	srv := issuerWith(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}},
		func(c *issuer.Config) { c.StatusTTL = 30 * time.Second })
	c := &attester.Client{IssuerURL: srv.URL}
	cl := claimsOf(t, attestOnce(t, c, a))
	uri := cl.Status.StatusList.URI
	res, err := http.Get(uri)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != issuer.StatusListMediaType {
		t.Fatalf("GET %s: %d %s", uri, res.StatusCode, res.Header.Get("Content-Type"))
	}
	if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=30" && cc != "public, max-age=29" {
		t.Errorf("Cache-Control %q, want max-age from the ttl (30 s)", cc)
	}
	parts := strings.Split(string(body), ".")
	hdr, _ := base64URL(parts[0])
	if !strings.Contains(string(hdr), `"typ":"statuslist+jwt"`) {
		t.Fatalf("header %s lacks typ statuslist+jwt", hdr)
	}
	payload, err := relyingparty.NewStaticKeySet(srv.Keyring.PublicSet()).VerifySignature(context.Background(), string(body))
	if err != nil {
		t.Fatalf("status list token does not verify with the JWKS: %v", err)
	}
	var slc token.StatusListClaims
	if err := json.Unmarshal(payload, &slc); err != nil {
		t.Fatal(err)
	}
	if slc.Subject != uri || slc.Issuer != srv.URL || slc.TTL != 30 || slc.Expiry <= slc.IssuedAt || slc.StatusList.Bits != 1 {
		t.Fatalf("status list claims %+v", slc)
	}
	st, err := slc.StatusList.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if st.Len() != store.DefaultStatusListSize {
		t.Fatalf("list of %d entries, want %d", st.Len(), store.DefaultStatusListSize)
	}
	req, _ := http.NewRequest("GET", uri, nil)
	req.Header.Set("If-None-Match", res.Header.Get("ETag"))
	res2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d, want 304", res2.StatusCode)
	}
	for path, want := range map[string]int{"/v1/status-list/99": 404, "/v1/status-list/x": 400} {
		r, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, r.StatusCode, want)
		}
	}
	if d := srv.Issuer.Discovery(); d.StatusListURI != srv.URL+api.PathStatusList || d.RevocationEventsEndpoint != srv.URL+api.PathRevocations {
		t.Errorf("discovery: status_list_uri %q, revocation_events_endpoint %q", d.StatusListURI, d.RevocationEventsEndpoint)
	}
}

// failingStatus wraps a status store and fails every allocation with ErrUnavailable.
type failingStatus struct {
	store.StatusStore
	calls atomic.Int64
}

func (f *failingStatus) AllocateStatus(ctx context.Context, e store.StatusEntry) (store.StatusRef, error) {
	f.calls.Add(1)
	return store.StatusRef{}, fmt.Errorf("injected: %w", store.ErrUnavailable)
}

// TestNoTokenWithoutStatusEntry: when the status entry cannot be allocated, no token is
// minted (503), and the nonce was consumed all the same (the evidence cannot be replayed).
func TestNoTokenWithoutStatusEntry(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	m := memory.New()
	fs := &failingStatus{StatusStore: m}
	srv := issuerWith(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: m},
		func(c *issuer.Config) { c.Status = fs })
	c := &attester.Client{IssuerURL: srv.URL}
	req := fresh(t, c, a)
	status, got := code(t, func() error { _, err := c.Submit(context.Background(), req); return err }())
	if status != http.StatusServiceUnavailable || got != "temporarily_unavailable" || fs.calls.Load() != 1 {
		t.Fatalf("got %d %s after %d allocations, want 503 temporarily_unavailable after 1", status, got, fs.calls.Load())
	}
	status, got = code(t, func() error { _, err := c.Submit(context.Background(), req); return err }())
	if status != http.StatusConflict || got != "nonce_reused" {
		t.Fatalf("resubmitted evidence: %d %s, want 409 nonce_reused", status, got)
	}
}

// roundTrips counts the commands and pipelines a go-redis client sends.
type roundTrips struct {
	n        atomic.Int64
	mu       sync.Mutex
	commands []string
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		h.mu.Lock()
		h.commands = append(h.commands, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		h.mu.Lock()
		h.commands = append(h.commands, fmt.Sprintf("pipeline(%d)", len(cmds)))
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (h *roundTrips) reset() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.commands
	h.commands = nil
	h.n.Store(0)
	return out
}

// TestRedisRoundTripsPerAttestation counts, with a go-redis hook, the round trips of one
// attestation on the Redis backend: the nonce's GETDEL and one script that checks the TPM
// clock and allocates the status entry with its jti, subject and reference-value records.
func TestRedisRoundTripsPerAttestation(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	c, prefix := testredis.Redis(t)
	hook := &roundTrips{}
	c.AddHook(hook)
	s := redisstore.New(c, prefix)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: s, Clocks: s})
	cl := &attester.Client{IssuerURL: srv.URL}
	attestOnce(t, cl, a) // loads the script (EVALSHA, then EVAL once)
	for i := 0; i < 3; i++ {
		req := fresh(t, cl, a)
		hook.reset()
		if _, err := cl.Submit(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		cmds := hook.reset()
		if len(cmds) != 2 {
			t.Fatalf("one attestation took %d Redis round trips %v, want 2", len(cmds), cmds)
		}
		t.Logf("round trips per attestation: %v", cmds)
	}
}

// TestTwoIssuersOneRedis runs two issuers on one Redis: a nonce issued by one is consumed by
// the other, a revocation made through one is served by the other's status list and pushed
// by the other's event stream to a relying party that drops the token in under a second.
func TestTwoIssuersOneRedis(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	c, prefix := testredis.Redis(t)
	other := redis.NewClient(c.Options()) // the second replica's own connection
	t.Cleanup(func() { other.Close() })
	sa, sb := redisstore.New(c, prefix), redisstore.New(other, prefix)
	// Both replicas sign with one key set; the issuer URL differs per test server, so each
	// relying party trusts its own issuer.
	srvA := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: sa, Clocks: sa})
	srvB := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: sb, Clocks: sb})
	ca, cb := &attester.Client{IssuerURL: srvA.URL}, &attester.Client{IssuerURL: srvB.URL}
	ctx := context.Background()

	// A nonce from A, evidence to B.
	ch, err := ca.Challenge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, err := a.Evidence(ch.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	req.Audience = "test"
	res, err := cb.Submit(ctx, req)
	if err != nil {
		t.Fatalf("B refused A's nonce: %v", err)
	}
	// ... and it is gone for A.
	if status, got := code(t, func() error { _, err := ca.Submit(ctx, req); return err }()); status != http.StatusConflict || got != "nonce_reused" {
		t.Fatalf("A after B consumed the nonce: %d %s", status, got)
	}
	tokB := res.Token
	clB := claimsOf(t, tokB)

	// A relying party of B, following B's revocation stream, with a verified-token cache and
	// a list ttl far longer than the test: only the push can make it refuse the token.
	ks := relyingparty.NewStaticKeySet(srvB.Keyring.PublicSet())
	sc, err := relyingparty.NewStatusChecker(relyingparty.StatusConfig{Issuer: srvB.URL, KeySet: ks, MaxStaleness: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: srvB.URL, Audience: "test", KeySet: ks, Require: sc.Require})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tokB); err != nil {
		t.Fatal(err)
	}
	if v.CacheLen() != 1 {
		t.Fatal("token not cached")
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = sc.Follow(fctx, srvB.Issuer.Discovery().RevocationEventsEndpoint, v) }()
	// B's event stream subscribes to Redis when its first client connects: wait for it.
	channel := prefix + ":status:revocations"
	for deadline := time.Now().Add(10 * time.Second); c.PubSubNumSub(ctx, channel).Val()[channel] < 1; {
		if time.Now().After(deadline) {
			t.Fatal("B's revocation stream never subscribed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := v.Verify(ctx, tokB); err != nil { // after the stream's resync: list refetched
		t.Fatal(err)
	}

	// Revoke through A's admin API. The relying party's list is fresh for its whole ttl, so
	// only the pushed event can make it refuse the token this soon: the test waits for the
	// refusal with a generous liveness deadline (no timing assertion) and logs the latency,
	// which the goal (under 1 s) is about (measured: a few milliseconds on loopback).
	start := time.Now()
	revoke(t, admin(t, srvA.Issuer), api.RevokeRequest{JTI: clB.ID})
	for {
		_, err := v.Verify(ctx, tokB)
		if errors.Is(err, relyingparty.ErrRevoked) {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("the revocation through A never reached the relying party of B (%v)", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("revocation through A refused by B's relying party after %v", time.Since(start))
	if v.CacheLen() != 0 {
		t.Errorf("the revoked token is still in the verified-token cache")
	}
	// B's own status list serves the revocation.
	v2, _ := verifier(t, srvB, nil)
	if _, err := v2.Verify(ctx, tokB); !errors.Is(err, relyingparty.ErrRevoked) {
		t.Fatalf("B's status list: Verify = %v, want ErrRevoked", err)
	}
}

// TestRedisStoppedUnderLoad runs attestations against an issuer on its own redis-server, kills
// the server mid-load and starts it again: while it is down challenges and attestations fail
// closed with 503 and no token is minted; every token minted has its nonce consumed and its
// status entry allocated; the issuer resumes by itself when Redis returns.
func TestRedisStoppedUnderLoad(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	srvRedis := testredis.StartRedis(t)
	client, err := redisstore.Open(srvRedis.URL + "?dial_timeout=1s&read_timeout=1s&write_timeout=1s&max_retries=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	s := redisstore.New(client, "p")
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: s, Clocks: s})
	c := &attester.Client{IssuerURL: srv.URL}
	ctx := context.Background()

	type result struct {
		tok  string
		err  error
		down bool // Redis was stopped before this attempt began
	}
	var (
		mu      sync.Mutex
		results []result
		stopped atomic.Bool
	)
	attempt := func() {
		down := stopped.Load()
		ch, err := c.Challenge(ctx)
		if err != nil {
			mu.Lock()
			results = append(results, result{err: err, down: down})
			mu.Unlock()
			return
		}
		req, err := a.Evidence(ch.Nonce)
		if err != nil {
			t.Error(err)
			return
		}
		req.Audience = "test"
		down = stopped.Load()
		res, err := c.Submit(ctx, req)
		r := result{err: err, down: down}
		if err == nil {
			r.tok = res.Token
		}
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	}
	// Load: 4 workers, 6 attempts each; Redis is killed after the first 8 results.
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 6; i++ {
				attempt()
				mu.Lock()
				n := len(results)
				mu.Unlock()
				if n >= 8 && stopped.CompareAndSwap(false, true) {
					srvRedis.Stop()
				}
			}
		}()
	}
	wg.Wait()
	if !stopped.Load() {
		t.Fatal("Redis was never stopped")
	}
	var minted, refused int
	for _, r := range results {
		switch {
		case r.err == nil:
			if r.down {
				t.Fatalf("a token was minted while Redis was down")
			}
			minted++
		default:
			var he *attester.HTTPError
			if errors.As(r.err, &he) && he.Err.Code == "evidence_rejected_clock" && !r.down {
				// Concurrent quotes of one TPM may reach the issuer out of clock order: the
				// later-clocked one wins, the other is refused (issue 2's rollback check).
				continue
			}
			if !errors.As(r.err, &he) || he.Status != http.StatusServiceUnavailable || he.Err.Code != "temporarily_unavailable" {
				t.Fatalf("refusal %v, want 503 temporarily_unavailable", r.err)
			}
			if !strings.Contains(he.Err.Description, "unavailable") {
				t.Fatalf("unclear refusal: %q", he.Err.Description)
			}
			refused++
		}
	}
	// Every token minted carries its own status entry, allocated in Redis.
	seen := map[token.StatusListRef]bool{}
	for _, r := range results {
		if r.err != nil {
			continue
		}
		st := claimsOf(t, r.tok).Status
		if st == nil || seen[st.StatusList] {
			t.Fatalf("token minted without its own status entry: %+v", st)
		}
		seen[st.StatusList] = true
	}
	if minted == 0 || refused == 0 {
		t.Fatalf("%d tokens minted and %d refusals: the load did not straddle the outage", minted, refused)
	}
	t.Logf("%d tokens minted before the outage, %d attempts refused with 503 during it", minted, refused)

	// Redis returns (empty: no persistence). The issuer resumes without a restart.
	srvRedis.Start(t)
	deadline := time.Now().Add(15 * time.Second)
	var tok string
	for {
		var res *api.AttestResponse
		ch, err := c.Challenge(ctx)
		if err == nil {
			req, eerr := a.Evidence(ch.Nonce)
			if eerr != nil {
				t.Fatal(eerr)
			}
			req.Audience = "test"
			res, err = c.Submit(ctx, req)
		}
		if err == nil {
			tok = res.Token
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("issuer did not resume after Redis returned: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cl := claimsOf(t, tok)
	// The new token's entry is in Redis: revoking its jti finds it.
	if res, err := srv.Issuer.Revoke(ctx, store.Selector{ID: cl.ID}); err != nil || res.Count != 1 {
		t.Fatalf("the token minted after the outage has no status entry: %+v %v", res, err)
	}
}

func base64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(s)
}

// TestRevokeReferenceValueMustBeHex: a reference value to revoke is a hex SHA digest; anything else
// is refused before the store records it (it could never be reinstated).
func TestRevokeReferenceValueMustBeHex(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}})
	url := admin(t, srv.Issuer)
	digest := strings.Repeat("ab", 32)
	for _, v := range []string{" " + digest, "xyz", "abc", digest[:62]} {
		if code, body := adminPost(t, url, api.PathAdminRevoke, api.RevokeRequest{ReferenceValue: v}, adminCredential); code != http.StatusBadRequest {
			t.Errorf("revoke %q: %d %s, want 400", v, code, body)
		}
	}
	if code, body := adminPost(t, url, api.PathAdminRevoke, api.RevokeRequest{ReferenceValue: strings.ToUpper(digest)}, adminCredential); code != http.StatusOK {
		t.Errorf("revoke a hex digest: %d %s", code, body)
	}
}
