package relyingparty

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/passport-attest/passport/dpop"
)

// benchFixture is one realistic ES256 token (cnf key, status reference, a TPM submodule with 8
// PCRs: about 1.2 KiB) verified by every benchmark below.
type benchFixture struct {
	iss *signer
	clk *clock
	tok string
	cnf *ecdsa.PrivateKey // the token's cnf key, for DPoP proofs
}

var (
	benchOnce sync.Once
	benchFix  benchFixture
)

func fixture(b *testing.B) benchFixture {
	benchOnce.Do(func() {
		iss := newSigner(b)
		clk := newClock()
		cnf := newKey(b)
		benchFix = benchFixture{iss: iss, clk: clk, tok: boundToken(b, iss, clk.Now(), cnf), cnf: cnf}
	})
	return benchFix
}

// BenchmarkVerifyFirstSeen: the full path of a token never seen before (cache disabled): shape
// and header checks, go-oidc, signature, claims, Validate.
func BenchmarkVerifyFirstSeen(b *testing.B) {
	f := fixture(b)
	v := newTestVerifier(b, f.iss, f.clk, func(c *Config) { c.CacheSize = -1 })
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, f.tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached: a token presented again: SHA-256, LRU lookup, Validate, copy.
func BenchmarkVerifyCached(b *testing.B) {
	f := fixture(b)
	v := newTestVerifier(b, f.iss, f.clk, nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, f.tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, f.tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCachedParallel: cache hits from all CPUs (one LRU lock).
func BenchmarkVerifyCachedParallel(b *testing.B) {
	f := fixture(b)
	v := newTestVerifier(b, f.iss, f.clk, nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, f.tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, f.tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGoJOSEParseVerify: the floor: go-jose ParseSigned and Verify with the public key,
// no claim decoding.
func BenchmarkGoJOSEParseVerify(b *testing.B) {
	f := fixture(b)
	pub := &f.iss.priv.PublicKey
	algs := []jose.SignatureAlgorithm{jose.ES256}
	b.ReportAllocs()
	for b.Loop() {
		jws, err := jose.ParseSignedCompact(f.tok, algs)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.Verify(pub); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGoOIDCVerify: a plain go-oidc IDTokenVerifier with its StaticKeySet (it decodes
// only the registered claims and checks no typ).
func BenchmarkGoOIDCVerify(b *testing.B) {
	f := fixture(b)
	v := oidc.NewVerifier(testIssuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&f.iss.priv.PublicKey}}, &oidc.Config{
		ClientID: testAudience, SupportedSigningAlgs: []string{"ES256"}, Now: f.clk.Now,
	})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, f.tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGolangJWT: golang-jwt v5 parsing into RegisteredClaims with the same iss, aud, exp
// and alg checks (it decodes only the registered claims).
func BenchmarkGolangJWT(b *testing.B) {
	f := fixture(b)
	pub := &f.iss.priv.PublicKey
	p := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(testIssuer),
		jwt.WithAudience(testAudience), jwt.WithExpirationRequired(), jwt.WithTimeFunc(f.clk.Now))
	keyFn := func(*jwt.Token) (any, error) { return pub, nil }
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var c jwt.RegisteredClaims
		if _, err := p.ParseWithClaims(f.tok, &c, keyFn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMiddleware: one request through Middleware to a handler that reads the claims,
// in process (httptest.ResponseRecorder), with and without the cache; "server" goes over
// loopback HTTP to an httptest.Server.
func BenchmarkMiddleware(b *testing.B) {
	f := fixture(b)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := ClaimsFromContext(r.Context()); !ok {
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(204)
	})
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"first-seen", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			v := newTestVerifier(b, f.iss, f.clk, func(c *Config) { c.CacheSize = bc.cache })
			h := Middleware(v)(handler)
			r := httptest.NewRequest(http.MethodGet, "/resource", nil)
			r.Header.Set("Authorization", "Bearer "+f.tok)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != 204 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
	b.Run("dpop-cached", func(b *testing.B) {
		// DPoP-required route, token cached: the per-request cost is the proof's check.
		v := newTestVerifier(b, f.iss, f.clk, nil)
		h := Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(rpOrigin), WithDPoPVerifier(benchDPoP(f.clk)))(handler)
		const target = "http://rp.example/resource"
		u, _ := url.Parse(target)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			p, err := dpop.NewProof(f.cnf, http.MethodGet, u, f.tok, f.clk.Now())
			if err != nil {
				b.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, target, nil)
			r.Header.Set("Authorization", "DPoP "+f.tok)
			r.Header.Set("DPoP", p)
			w := httptest.NewRecorder()
			b.StartTimer()
			h.ServeHTTP(w, r)
			if w.Code != 204 {
				b.Fatalf("status %d: %s", w.Code, w.Header().Get("WWW-Authenticate"))
			}
		}
	})
	b.Run("server-dpop", func(b *testing.B) {
		// Over loopback HTTP, client included: a fresh proof signed per request.
		v := newTestVerifier(b, f.iss, f.clk, nil)
		srv := newServer(b, func(origin *url.URL) http.Handler {
			return Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(origin), WithDPoPVerifier(benchDPoP(f.clk)))(handler)
		})
		client := srv.Client()
		u, _ := url.Parse(srv.URL + "/resource")
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			p, err := dpop.NewProof(f.cnf, http.MethodGet, u, f.tok, f.clk.Now())
			if err != nil {
				b.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
			req.Header.Set("Authorization", "DPoP "+f.tok)
			req.Header.Set("DPoP", p)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 204 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.Run("server-cached", func(b *testing.B) {
		v := newTestVerifier(b, f.iss, f.clk, nil)
		srv := httptest.NewServer(Middleware(v)(handler))
		defer srv.Close()
		client := srv.Client()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/resource", nil)
		req.Header.Set("Authorization", "Bearer "+f.tok)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 204 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// benchDPoP is a proof verifier for benchmarks: the clock is fixed, so every proof's jti stays
// in the replay cache for the whole run, all by one key.
func benchDPoP(clk *clock) *dpop.Verifier {
	return &dpop.Verifier{Now: clk.Now, MaxReplayEntries: 1 << 24, MaxEntriesPerKey: 1 << 24}
}
