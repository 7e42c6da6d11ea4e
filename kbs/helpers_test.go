package kbs_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

const (
	testIssuer   = "https://issuer.example"
	testAudience = "kbs"
	diskKey      = "default/key/disk"
)

// t0 is the tests' clock.
var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// syncBuffer collects audit lines written from server goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines decodes every audit line.
func (s *syncBuffer) lines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line is not JSON: %v: %s", err, l)
		}
		out = append(out, m)
	}
	return out
}

// revocations is the test double of a RevocationChecker: a set of revoked jti, or an outage.
type revocations struct {
	mu      sync.Mutex
	revoked map[string]bool
	down    bool
	calls   atomic.Int64
}

// Revoked implements kbs.RevocationChecker.
func (r *revocations) Revoked(_ context.Context, c *token.Claims) error {
	r.calls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errors.New("status list unreachable")
	}
	if r.revoked[c.ID] {
		return fmt.Errorf("%w: jti %s", kbs.ErrRevoked, c.ID)
	}
	return nil
}

func (r *revocations) revoke(jti string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.revoked == nil {
		r.revoked = map[string]bool{}
	}
	r.revoked[jti] = true
}

func (r *revocations) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

// countingStore counts the calls that reach the wrapped store.
type countingStore struct {
	kbs.Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, id api.ResourceID) ([]byte, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, id)
}

// fixture is a broker over httptest with a directory store holding diskKey, an issuer keyring,
// an attester's cnf key and an audit buffer.
type fixture struct {
	ring     *jwks.Keyring
	cnf      *ecdsa.PrivateKey
	dir      string
	store    *countingStore
	audit    *syncBuffer
	revs     *revocations
	broker   *kbs.Broker
	srv      *httptest.Server
	secret   []byte
	now      time.Time
	jtiSeq   atomic.Int64
	verifier *relyingparty.Verifier
}

type fixtureOpts struct {
	policy string // YAML; empty means the default policy
	mod    func(*kbs.Config)
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	cnf, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ring: jwks.NewKeyring(key), cnf: cnf, dir: t.TempDir(), audit: &syncBuffer{}, revs: &revocations{}, now: t0}
	f.secret = make([]byte, 32)
	if _, err := rand.Read(f.secret); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.dir, "default", "key"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "default", "key", "disk"), f.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	ds, err := kbs.NewDirStore(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	f.store = &countingStore{Store: ds}
	now := func() time.Time { return f.now }
	f.verifier, err = relyingparty.NewVerifier(relyingparty.Config{
		Issuer: testIssuer, Audience: testAudience, KeySet: relyingparty.NewStaticKeySet(f.ring.PublicSet()),
		MinStatus: token.TierWarning, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	pol := kbs.DefaultPolicy()
	if o.policy != "" {
		if pol, err = kbs.ParsePolicy([]byte(o.policy)); err != nil {
			t.Fatal(err)
		}
	}
	// The server's address is known before it starts: the broker's PublicURL is its origin.
	f.srv = httptest.NewUnstartedServer(nil)
	t.Cleanup(f.srv.Close)
	cfg := kbs.Config{
		Verifier: f.verifier, Store: f.store, Policy: pol, Revocation: f.revs,
		Audit: slog.New(slog.NewJSONHandler(f.audit, nil)), Now: now,
		PublicURL: "http://" + f.srv.Listener.Addr().String(),
	}
	if o.mod != nil {
		o.mod(&cfg)
		if cs, ok := cfg.Store.(*countingStore); !ok || cs != f.store {
			f.store = &countingStore{Store: cfg.Store}
			cfg.Store = f.store
		}
	}
	if f.broker, err = kbs.New(cfg); err != nil {
		t.Fatal(err)
	}
	f.srv.Config.Handler = f.broker.Handler()
	f.srv.Start()
	return f
}

// claims returns a realistic affirming claim set for f.cnf, audience "kbs", valid 5 minutes.
func (f *fixture) claims() token.Claims {
	sb := true
	pcrs := map[string]string{}
	for i := range 8 {
		d := sha256.Sum256([]byte{byte(i)})
		pcrs[fmt.Sprint(i)] = hex.EncodeToString(d[:])
	}
	return token.Claims{
		Issuer:       testIssuer,
		Subject:      "ak-thumbprint-1",
		Audience:     token.Audience{testAudience},
		IssuedAt:     f.now.Unix(),
		NotBefore:    f.now.Unix(),
		Expiry:       f.now.Add(5 * time.Minute).Unix(),
		ID:           fmt.Sprintf("jti-%d", f.jtiSeq.Add(1)),
		Profile:      token.Profile,
		Confirmation: &token.Confirmation{JWK: &jose.JSONWebKey{Key: f.cnf.Public()}},
		VerifierID:   token.VerifierID{Build: "test", Developer: "passport"},
		Submods: map[string]*token.Submod{token.SubmodTPM: {
			Status: token.TierAffirming,
			Vector: token.TrustworthinessVector{
				token.ClaimHardware:      token.ValueAffirming,
				token.ClaimExecutables:   token.ValueApprovedBoot,
				token.ClaimConfiguration: token.ValueAffirming,
			},
			PolicyID:     "policy:test",
			Measurements: &token.Measurements{Bank: "sha256", PCRs: pcrs, SecureBoot: &sb},
		}},
	}
}

// sign signs any claim set (a token.Claims or a raw map) with the issuer's keyring.
func (f *fixture) sign(t testing.TB, claims any) string {
	t.Helper()
	tok, _, err := f.ring.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// token returns a fresh affirming token, after mod edits its claims.
func (f *fixture) token(t testing.TB, mod func(*token.Claims)) string {
	t.Helper()
	c := f.claims()
	if mod != nil {
		mod(&c)
	}
	return f.sign(t, c)
}

// req describes one request to the fixture.
type req struct {
	resource string        // after /kbs/v0/resource/; diskKey when empty
	rawPath  string        // whole escaped path, overriding resource
	scheme   string        // "DPoP" (default), "Bearer", or "-" for no Authorization
	token    string        // the token
	proofKey crypto.Signer // signs the proof; nil means f.cnf; noProof drops it
	noProof  bool
	proofURL string // htu override
	method   string // GET when empty
	host     string // Host header override
}

type resp struct {
	status int
	body   []byte
	header http.Header
}

func (f *fixture) do(t testing.TB, r req) resp {
	t.Helper()
	p := r.rawPath
	if p == "" {
		res := r.resource
		if res == "" {
			res = diskKey
		}
		p = "/kbs/v0/resource/" + res
	}
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	hr, err := http.NewRequest(method, f.srv.URL+p, nil)
	if err != nil {
		t.Fatal(err)
	}
	hr.URL.RawPath = "" // send p exactly as written
	hr.URL.Opaque = "//" + hr.URL.Host + p
	if r.host != "" {
		hr.Host = r.host
	}
	scheme := r.scheme
	if scheme == "" {
		scheme = dpop.Scheme
	}
	if scheme != "-" {
		hr.Header.Set("Authorization", scheme+" "+r.token)
	}
	if !r.noProof && scheme != "-" {
		k := r.proofKey
		if k == nil {
			k = f.cnf
		}
		u, _ := url.Parse(f.srv.URL + p)
		if r.proofURL != "" {
			u, _ = url.Parse(r.proofURL)
		}
		proof, err := dpop.NewProof(k, method, u, r.token, f.now)
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set(dpop.HeaderName, proof)
	}
	res, err := f.srv.Client().Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, body: b, header: res.Header}
}

func dpopProof(f *fixture, r *http.Request, tok string) (string, error) {
	return dpop.NewProof(f.cnf, r.Method, r.URL, tok, f.now)
}

func b64std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// brokerStore is the store the broker reads (the counting wrapper's inner store).
func (f *fixture) brokerStore(t testing.TB) kbs.Store { return f.store.Store }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// testNow is the wall clock, for tests against a real issuer.
func testNow() time.Time { return time.Now() }

var (
	ellipticP256 = elliptic.P256()
	ellipticP384 = elliptic.P384()
)
