package token_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/passport-attest/passport/token"
)

func claims(now time.Time) *token.Claims {
	return &token.Claims{
		Issuer: "https://issuer.example", Subject: "ak", Audience: token.Audience{"svc"},
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(5 * time.Minute).Unix(), ID: "j1",
		Submods: map[string]*token.Submod{"tpm": {Status: token.TierAffirming,
			Vector: token.TrustworthinessVector{token.ClaimHardware: token.ValueAffirming}}},
	}
}

func TestValidate(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	exp := token.Expectations{Issuer: "https://issuer.example", Audience: "svc", Leeway: 10 * time.Second}
	if err := claims(now).Validate(now, exp); err != nil {
		t.Fatalf("valid claims refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(c *token.Claims, e *token.Expectations) time.Time
		want error
	}{
		{"wrong issuer", func(c *token.Claims, e *token.Expectations) time.Time { c.Issuer = "x"; return now }, token.ErrIssuer},
		{"empty expected issuer", func(c *token.Claims, e *token.Expectations) time.Time { c.Issuer, e.Issuer = "", ""; return now }, token.ErrIssuer},
		{"other audience", func(c *token.Claims, e *token.Expectations) time.Time { e.Audience = "other"; return now }, token.ErrAudience},
		{"empty audience string", func(c *token.Claims, e *token.Expectations) time.Time {
			c.Audience, e.Audience = token.Audience{""}, ""
			return now
		}, token.ErrAudience},
		{"empty audience array", func(c *token.Claims, e *token.Expectations) time.Time { c.Audience = nil; return now }, token.ErrAudience},
		{"expired beyond leeway", func(c *token.Claims, e *token.Expectations) time.Time { return now.Add(5*time.Minute + 11*time.Second) }, token.ErrExpired},
		{"not yet valid", func(c *token.Claims, e *token.Expectations) time.Time { return now.Add(-11 * time.Second) }, token.ErrNotYetValid},
		{"no jti", func(c *token.Claims, e *token.Expectations) time.Time { c.ID = ""; return now }, token.ErrMalformed},
		{"no submods", func(c *token.Claims, e *token.Expectations) time.Time { c.Submods = nil; return now }, token.ErrMalformed},
		{"warning below default minimum", func(c *token.Claims, e *token.Expectations) time.Time {
			c.Submods["tpm"].Vector[token.ClaimConfiguration] = token.ValueUnsafe
			return now
		}, token.ErrStatus},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, e := claims(now), exp
			at := tc.mod(c, &e)
			if err := c.Validate(at, e); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Within the leeway: accepted.
	if err := claims(now).Validate(now.Add(5*time.Minute+9*time.Second), exp); err != nil {
		t.Fatalf("within leeway refused: %v", err)
	}
	// A warning token passes when the relying party accepts warnings.
	c := claims(now)
	c.Submods["tpm"].Vector[token.ClaimConfiguration] = token.ValueUnsafe
	exp.MinStatus = token.TierWarning
	if err := c.Validate(now, exp); err != nil {
		t.Fatalf("warning token refused at MinStatus warning: %v", err)
	}
}

// TestOverallStatusNeverBetterThanWorstClaim checks every claim value against every submodule
// status: the overall status is never better than either.
func TestOverallStatusNeverBetterThanWorstClaim(t *testing.T) {
	tiers := []token.Tier{token.TierAffirming, token.TierWarning, token.TierContraindicated, token.TierNone}
	for v := -128; v <= 127; v++ {
		for _, st := range tiers {
			c := &token.Claims{Submods: map[string]*token.Submod{
				"a": {Status: st, Vector: token.TrustworthinessVector{token.ClaimExecutables: int8(v)}},
				"b": {Status: token.TierAffirming},
			}}
			got := c.OverallStatus()
			if got.Worse(st) == false && st.Worse(got) {
				t.Fatalf("claim %d, status %s: overall %s is better than the submodule status", v, st, got)
			}
			if ct := token.TierOf(int8(v)); ct != token.TierNone && ct.Worse(got) {
				t.Fatalf("claim %d (%s), status %s: overall %s is better than the claim", v, ct, st, got)
			}
		}
	}
}

func TestTierOfRanges(t *testing.T) {
	for v, want := range map[int8]token.Tier{-128: token.TierContraindicated, -97: token.TierContraindicated, -96: token.TierWarning,
		-33: token.TierWarning, -32: token.TierAffirming, -2: token.TierAffirming, -1: token.TierNone, 0: token.TierNone, 1: token.TierNone,
		2: token.TierAffirming, 31: token.TierAffirming, 32: token.TierWarning, 95: token.TierWarning, 96: token.TierContraindicated, 127: token.TierContraindicated} {
		if got := token.TierOf(v); got != want {
			t.Errorf("TierOf(%d) = %s, want %s", v, got, want)
		}
	}
}

func TestJSONSpellings(t *testing.T) {
	dotted := `{"iss":"i","aud":["a","b"],"exp":1,"jti":"j","submods":{"tpm":{"ear.status":"warning","ear.trustworthiness-vector":{"hardware":2},"ear.appraisal-policy-id":"p"}}}`
	var c token.Claims
	if err := json.Unmarshal([]byte(dotted), &c); err != nil {
		t.Fatal(err)
	}
	s := c.Submods["tpm"]
	if s.Status != token.TierWarning || s.Vector[token.ClaimHardware] != 2 || s.PolicyID != "p" || !c.Audience.Contains("b") {
		t.Fatalf("dotted spelling misread: %+v %+v", s, c.Audience)
	}
	for _, bad := range []string{
		`{"submods":{"tpm":{}}}`,
		`{"submods":{"tpm":{"ear_status":"affirming","ear.status":"contraindicated"}}}`,
		`{"submods":{"tpm":{"ear_status":"excellent"}}}`,
		`{"aud":7}`,
	} {
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	b, _ := json.Marshal(token.Audience{"one"})
	if string(b) != `"one"` {
		t.Fatalf("single audience marshals as %s", b)
	}
}
