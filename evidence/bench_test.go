package evidence_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/google/go-eventlog/tcg"
	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/eventlog"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/forge"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
)

// shortLog is a minimal crypto-agile log: the EV_SEPARATOR of each of PCRs 0-7.
func shortLog() []byte {
	var evs []logforge.Event
	for p := uint32(0); p < 8; p++ {
		evs = append(evs, logforge.Measure(p, uint32(tcg.Separator), []byte{0, 0, 0, 0}, eventlog.SHA1, eventlog.SHA256))
	}
	return logforge.Encode([]eventlog.Bank{eventlog.SHA1, eventlog.SHA256}, evs)
}

type benchCase struct {
	name string
	ev   *forge.Evidence
	raw  []byte
	want []byte // extraData
	ak   crypto.PublicKey
}

func benchCases(b *testing.B) []benchCase {
	b.Helper()
	logs := []struct {
		name string
		data []byte
	}{
		{"short", shortLog()},
		{"real45k", testenv.EventLog(b, "ubuntu-2404-amd-sevsnp.bin")}, // 45,300 bytes
	}
	var out []benchCase
	for _, l := range logs {
		for _, k := range []string{"ecc", "rsa"} {
			var ak *forge.AK
			var err error
			if k == "ecc" {
				ak, err = forge.NewECC()
			} else {
				ak, err = forge.NewRSA()
			}
			if err != nil {
				b.Fatal(err)
			}
			ev, err := ak.Attest(l.data, forge.Quote{})
			if err != nil {
				b.Fatal(err)
			}
			want, _ := api.ExtraData(ev.Nonce, ev.CNF)
			out = append(out, benchCase{name: l.name + "/" + k, ev: ev, raw: ev.Bytes(), want: want, ak: ak.PublicKey()})
		}
	}
	return out
}

// libraryCall is go-tpm-tools' server.VerifyAttestation alone on the same evidence, SHA-256
// pinned and the AK given: the floor our appraisal is compared with.
func libraryCall(b *testing.B, c benchCase) func(*testing.B) {
	return func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := server.VerifyAttestation(c.ev.Att, server.VerifyOpts{Nonce: c.want, TrustedAKs: []crypto.PublicKey{c.ak}, HashAlgo: tpm2.AlgSHA256}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkAppraisal measures evidence.Verifier.Verify per attestation (decoding, AK trust,
// quote structure and binding, go-tpm-tools' verification, event rules) next to the library
// call alone on the same evidence, and reports the ratio as "x-library". Trust is a pinned AK
// (allowlist) or an AK certificate chain whose verification is cached after the first call.
func BenchmarkAppraisal(b *testing.B) {
	ctx := context.Background()
	for _, c := range benchCases(b) {
		lib := libraryCall(b, c)
		b.Run(c.name+"/library", lib)
		type variant struct {
			name  string
			trust evidence.AKTrust
			raw   []byte
		}
		variants := []variant{{"pinned", mustAllowlist(b, c.ak), c.raw}}
		if c.name == "real45k/ecc" {
			chain, raw := chainFor(b, c)
			variants = append(variants, variant{"chain-cached", chain, raw})
		}
		for _, vr := range variants {
			v, err := evidence.NewVerifier(evidence.Options{AKTrust: vr.trust})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(c.name+"/passport-"+vr.name, func(b *testing.B) {
				if _, err := v.Verify(ctx, c.ev.Nonce, c.ev.CNF, vr.raw); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := v.Verify(ctx, c.ev.Nonce, c.ev.CNF, vr.raw); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				alone, withDecode := ratio(b, c, vr.raw, func() error {
					_, err := v.Verify(ctx, c.ev.Nonce, c.ev.CNF, vr.raw)
					return err
				})
				b.ReportMetric(alone, "x-library")
				b.ReportMetric(withDecode, "x-library+decode")
			})
		}
	}
}

// ratio returns our appraisal's cost over the library call's alone ("x-library") and over the
// library call plus the protobuf decoding of the same bytes that any caller of it pays
// ("x-library+decode"). They are measured in rounds of three back-to-back batches (library,
// decode+library, ours; the order rotating from round to round) of the same number of calls,
// about 2 ms of library calls each, for at least two seconds; each ratio is the median over the
// rounds of ours/library within the round. Load on a shared machine thus hits the three alike,
// and a burst that lands on one batch moves one round, not the result (testing.Benchmark
// cannot run inside a benchmark).
func ratio(b *testing.B, c benchCase, raw []byte, ours func() error) (alone, withDecode float64) {
	opts := server.VerifyOpts{Nonce: c.want, TrustedAKs: []crypto.PublicKey{c.ak}, HashAlgo: tpm2.AlgSHA256}
	calls := [3]func() error{
		func() error { _, err := server.VerifyAttestation(c.ev.Att, opts); return err },
		func() error {
			var att pb.Attestation
			if err := proto.Unmarshal(raw, &att); err != nil {
				return err
			}
			_, err := server.VerifyAttestation(&att, opts)
			return err
		},
		ours,
	}
	batch := func(f func() error, n int) time.Duration {
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	n := int(2 * time.Millisecond / (batch(calls[0], 5) / 5))
	n = max(1, min(n, 20))
	var alones, decodes []float64
	for start, round := time.Now(), 0; time.Since(start) < 2*time.Second || round < 30; round++ {
		var d [3]time.Duration
		for i := range calls {
			k := (round + i) % len(calls)
			d[k] = batch(calls[k], n)
		}
		alones = append(alones, float64(d[2])/float64(d[0]))
		decodes = append(decodes, float64(d[2])/float64(d[1]))
	}
	return median(alones), median(decodes)
}

// median returns the median of xs (sorted in place).
func median(xs []float64) float64 {
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

func mustAllowlist(b *testing.B, k crypto.PublicKey) *evidence.Allowlist {
	al, err := evidence.NewAllowlist(k)
	if err != nil {
		b.Fatal(err)
	}
	return al
}

// chainFor issues an AK certificate for c's AK from a fresh test root and returns a CertChain
// trusting that root and c's evidence carrying the certificate.
func chainFor(b *testing.B, c benchCase) (*evidence.CertChain, []byte) {
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench AK root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rder, _ := x509.CreateCertificate(rand.Reader, root, root, &rk.PublicKey, rk)
	rc, _ := x509.ParseCertificate(rder)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, rc, c.ak, rk)
	if err != nil {
		b.Fatal(err)
	}
	att := proto.Clone(c.ev.Att).(*pb.Attestation)
	att.AkCert = der
	raw, _ := proto.Marshal(att)
	return &evidence.CertChain{Roots: []*x509.Certificate{rc}}, raw
}
