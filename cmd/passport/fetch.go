package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
)

// reuseMargin is how long a saved token must still be valid to be presented again (--token).
const reuseMargin = 30 * time.Second

// runFetch is `passport attest --kbs URL --fetch repository/type/tag`: get a token (or reuse
// the one in --token), fetch the secret with DPoP and decrypt it with the cnf key. A saved
// token the broker refuses with 401 (revoked, another audience) is replaced once by a fresh one.
func runFetch(ctx context.Context, f attestFlags, stdout io.Writer) error {
	if f.kbs == "" {
		return errors.New("--token is only used with --kbs and --fetch")
	}
	id, err := api.ParseResourceID(f.fetch)
	if err != nil {
		return fmt.Errorf("--fetch: %w", err)
	}
	var tok string
	var key crypto.Signer
	if f.token != "" {
		t, k, err := attester.LoadToken(f.token)
		switch {
		case err == nil && attester.Reusable(t, k, time.Now(), reuseMargin) == nil:
			tok, key = t, k
			fmt.Fprintf(os.Stderr, "reusing the token in %s\n", f.token)
		case err != nil && !errors.Is(err, os.ErrNotExist):
			fmt.Fprintf(os.Stderr, "not reusing %s: %v\n", f.token, err)
		}
	}
	reused := tok != ""
	if !reused {
		if tok, key, err = attestForFetch(ctx, f); err != nil {
			return err
		}
	}
	kc := &attester.KBSClient{URL: f.kbs}
	secret, err := kc.Fetch(ctx, id, tok, key)
	var be *attester.BrokerError
	if reused && errors.As(err, &be) && be.Status == http.StatusUnauthorized {
		fmt.Fprintf(os.Stderr, "the broker refused the saved token (%v); attesting again\n", be.Err)
		if tok, key, err = attestForFetch(ctx, f); err != nil {
			return err
		}
		secret, err = kc.Fetch(ctx, id, tok, key)
	}
	if err != nil {
		return err
	}
	defer clear(secret)
	if f.out == "" {
		_, err = stdout.Write(secret)
		return err
	}
	if err := writeFile(f.out, secret, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: %d bytes written to %s\n", id, len(secret), f.out)
	return nil
}

// attestForFetch attests with the TPM and saves the token to --token when given.
func attestForFetch(ctx context.Context, f attestFlags) (string, crypto.Signer, error) {
	a, closeFn, err := openAttester(f.tpm, f.eventLog)
	if err != nil {
		return "", nil, err
	}
	res, err := attestOnce(ctx, f, a)
	closeFn()
	if err != nil {
		return "", nil, err
	}
	if f.token != "" {
		if err := attester.SaveToken(f.token, res.Token, a.CNFPrivate()); err != nil {
			return "", nil, err
		}
	}
	return res.Token, a.CNFPrivate(), nil
}
