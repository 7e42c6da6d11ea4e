package kbs_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/kbs"
)

var (
	jweFloorOnce sync.Once
	jweFloorNs   float64
)

// reportRelease adds releases/s and the cost relative to the JWE encryption alone ("x-jwe",
// go-jose ECDH-ES+A256KW/A256GCM of a 32-byte secret to a P-256 key, timed once in a loop).
func reportRelease(b *testing.B) {
	b.Helper()
	jweFloorOnce.Do(func() {
		k := ecKey(b, ellipticP256)
		cnf := &jose.JSONWebKey{Key: &k.PublicKey}
		secret := make([]byte, 32)
		const n = 2000
		start := time.Now()
		for range n {
			if _, err := kbs.EncryptTo(cnf, secret); err != nil {
				b.Fatal(err)
			}
		}
		jweFloorNs = float64(time.Since(start).Nanoseconds()) / n
	})
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "releases/s")
	b.ReportMetric(perOp/jweFloorNs, "x-jwe")
}

func benchFixture(b *testing.B, policy string) *fixture {
	f := newFixture(b, fixtureOpts{policy: policy, mod: func(c *kbs.Config) {
		// The clock is fixed: keep every proof's jti for the whole run.
		c.Proofs = &dpop.Verifier{Now: c.Now, MaxReplayEntries: 1 << 24, MaxEntriesPerKey: 1 << 24}
	}})
	f.srv.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	return f
}

// get sends one DPoP request for diskKey and drains the answer.
func (f *fixture) benchGet(b *testing.B, client *http.Client, u *url.URL, tok string) {
	proof, err := dpop.NewProof(f.cnf, http.MethodGet, u, tok, f.now)
	if err != nil {
		b.Fatal(err)
	}
	req := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{
		"Authorization": {"DPoP " + tok}, "Dpop": {proof},
	}, Host: u.Host}
	res, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b.Fatalf("status %d", res.StatusCode)
	}
}

// BenchmarkReleaseLoopback: one client, one release at a time over loopback HTTP/1.1 with
// keep-alive: client DPoP proof, token (cached after the first request), proof verification,
// revocation hook, CEL policy, directory read, JWE to the cnf key. ns/op is the release
// latency.
func BenchmarkReleaseLoopback(b *testing.B) {
	f := benchFixture(b, "")
	tok := f.token(b, nil)
	u, _ := url.Parse(f.srv.URL + "/kbs/v0/resource/" + diskKey)
	client := f.srv.Client()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f.benchGet(b, client, u, tok)
	}
	b.StopTimer()
	reportRelease(b)
}

// BenchmarkReleaseLoopbackParallel: GOMAXPROCS clients at once: throughput (releases/s).
func BenchmarkReleaseLoopbackParallel(b *testing.B) {
	f := benchFixture(b, "")
	tok := f.token(b, nil)
	u, _ := url.Parse(f.srv.URL + "/kbs/v0/resource/" + diskKey)
	client := f.srv.Client()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f.benchGet(b, client, u, tok)
		}
	})
	b.StopTimer()
	reportRelease(b)
}

// BenchmarkReleaseCore: Broker.Release without HTTP or DPoP (a bearer opt-in rule), to show what
// the broker itself costs around the JWE.
func BenchmarkReleaseCore(b *testing.B) {
	f := benchFixture(b, "rules: [{resource: \"default/key/*\", bearer: true}]")
	tok := f.token(b, nil)
	r := kbs.Request{Resource: diskKey, Authorization: []string{"Bearer " + tok}, Method: http.MethodGet}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.broker.Release(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRelease(b)
}

// BenchmarkEncryptTo: the JWE alone, per cnf key type: the floor of a release.
func BenchmarkEncryptTo(b *testing.B) {
	secret := make([]byte, 32)
	for _, c := range []struct {
		name string
		key  any
	}{{"P-256", &ecKey(b, ellipticP256).PublicKey}, {"P-384", &ecKey(b, ellipticP384).PublicKey}} {
		b.Run(c.name, func(b *testing.B) {
			cnf := &jose.JSONWebKey{Key: c.key}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := kbs.EncryptTo(cnf, secret); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
