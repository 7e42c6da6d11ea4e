package policy_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/token"
)

// severity orders AR4SI values for the test, independently of the token package: no claim
// (-1..1, neutral: it only stands where no rule said more) < affirming < warning <
// contraindicated (draft-ietf-rats-ear section 3.1.1).
func severity(v int8) int {
	switch {
	case v >= -1 && v <= 1:
		return -1
	case (v >= 2 && v <= 31) || (v >= -32 && v <= -2):
		return 0
	case (v >= 32 && v <= 95) || (v >= -96 && v <= -33):
		return 1
	}
	return 3
}

// TestStatusNeverBetterThanWorstClaim is a property test over 600 random policies (1 to 8
// rules, random claims, outcomes and values) on a real log's State: each claim holds the worst
// non-none value any rule set for it (a no_claim never erases a warning or an affirmation),
// and the status is exactly the worst tier among the claims that say
// something (affirming when none does): never better than the worst claim.
func TestStatusNeverBetterThanWorstClaim(t *testing.T) {
	st := bareState(t, testenv.EventLog(t, testenv.DefaultLog))
	rng := rand.New(rand.NewPCG(4, 2026))
	randValue := func(ok func(int8) bool) int8 {
		for {
			if v := int8(rng.IntN(256) - 128); ok(v) {
				return v
			}
		}
	}
	for iter := range 600 {
		f := &policy.File{Version: policy.FileVersion}
		want := map[string]int8{}
		set := func(claim string, v int8) {
			old, ok := want[claim]
			if !ok || severity(v) > severity(old) || (severity(v) == severity(old) && v > old) {
				want[claim] = v
			}
		}
		for i := range 1 + rng.IntN(8) {
			r := policy.Rule{
				Name:      fmt.Sprintf("r%d", i),
				Claim:     policy.Claims[rng.IntN(len(policy.Claims))],
				OnFailure: policy.Value(randValue(func(v int8) bool { return token.TierOf(v) != token.TierAffirming })),
			}
			holds := rng.IntN(2) == 0
			r.Expr = fmt.Sprint(holds)
			if rng.IntN(3) > 0 {
				v := policy.Value(randValue(func(v int8) bool { t := token.TierOf(v); return t == token.TierAffirming || t == token.TierNone }))
				r.OnSuccess = &v
			}
			f.Rules = append(f.Rules, r)
			switch {
			case !holds:
				set(r.Claim, int8(r.OnFailure))
			case r.OnSuccess != nil:
				set(r.Claim, int8(*r.OnSuccess))
			}
		}
		p, err := policy.New(f, nil)
		if err != nil {
			t.Fatalf("iteration %d: %v", iter, err)
		}
		a := p.Appraise(st)
		wantStatus := token.TierAffirming
		for claim, v := range want {
			if a.Vector[claim] != v {
				t.Fatalf("iteration %d: claim %s = %d, want %d (rules %+v)", iter, claim, a.Vector[claim], v, f.Rules)
			}
			tier := token.TierOf(v)
			if tier == token.TierNone {
				continue
			}
			if tier.Worse(a.Status) {
				t.Fatalf("iteration %d: status %v is better than claim %s = %d (%v)", iter, a.Status, claim, v, tier)
			}
			if severity(v) > severity(int8(wantStatus)) {
				wantStatus = tier
			}
		}
		if len(a.Vector) != len(want) {
			t.Fatalf("iteration %d: vector %v, want %v", iter, a.Vector, want)
		}
		if a.Status != wantStatus {
			t.Fatalf("iteration %d: status %v, want %v (vector %v)", iter, a.Status, wantStatus, a.Vector)
		}
	}
}

// TestNoClaimKeepsWarning is the case of the review: a warning rule on hardware and a failed
// ak-hardware rule (no_claim, as learned policies have on a bare log) keep hardware = warning
// and the status warning, in either rule order; a no_claim does not erase an affirmation
// either.
func TestNoClaimKeepsWarning(t *testing.T) {
	st := bareState(t, testenv.EventLog(t, testenv.DefaultLog))
	warn := policy.Rule{Name: "old-tpm", Claim: token.ClaimHardware, Expr: "false", OnFailure: policy.Value(token.ValueUnsafe)}
	ak := policy.Rule{Name: "ak-hardware", Claim: token.ClaimHardware, Expr: `ak.trust in ["allowlist", "certificate", "enrolled"]`, OnFailure: policy.Value(token.ValueNoClaim)}
	affirm := policy.Value(token.ValueAffirming)
	ok := policy.Rule{Name: "ok", Claim: token.ClaimHardware, Expr: "true", OnSuccess: &affirm, OnFailure: policy.Value(token.ValueContraindicated)}
	for _, tc := range []struct {
		rules  []policy.Rule
		value  int8
		status token.Tier
	}{
		{[]policy.Rule{warn, ak}, token.ValueUnsafe, token.TierWarning},
		{[]policy.Rule{ak, warn}, token.ValueUnsafe, token.TierWarning},
		{[]policy.Rule{ok, ak}, token.ValueAffirming, token.TierAffirming},
		{[]policy.Rule{ak, ok}, token.ValueAffirming, token.TierAffirming},
		{[]policy.Rule{ak}, token.ValueNoClaim, token.TierAffirming},
	} {
		a := mustNew(t, &policy.File{Version: policy.FileVersion, Rules: tc.rules}, nil).Appraise(st)
		if a.Vector[token.ClaimHardware] != tc.value || a.Status != tc.status {
			t.Errorf("rules %v: hardware = %d, status %v; want %d, %v", tc.rules, a.Vector[token.ClaimHardware], a.Status, tc.value, tc.status)
		}
	}
	var a policy.Appraisal
	a.Set(token.ClaimHardware, token.ValueUnsafe)
	a.Set(token.ClaimHardware, token.ValueNoClaim)
	if a.Finish().Status != token.TierWarning {
		t.Errorf("Appraisal.Set: no_claim erased a warning: %v", a.Vector)
	}
}
