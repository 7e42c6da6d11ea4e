package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/token"
)

func fetchTo(t *testing.T, url, path string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, res.StatusCode)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyStatus runs `passport verify` online and offline (--jwks with --status-list) on
// a token before and after its revocation, and with a list older than --status-max-age.
func TestVerifyStatus(t *testing.T) {
	ctx := context.Background()
	a := testenv.Attester(t, testenv.DefaultLog)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}})
	res, err := (&attester.Client{IssuerURL: srv.URL}).Attest(ctx, a, "cli")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokFile, jwksFile, listFile := filepath.Join(dir, "token"), filepath.Join(dir, "jwks.json"), filepath.Join(dir, "list.jwt")
	if err := os.WriteFile(tokFile, []byte(res.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	online := verifyFlags{issuer: srv.URL, audience: "cli", status: statusFlags{maxAge: time.Hour}}
	if err := runVerify(ctx, online, tokFile, &out); err != nil {
		t.Fatalf("online verify: %v", err)
	}
	var claims token.Claims
	if err := json.Unmarshal([]byte(out.String()), &claims); err != nil || claims.Status == nil {
		t.Fatalf("verify output: %v %s", err, out.String())
	}
	fetchTo(t, srv.URL+"/.well-known/jwks.json", jwksFile)
	fetchTo(t, claims.Status.StatusList.URI, listFile)
	offline := online
	offline.jwksFile, offline.status.files = jwksFile, []string{listFile}
	if err := runVerify(ctx, offline, tokFile, io.Discard); err != nil {
		t.Fatalf("offline verify with a list: %v", err)
	}

	if _, err := srv.Issuer.Revoke(ctx, store.Selector{ID: claims.ID}); err != nil {
		t.Fatal(err)
	}
	if err := runVerify(ctx, online, tokFile, io.Discard); !errors.Is(err, relyingparty.ErrRevoked) {
		t.Fatalf("online verify of a revoked token = %v, want ErrRevoked", err)
	}
	// The old list does not know; a fresh one does.
	if err := runVerify(ctx, offline, tokFile, io.Discard); err != nil {
		t.Fatalf("offline verify with the list from before the revocation: %v", err)
	}
	fetchTo(t, claims.Status.StatusList.URI, listFile)
	if err := runVerify(ctx, offline, tokFile, io.Discard); !errors.Is(err, relyingparty.ErrRevoked) {
		t.Fatalf("offline verify with a fresh list = %v, want ErrRevoked", err)
	}
	// A list older than --status-max-age fails closed.
	stale := offline
	stale.status.maxAge = time.Nanosecond
	if err := runVerify(ctx, stale, tokFile, io.Discard); !errors.Is(err, relyingparty.ErrStatusUnavailable) {
		t.Fatalf("offline verify with a stale list = %v, want ErrStatusUnavailable", err)
	}
}

// TestVerifyRefusesHugeTokenFile: verify refuses a token file over its limit without reading
// it whole.
func TestVerifyRefusesHugeTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.token")
	if err := os.WriteFile(path, bytes.Repeat([]byte("A"), 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := readTokenFile(path)
	if !errors.Is(err, relyingparty.ErrTooLarge) || raw != nil {
		t.Fatalf("readTokenFile(8 MiB) = %d bytes, %v; want ErrTooLarge", len(raw), err)
	}
}
