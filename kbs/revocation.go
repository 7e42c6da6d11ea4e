package kbs

import (
	"context"
	"errors"
	"fmt"

	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

// StatusRevocation is the RevocationChecker of a deployed broker: it checks a token's entry in
// the issuer's Token Status List (draft-ietf-oauth-status-list) through a
// relyingparty.StatusChecker, which caches lists per their ttl and, when following the issuer's
// revocation stream, learns revocations within a second. A revoked token gets ErrRevoked (401);
// a status that cannot be established (list unreachable and no fresh copy, no status claim) is
// an error, so the release fails closed (503).
type StatusRevocation struct {
	Checker *relyingparty.StatusChecker
}

// Revoked implements RevocationChecker.
func (s StatusRevocation) Revoked(ctx context.Context, c *token.Claims) error {
	if s.Checker == nil {
		return errors.New("kbs: no status checker")
	}
	err := s.Checker.Check(ctx, c)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, relyingparty.ErrRevoked):
		return fmt.Errorf("%w: %w", ErrRevoked, err)
	}
	return fmt.Errorf("kbs: token status: %w", err)
}
