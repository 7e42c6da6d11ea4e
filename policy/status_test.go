package policy_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/token"
)

// severity orders AR4SI tiers for the test, independently of the token package: affirming <
// warning < no claim < contraindicated (a "no claim" never affirms; draft-ietf-rats-ear
// section 3.1.1 and token.Tier).
func severity(v int8) int {
	switch {
	case v >= -1 && v <= 1:
		return 2
	case (v >= 2 && v <= 31) || (v >= -32 && v <= -2):
		return 0
	case (v >= 32 && v <= 95) || (v >= -96 && v <= -33):
		return 1
	}
	return 3
}

// TestStatusNeverBetterThanWorstClaim is a property test over 600 random policies (1 to 8
// rules, random claims, outcomes and values) on a real log's State: each claim holds the worst
// value any rule set for it, and the status is exactly the worst tier among the claims that say
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
