package relyingparty

import (
	"context"
	"crypto"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/token"
)

// contender is one way of validating the fixture token, timed by BenchmarkSideBySide.
type contender struct {
	name  string
	batch int         // calls per round (cheap contenders run many to dwarf the clock reads)
	prep  func(n int) // untimed, before each round's batch (e.g. fresh DPoP proofs)
	fn    func(i int) // one call; i is its index in the batch
	ns    float64     // result: median over the rounds of the mean ns per call
	round []float64   // per round: mean ns per call
}

// BenchmarkSideBySide validates the same ~2 KiB ES256 token every way at once, interleaved
// round by round so that a loaded machine slows every contender alike, and reports each one's
// cost (ns/<name>: the median over the rounds, which other processes' bursts and the odd GC
// cycle do not move; allocations are in the single-contender benchmarks' B/op) and the ratios
// the relying party is held to:
//
//	x-floor        first-seen Verify / go-jose ParseSignedCompact+Verify    goal <= 1.1
//	oidc-x-floor   go-oidc IDTokenVerifier.Verify (StaticKeySet) / floor
//	jwt-x-floor    golang-jwt ParseWithClaims (RegisteredClaims) / floor
//	claims-x-floor floor plus decoding the claims (token.ParseClaims) / floor: the least any
//	               verifier returning our claim set pays
//	x-oidc         first-seen Verify / go-oidc Verify
//	oidc/cached    go-oidc Verify / cached Verify                            goal >= 50
//	ns/cached      a repeated token                                          goal < 2000
//	dpop-x-floor   middleware with a DPoP proof (token cached) / floor: the proof's own
//	               signature check dominates
//
// Each b.N iteration is one round of every contender; ns/op is the round.
func BenchmarkSideBySide(b *testing.B) {
	f := fixture(b)
	ctx := context.Background()
	pub := &f.iss.priv.PublicKey
	algs := []jose.SignatureAlgorithm{jose.ES256}
	mustOK := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}

	oidcV := oidc.NewVerifier(testIssuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{pub}}, &oidc.Config{
		ClientID: testAudience, SupportedSigningAlgs: []string{"ES256"}, Now: f.clk.Now,
	})
	jwtP := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(testIssuer),
		jwt.WithAudience(testAudience), jwt.WithExpirationRequired(), jwt.WithTimeFunc(f.clk.Now))
	keyFn := func(*jwt.Token) (any, error) { return pub, nil }
	first := newTestVerifier(b, f.iss, f.clk, func(c *Config) { c.CacheSize = -1 })
	cached := newTestVerifier(b, f.iss, f.clk, nil)
	_, err := cached.Verify(ctx, f.tok)
	mustOK(err)

	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	bearerMW := Middleware(cached)(ok)
	dpopMW := Middleware(cached, RequirePoP(PoPDPoP), WithExternalURL(rpOrigin), WithDPoPVerifier(benchDPoP(f.clk)))(ok)
	const target = "http://rp.example/resource"
	tu, _ := url.Parse(target)
	bearerReq := httptest.NewRequest(http.MethodGet, target, nil)
	bearerReq.Header.Set("Authorization", "Bearer "+f.tok)
	serve := func(h http.Handler, r *http.Request) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusNoContent {
			b.Fatalf("middleware answered %d: %s", w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
	var proofs []string
	dpopReqs := func(n int) {
		proofs = proofs[:0]
		for range n {
			p, err := dpop.NewProof(f.cnf, http.MethodGet, tu, f.tok, f.clk.Now())
			mustOK(err)
			proofs = append(proofs, p)
		}
	}

	cs := []*contender{
		{name: "floor", batch: 1, fn: func(int) {
			jws, err := jose.ParseSignedCompact(f.tok, algs)
			mustOK(err)
			_, err = jws.Verify(pub)
			mustOK(err)
		}},
		{name: "floor+claims", batch: 1, fn: func(int) {
			jws, err := jose.ParseSignedCompact(f.tok, algs)
			mustOK(err)
			payload, err := jws.Verify(pub)
			mustOK(err)
			_, err = token.ParseClaims(payload)
			mustOK(err)
		}},
		{name: "go-oidc", batch: 1, fn: func(int) { _, err := oidcV.Verify(ctx, f.tok); mustOK(err) }},
		{name: "golang-jwt", batch: 1, fn: func(int) {
			var c jwt.RegisteredClaims
			_, err := jwtP.ParseWithClaims(f.tok, &c, keyFn)
			mustOK(err)
		}},
		{name: "first-seen", batch: 1, fn: func(int) { _, err := first.Verify(ctx, f.tok); mustOK(err) }},
		{name: "cached", batch: 200, fn: func(int) { _, err := cached.Verify(ctx, f.tok); mustOK(err) }},
		{name: "mw-bearer", batch: 50, fn: func(int) { serve(bearerMW, bearerReq) }},
		{name: "mw-dpop", batch: 1, prep: dpopReqs, fn: func(i int) {
			r := httptest.NewRequest(http.MethodGet, target, nil)
			r.Header.Set("Authorization", "DPoP "+f.tok)
			r.Header.Set("DPoP", proofs[i])
			serve(dpopMW, r)
		}},
	}
	b.ResetTimer()
	for b.Loop() {
		for _, c := range cs {
			if c.prep != nil {
				b.StopTimer()
				c.prep(c.batch)
				b.StartTimer()
			}
			start := time.Now()
			for i := range c.batch {
				c.fn(i)
			}
			c.round = append(c.round, float64(time.Since(start).Nanoseconds())/float64(c.batch))
		}
	}
	b.StopTimer()
	by := map[string]float64{}
	for _, c := range cs {
		slices.Sort(c.round)
		c.ns = c.round[len(c.round)/2]
		by[c.name] = c.ns
		b.ReportMetric(c.ns, "ns/"+c.name)
	}
	b.ReportMetric(by["first-seen"]/by["floor"], "x-floor")
	b.ReportMetric(by["go-oidc"]/by["floor"], "oidc-x-floor")
	b.ReportMetric(by["golang-jwt"]/by["floor"], "jwt-x-floor")
	b.ReportMetric(by["first-seen"]/by["go-oidc"], "x-oidc")
	b.ReportMetric(by["floor+claims"]/by["floor"], "claims-x-floor")
	b.ReportMetric(by["go-oidc"]/by["cached"], "oidc/cached")
	b.ReportMetric(by["mw-dpop"]/by["floor"], "dpop-x-floor")
	if testing.Verbose() {
		for _, c := range cs {
			b.Logf("%-11s %10.0f ns", c.name, c.ns)
		}
	}
}
