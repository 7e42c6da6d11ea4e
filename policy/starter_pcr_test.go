package policy_test

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/forge"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/token"
)

// verified returns the state of correctly signed evidence over testenv.DefaultLog that quotes
// every PCR except the ones in omit.
func verified(t *testing.T, omit ...uint32) *evidence.State {
	t.Helper()
	ak, err := forge.NewECC()
	if err != nil {
		t.Fatal(err)
	}
	log := testenv.EventLog(t, testenv.DefaultLog)
	pcrs, err := forge.PCRsFor(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range omit {
		delete(pcrs, p)
	}
	ev, err := ak.Attest(log, forge.Quote{PCRs: pcrs})
	if err != nil {
		t.Fatal(err)
	}
	al, _ := evidence.NewAllowlist(ak.PublicKey())
	v, _ := evidence.NewVerifier(evidence.Options{AKTrust: al})
	st, err := v.Verify(context.Background(), ev.Nonce, ev.CNF, ev.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPolicyPCRNotQuoted: a PCR with reference values that the quote does not cover is reported
// (never treated as matching), and the appraisal is not affirming.
func TestPolicyPCRNotQuoted(t *testing.T) {
	full := verified(t)
	ref := &policy.Reference{PCRs: map[string][]string{"7": {hex.EncodeToString(full.PCRs[7])}}}
	if a := ref.Appraise(full); a.Status != token.TierAffirming || len(a.Failures) != 0 {
		t.Fatalf("matching PCR 7: %+v", a)
	}
	a := ref.Appraise(verified(t, 7))
	if a.Status == token.TierAffirming || len(a.Failures) != 1 || a.Failures[0].Rule != "pcr7" ||
		!strings.Contains(a.Failures[0].Reason, "not in the quote") {
		t.Fatalf("PCR 7 missing from the quote: %+v", a)
	}
	if a.Vector[token.ClaimExecutables] != token.ValueContraindicated {
		t.Fatalf("executables claim %d, want contraindicated", a.Vector[token.ClaimExecutables])
	}
}
