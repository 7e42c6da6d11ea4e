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

// statusRequire returns the check verify adds to the token's verification: with --status-list
// the given lists only (offline), without --jwks the issuer's list (fetched now), and with
// --jwks but no list nothing (a warning says the status is unchecked).
func statusRequire(ctx context.Context, f verifyFlags, ks relyingparty.KeySet, hc *http.Client) (func(*token.Claims) error, error) {
	issuer := strings.TrimRight(f.issuer, "/")
	switch {
	case len(f.status.files) > 0:
		c, err := relyingparty.NewStatusChecker(relyingparty.StatusConfig{Issuer: issuer, KeySet: ks, Offline: true, MaxStaleness: f.status.maxAge})
		if err != nil {
			return nil, err
		}
		for _, p := range f.status.files {
			if err := c.LoadFile(ctx, p); err != nil {
				return nil, err
			}
		}
		return c.Require, nil
	case f.jwksFile == "":
		c, err := relyingparty.NewStatusChecker(relyingparty.StatusConfig{Issuer: issuer, KeySet: ks, HTTPClient: hc})
		if err != nil {
			return nil, err
		}
		return c.Require, nil
	}
	fmt.Fprintln(os.Stderr, "passport: warning: token status not checked (offline with --jwks): pass --status-list FILE to refuse revoked tokens")
	return nil, nil
}
