package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/passport-attest/passport/api"
)

// adminFlags locate and authenticate the issuer's admin API.
type adminFlags struct {
	url, credential string
}

func addAdminFlags(fl *pflag.FlagSet, f *adminFlags) {
	fl.StringVar(&f.url, "admin", "", "base URL of the issuer's admin API, e.g. http://127.0.0.1:9443 (required)")
	fl.StringVar(&f.credential, "credential", "", "file holding the admin bearer credential (required)")
}

// adminCall sends method path with body (JSON, may be nil) to the admin API and decodes a 2xx
// answer into out (when non-nil and the answer has a body); any other status is returned as
// the issuer's api.Error. It is the one admin client of the CLI (revoke, keys, policy).
func adminCall(ctx context.Context, f adminFlags, method, path string, body, out any) error {
	cred, err := os.ReadFile(f.credential)
	if err != nil {
		return fmt.Errorf("admin credential: %w", err)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(f.url, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(cred)))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		var e api.Error
		if json.Unmarshal(b, &e) == nil && e.Code != "" {
			return fmt.Errorf("issuer answered %d: %w", res.StatusCode, &e)
		}
		return fmt.Errorf("%s %s: issuer answered %s", method, path, res.Status)
	}
	if out == nil || len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin API answer: %w", err)
	}
	return nil
}
