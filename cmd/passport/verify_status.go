package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

// statusFlags are verify's token status flags.
type statusFlags struct {
	files  []string
	maxAge time.Duration
}

func addStatusFlags(fl *pflag.FlagSet, f *statusFlags) {
	fl.StringSliceVar(&f.files, "status-list", nil, "status list token file (GET ISSUER/v1/status-list/ID) to check the token's status offline (repeatable)")
	fl.DurationVar(&f.maxAge, "status-max-age", time.Hour, "with --status-list: refuse (fail closed) once the list is older than this")
}

// checkStatus checks the verified token's status list entry: with --status-list against the
// given lists only (offline), without --jwks against the issuer's list (fetched now), and with
// --jwks but no list not at all (a warning says the status is unchecked). Errors wrap
// relyingparty.ErrRevoked or relyingparty.ErrStatusUnavailable.
func checkStatus(ctx context.Context, f verifyFlags, ks relyingparty.KeySet, claims *token.Claims) error {
	cfg := relyingparty.StatusConfig{Issuer: strings.TrimRight(f.issuer, "/"), KeySet: ks}
	switch {
	case len(f.status.files) > 0:
		cfg.Offline, cfg.MaxStaleness = true, f.status.maxAge
	case f.jwksFile == "":
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	default:
		fmt.Fprintln(os.Stderr, "passport: warning: token status not checked (offline with --jwks): pass --status-list FILE to refuse revoked tokens")
		return nil
	}
	c, err := relyingparty.NewStatusChecker(cfg)
	if err != nil {
		return err
	}
	for _, p := range f.status.files {
		if err := c.LoadFile(ctx, p); err != nil {
			return err
		}
	}
	return c.Check(ctx, claims)
}
