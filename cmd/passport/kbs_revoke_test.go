package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/internal/testenv"
)

// TestKBSRefusesRevokedToken: a token that fetched a secret is revoked at the issuer (passport
// revoke --jti); the broker, checking the issuer's status list (and following its revocation
// stream), refuses the same token afterwards, while a fresh token still gets the secret.
func TestKBSRefusesRevokedToken(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	issAddr, adminAddr, kbsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	iss, kbsURL := "http://"+issAddr, "http://"+kbsAddr
	dir := t.TempDir()
	cred := filepath.Join(dir, "cred")
	if err := os.WriteFile(cred, []byte("an-admin-credential-of-32-bytes!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(filepath.Join(secrets, "default", "key"), 0o700); err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, 32)
	_, _ = rand.Read(disk)
	if err := os.WriteFile(filepath.Join(secrets, "default", "key", "disk"), disk, 0o600); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 2)
	go func() {
		_, err := run(ctx, t, "serve", "--addr", issAddr, "--trust-any-ak", "--admin-addr", adminAddr, "--admin-credential", cred)
		served <- err
	}()
	waitFor(t, iss+"/.well-known/openid-configuration")
	go func() {
		_, err := run(ctx, t, "kbs", "--addr", kbsAddr, "--issuer", iss, "--audience", "kbs", "--secrets", secrets)
		served <- err
	}()
	defer func() {
		cancel()
		for range 2 {
			if err := <-served; err != nil {
				t.Errorf("server: %v", err)
			}
		}
	}()
	waitFor(t, kbsURL+"/healthz")

	tok := filepath.Join(dir, "token")
	fetch := func() error {
		_, err := run(ctx, t, "attest", "--issuer", iss, "--kbs", kbsURL, "--audience", "kbs", "--tpm", "simulator",
			"--event-log", testenv.EventLogPath(t, testenv.DefaultLog), "--fetch", "default/key/disk", "--out", filepath.Join(dir, "got"), "--token", tok)
		return err
	}
	if err := fetch(); err != nil {
		t.Fatalf("first fetch: %v", err)
	}
	raw, err := os.ReadFile(tok)
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(ctx, t, "verify", "--issuer", iss, "--audience", "kbs", strings.TrimSpace(tok))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var claims struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal([]byte(out), &claims); err != nil || claims.JTI == "" {
		t.Fatalf("no jti in %s (%v)", out, err)
	}
	if _, err := run(ctx, t, "revoke", "--admin", "http://"+adminAddr, "--credential", cred, "--jti", claims.JTI); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	// The broker learns the revocation from the issuer's pushed event (its status list copy is
	// fresh for the list's ttl): wait for it to refuse the saved token, with a liveness
	// deadline only.
	savedTok, savedKey, err := attester.LoadToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	kc := &attester.KBSClient{URL: kbsURL}
	id, _ := api.ParseResourceID("default/key/disk")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := kc.Fetch(ctx, id, savedTok, savedKey); err != nil {
			if !strings.Contains(err.Error(), "revoked") {
				t.Fatalf("saved token refused for another reason: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the broker still releases the secret to the revoked token")
		}
	}
	// The saved token is reused while fresh: the broker must now refuse it. attest --token
	// replaces a token the broker refuses with 401 by one fresh attestation, so the fetch
	// succeeds with a new token, and the file then holds a different token.
	if err := fetch(); err != nil {
		t.Fatalf("fetch after revocation (with re-attestation): %v", err)
	}
	raw2, err := os.ReadFile(tok)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw2) == string(raw) {
		t.Fatal("the broker accepted the revoked token: it was not replaced")
	}
}
