package loadtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

// TestAuditRevocations: a revoked token read as valid is a lost revocation, a kept token read
// as revoked is wrongly revoked, and a token whose status cannot be established counts as
// unavailable in either sample, never as a success.
func TestAuditRevocations(t *testing.T) {
	results := map[string]error{
		"r-ok":    fmt.Errorf("%w: index 3", relyingparty.ErrRevoked),
		"r-lost1": nil,
		"r-lost2": nil,
		"r-down":  fmt.Errorf("%w: fetch failed", relyingparty.ErrStatusUnavailable),
		"k-ok":    nil,
		"k-wrong": fmt.Errorf("%w: revocation pushed by the issuer", relyingparty.ErrRevoked),
		"k-down":  fmt.Errorf("%w: fetch failed", relyingparty.ErrStatusUnavailable),
	}
	check := func(_ context.Context, c *token.Claims) error { return results[c.ID] }
	claims := func(ids ...string) []*token.Claims {
		var out []*token.Claims
		for _, id := range ids {
			out = append(out, &token.Claims{ID: id})
		}
		return out
	}
	got := auditRevocations(context.Background(), check,
		claims("r-ok", "r-lost1", "r-lost2", "r-down"), claims("k-ok", "k-wrong", "k-down"))
	want := revocationAudit{lost: 2, wrong: 1, unavailable: 2}
	if got != want {
		t.Fatalf("auditRevocations = %+v, want %+v", got, want)
	}
	if got := auditRevocations(context.Background(), check, claims("r-ok"), claims("k-ok")); got != (revocationAudit{}) {
		t.Fatalf("all as expected: %+v, want zero", got)
	}
}
