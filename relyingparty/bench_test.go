package relyingparty

import (
	"context"
	"crypto"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// benchFixture is one realistic ES256 token (cnf key, status reference, a TPM submodule with 8
// PCRs: about 1.2 KiB) verified by every benchmark below.
type benchFixture struct {
	iss *signer
	clk *clock
	tok string
}

var (
	benchOnce sync.Once
	benchFix  benchFixture
	floorOnce sync.Once
	floorNs   float64
)

func fixture(b *testing.B) benchFixture {
	benchOnce.Do(func() {
		iss := newSigner(b)
		clk := newClock()
		benchFix = benchFixture{iss: iss, clk: clk, tok: iss.sign(b, claimsAt(b, clk.Now()))}
	})
	return benchFix
}

// reportFloor adds the benchmark's cost relative to go-jose's ParseSigned+Verify of the same
// token, measured once in the same process ("x-floor").
func reportFloor(b *testing.B) {
	b.Helper()
	floorOnce.Do(func() {
		r := testing.Benchmark(BenchmarkGoJOSEParseVerify)
		floorNs = float64(r.T.Nanoseconds()) / float64(r.N)
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/floorNs, "x-floor")
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
	b.StopTimer()
	reportFloor(b)
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
	b.StopTimer()
	reportFloor(b)
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
		jws, err := jose.ParseSigned(f.tok, algs)
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
	b.StopTimer()
	reportFloor(b)
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
	b.StopTimer()
	reportFloor(b)
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
			b.StopTimer()
			reportFloor(b)
		})
	}
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
