// Command appraisalcost runs evidence.Verifier.Verify and go-tpm-tools' server.VerifyAttestation
// on the evidence of BenchmarkAppraisal (evidence/bench_test.go: a short log and a real 45 KB
// log, ECC and RSA AKs, the AK pinned or its certificate chain cached), for counting
// instructions under valgrind: scripts/appraisal-instructions.sh runs it with
// --dump-before=main.mark, so that each measured loop lands in its own profile dump, and prints
// instructions per call and their ratios. Wall time on a shared machine scatters; instruction
// counts do not. Not part of the product.
//
// Usage: appraisalcost N REAL_LOG (N calls per measured loop). At the end it prints one line
// "case op N" per loop; the loops are dumps 2, 4, 6, ... in that order.
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"strconv"
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
)

// mark is where valgrind dumps its counters (--dump-before=main.mark). Each measured loop is
// bracketed by two calls, so the dump taken at the second holds exactly the loop.
//
// It makes no call (nosplit, so no stack-growth re-entry either): callgrind would count a
// return into it, or a second entry, as another trigger.
//
//go:noinline
//go:nosplit
func mark() { marks++ }

var marks int

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: appraisalcost N REAL_LOG")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[1])
	check(err)
	real, err := os.ReadFile(os.Args[2])
	check(err)
	var evs []logforge.Event
	for p := uint32(0); p < 8; p++ {
		evs = append(evs, logforge.Measure(p, uint32(tcg.Separator), []byte{0, 0, 0, 0}, eventlog.SHA1, eventlog.SHA256))
	}
	short := logforge.Encode([]eventlog.Bank{eventlog.SHA1, eventlog.SHA256}, evs)
	ctx := context.Background()
	var labels []string
	for _, l := range []struct {
		name string
		log  []byte
	}{{"short", short}, {fmt.Sprintf("real%dk", len(real)/1000), real}} {
		for _, kt := range []string{"ecc", "rsa"} {
			newAK := forge.NewECC
			if kt == "rsa" {
				newAK = forge.NewRSA
			}
			ak, err := newAK()
			check(err)
			ev, err := ak.Attest(l.log, forge.Quote{})
			check(err)
			raw := ev.Bytes()
			want, err := api.ExtraData(ev.Nonce, ev.CNF)
			check(err)
			opts := server.VerifyOpts{Nonce: want, TrustedAKs: []crypto.PublicKey{ak.PublicKey()}, HashAlgo: tpm2.AlgSHA256}
			pinned, err := evidence.NewAllowlist(ak.PublicKey())
			check(err)
			chain, chainRaw := certChain(ak.PublicKey(), ev.Att)
			ops := []struct {
				name string
				f    func() error
			}{
				{"library", func() error { _, err := server.VerifyAttestation(ev.Att, opts); return err }},
				{"decode+library", func() error {
					var att pb.Attestation
					if err := proto.Unmarshal(raw, &att); err != nil {
						return err
					}
					_, err := server.VerifyAttestation(&att, opts)
					return err
				}},
				{"passport-pinned", verifyWith(ctx, pinned, ev, raw)},
				{"passport-chain-cached", verifyWith(ctx, chain, ev, chainRaw)},
			}
			for _, op := range ops {
				check(op.f()) // warm: caches, lazy initialisation, the chain cache
				mark()
				for i := 0; i < n; i++ {
					check(op.f())
				}
				mark()
				labels = append(labels, fmt.Sprintf("%s/%s %s %d", l.name, kt, op.name, n))
			}
		}
	}
	if marks != 2*len(labels) {
		check(fmt.Errorf("%d marks for %d loops", marks, len(labels)))
	}
	for _, l := range labels {
		fmt.Println(l)
	}
}

func verifyWith(ctx context.Context, t evidence.AKTrust, ev *forge.Evidence, raw []byte) func() error {
	v, err := evidence.NewVerifier(evidence.Options{AKTrust: t})
	check(err)
	return func() error { _, err := v.Verify(ctx, ev.Nonce, ev.CNF, raw); return err }
}

// certChain issues an AK certificate for ak from a fresh root and returns a CertChain trusting
// the root and the attestation carrying the certificate, as BenchmarkAppraisal does.
func certChain(ak crypto.PublicKey, att *pb.Attestation) (*evidence.CertChain, []byte) {
	rk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "count AK root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rder, err := x509.CreateCertificate(rand.Reader, root, root, &rk.PublicKey, rk)
	check(err)
	rc, err := x509.ParseCertificate(rder)
	check(err)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, rc, ak, rk)
	check(err)
	withCert := proto.Clone(att).(*pb.Attestation)
	withCert.AkCert = der
	raw, err := proto.Marshal(withCert)
	check(err)
	return &evidence.CertChain{Roots: []*x509.Certificate{rc}}, raw
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "appraisalcost:", err)
		os.Exit(1)
	}
}
