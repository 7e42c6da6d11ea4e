package issuer_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/forge"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
)

// TestMalformedSignatureListOverHTTP is the security review's D1 attack: one POST /v1/attest to
// an issuer trusting any AK, with a log whose PCR7 db variable holds an EFI_SIGNATURE_LIST of
// SignatureSize 0 (go-eventlog would allocate ~8 GiB for it). The issuer answers 403
// evidence_rejected_event_log and keeps serving: the next, good attestation gets a token.
func TestMalformedSignatureListOverHTTP(t *testing.T) {
	bad, err := logforge.ZeroSignatureSizeDB(testenv.EventLog(t, "rhel8-uefi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	ak, err := forge.NewECC()
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.Issuer(t, testenv.IssuerOptions{AKTrust: evidence.AnyAK{}})
	c := &attester.Client{IssuerURL: srv.URL}
	submit := func(log []byte) error {
		ch, err := c.Challenge(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		cnf := testCNF(t)
		ev, err := ak.AttestFor(ch.Nonce, cnf, log, forge.Quote{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Submit(context.Background(), &api.AttestRequest{Nonce: ch.Nonce, CNF: cnf, Attestation: ev.Bytes(), Audience: "test"})
		return err
	}
	if status, got := code(t, submit(bad)); status != http.StatusForbidden || got != "evidence_rejected_event_log" {
		t.Fatalf("crafted log: %d %s, want 403 evidence_rejected_event_log", status, got)
	}
	if err := submit(testenv.EventLog(t, testenv.DefaultLog)); err != nil {
		t.Fatalf("a good attestation after the refusal: %v", err)
	}
}
