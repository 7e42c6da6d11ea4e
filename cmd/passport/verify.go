package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/relyingparty"
)

type verifyFlags struct {
	issuer, jwksFile, audience string
	status                     statusFlags // verify_status.go
}

func newVerifyCmd() *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify TOKENFILE",
		Short: "Validate a passport token locally and print its claims as JSON",
		Long: `verify checks the token's signature, typ, iss (= --issuer), aud (--audience), exp and
EAR status, and prints the verified claims as JSON. With --jwks FILE the keys come from that
file and nothing is fetched (an offline relying party); otherwise they come from the issuer's
discovery document and JWKS. Exit status 0 means valid; anything else prints the reason.

The token's status list entry (draft-ietf-oauth-status-list) is checked too: online, the
issuer's list is fetched; offline, --status-list FILE gives the list, used up to
--status-max-age after it was issued. A revoked token, or one whose status cannot be
established, is refused. Offline without --status-list the status is not checked: the token
is accepted with a warning on stderr.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("jwks") && f.jwksFile == "" {
				return errors.New("--jwks needs a file (an offline check never falls back to the network)")
			}
			return runVerify(cmd.Context(), f, args[0], cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.issuer, "issuer", "", "expected iss (and, without --jwks, where keys are fetched)")
	fl.StringVar(&f.jwksFile, "jwks", "", "JWKS file: validate offline with these keys")
	fl.StringVar(&f.audience, "audience", "", "expected audience")
	addStatusFlags(fl, &f.status)
	_ = cmd.MarkFlagRequired("issuer")
	_ = cmd.MarkFlagRequired("audience")
	return cmd
}

func runVerify(ctx context.Context, f verifyFlags, tokenFile string, stdout io.Writer) error {
	raw, err := readTokenFile(tokenFile)
	if err != nil {
		return err
	}
	// Every asymmetric algorithm passport can sign with (never HMAC or none); each JWKS key
	// is bound to its own alg, so a broader list cannot cause algorithm confusion. Online, the
	// issuer's advertised algorithms narrow it.
	algs := make([]string, 0, len(jwks.Algorithms))
	for _, a := range jwks.Algorithms {
		algs = append(algs, string(a))
	}
	var ks relyingparty.KeySet
	if f.jwksFile != "" {
		if ks, err = relyingparty.LoadJWKSFile(f.jwksFile); err != nil {
			return err
		}
	} else {
		hc := &http.Client{Timeout: 10 * time.Second}
		d, err := relyingparty.Discover(ctx, strings.TrimRight(f.issuer, "/"), hc)
		if err != nil {
			return err
		}
		ks = relyingparty.NewRemoteKeySet(ctx, d.JWKSURI, relyingparty.WithHTTPClient(hc))
		algs = slices.DeleteFunc(algs, func(a string) bool { return !slices.Contains(d.SigningAlgs, a) })
	}
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: strings.TrimRight(f.issuer, "/"), Audience: f.audience, KeySet: ks, Algorithms: algs})
	if err != nil {
		return err
	}
	claims, err := v.Verify(ctx, strings.TrimSpace(string(raw)))
	if err != nil {
		return fmt.Errorf("token refused: %w", err)
	}
	if err := checkStatus(ctx, f, ks, claims); err != nil { // verify_status.go
		return fmt.Errorf("token refused: %w", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(claims)
}

// maxTokenFile is the largest token file verify reads: the verifier's token limit plus room for
// surrounding whitespace. A larger file is refused without being read whole.
const maxTokenFile = relyingparty.DefaultMaxTokenSize + 4096

// readTokenFile reads the token file path, at most maxTokenFile bytes.
func readTokenFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxTokenFile {
		return nil, fmt.Errorf("token refused: %w: %s is over %d bytes", relyingparty.ErrTooLarge, path, maxTokenFile)
	}
	return raw, nil
}
