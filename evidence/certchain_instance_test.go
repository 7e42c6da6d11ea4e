package evidence_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	pb "github.com/google/go-tpm-tools/proto/attest"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/forge"
	"github.com/passport-attest/passport/internal/testenv"
)

// gceInstanceOID is the GCE instance-information extension go-tpm-tools' validateAK parses
// from an AK certificate (server.GetGCEInstanceInfo).
var gceInstanceOID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 1, 21}

// akCertWith issues, under a fresh root, an AK certificate for ak carrying exts.
func akCertWith(t *testing.T, ak crypto.PublicKey, exts ...pkix.Extension) (root *x509.Certificate, der []byte) {
	t.Helper()
	rk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test AK root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	rder, err := x509.CreateCertificate(rand.Reader, rt, rt, &rk.PublicKey, rk)
	if err != nil {
		t.Fatal(err)
	}
	root, err = x509.ParseCertificate(rder)
	if err != nil {
		t.Fatal(err)
	}
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test AK"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtraExtensions: exts}
	der, err = x509.CreateCertificate(rand.Reader, lt, root, ak, rk)
	if err != nil {
		t.Fatal(err)
	}
	return root, der
}

// TestCertChainInstanceInfo: with certificate-chain AK trust, go-tpm-tools' VerifyAttestation
// (TrustedRootCerts) refuses an AK certificate whose GCE instance-information extension does not
// parse or holds negative numbers; Verify must refuse it too (whatever Verify accepts, the
// library accepts), and still accept the same certificate without that extension.
func TestCertChainInstanceInfo(t *testing.T) {
	ak := newForgedAK(t)
	log := testenv.EventLog(t, testenv.DefaultLog)
	negative, err := asn1.Marshal(struct {
		Zone          string `asn1:"utf8"`
		ProjectNumber int64
		ProjectID     string `asn1:"utf8"`
		InstanceID    int64
		InstanceName  string `asn1:"utf8"`
	}{"us-central1-a", 1, "p", -5, "i"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		exts   []pkix.Extension
		accept bool
	}{
		{"no instance info", nil, true},
		{"instance info that does not parse", []pkix.Extension{{Id: gceInstanceOID, Value: []byte{0x01, 0x02}}}, false},
		{"instance info with a negative instance ID", []pkix.Extension{{Id: gceInstanceOID, Value: negative}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, der := akCertWith(t, ak.PublicKey(), tc.exts...)
			ev, err := ak.Attest(log, forge.Quote{})
			if err != nil {
				t.Fatal(err)
			}
			ev.Att.AkCert = der
			want, err := api.ExtraData(ev.Nonce, ev.CNF)
			if err != nil {
				t.Fatal(err)
			}
			att := proto.Clone(ev.Att).(*pb.Attestation)
			_, libErr := server.VerifyAttestation(att, server.VerifyOpts{Nonce: want, TrustedRootCerts: []*x509.Certificate{root}, HashAlgo: tpm2.AlgSHA256})
			if (libErr == nil) != tc.accept {
				t.Fatalf("server.VerifyAttestation: %v, want accept=%v", libErr, tc.accept)
			}
			v, err := evidence.NewVerifier(evidence.Options{AKTrust: &evidence.CertChain{Roots: []*x509.Certificate{root}}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), ev.Nonce, ev.CNF, ev.Bytes())
			if tc.accept {
				if err != nil {
					t.Fatalf("Verify refused: %v", err)
				}
				return
			}
			wantRefusal(t, err, evidence.CheckAKTrust, -1, -1)
		})
	}
}
