package attester_test

import (
	"context"
	"crypto"
	"errors"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/internal/testenv"
)

// TestSWTPMEndToEnd: our attester on an external swtpm (over its TCP command channel) replays
// a real log, attests to an issuer trusting its AK, and gets a token; then the same swtpm
// enrolls its AK through its EK with an issuer that only pins the EK.
func TestSWTPMEndToEnd(t *testing.T) {
	spec, _ := testenv.SWTPM(t)
	rw, err := attester.OpenTPM(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	log := testenv.EventLog(t, testenv.DefaultLog)
	rep, err := attester.ReplayEventLog(rw, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Banks) == 0 || rep.Extends == 0 {
		t.Fatalf("nothing replayed: %+v", rep)
	}
	a, err := attester.New(attester.Options{TPM: rw, EventLog: log})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}})
	if _, err := (&attester.Client{IssuerURL: srv.URL}).Attest(ctx, a, "swtpm"); err != nil {
		t.Fatalf("attest on swtpm: %v", err)
	}

	req, err := a.EnrollRequest(attester.EKRSA)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := decodeEK(req.EKPub)
	if err != nil {
		t.Fatal(err)
	}
	enrolling := testenv.Issuer(t, testenv.IssuerOptions{PinnedEKs: []crypto.PublicKey{ek}})
	c := &attester.Client{IssuerURL: enrolling.URL}
	if _, err := c.Attest(ctx, a, "swtpm"); err == nil {
		t.Fatal("attested before enrollment")
	}
	if _, err := c.Enroll(ctx, a, attester.EKRSA); err != nil {
		t.Fatalf("enroll on swtpm: %v", err)
	}
	if _, err := c.Attest(ctx, a, "swtpm"); err != nil {
		t.Fatalf("attest after enrollment: %v", err)
	}
}

func TestOpenSWTPMBadSpec(t *testing.T) {
	if _, err := attester.OpenTPM("swtpm:nohostport"); !errors.Is(err, attester.ErrUnknownTPMSpec) {
		t.Fatalf("malformed swtpm spec: %v", err)
	}
	if _, err := attester.OpenTPM("swtpm:127.0.0.1:1"); err == nil {
		t.Fatal("connected to a closed port")
	}
}

func decodeEK(area []byte) (crypto.PublicKey, error) {
	pub, err := tpm2.DecodePublic(area)
	if err != nil {
		return nil, err
	}
	return pub.Key()
}
