package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// shortCred is an admin credential below issuer.MinCredentialSize: its content must never be
// printed.
const shortCred = "hunter2-secret"

// writeFiles writes name -> content into a temporary directory and returns name -> path.
func writeFiles(t *testing.T, files map[string]string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := map[string]string{}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		out[name] = p
	}
	return out
}

// runRefused runs the command, which must refuse its configuration before starting, and
// checks that one run reports every wanted problem and no secret.
func runRefused(t *testing.T, want []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := run(ctx, t, args...)
	if err == nil {
		t.Fatalf("%s started with bad files", args[0])
	}
	msg := err.Error() + "\n" + out
	if !strings.HasPrefix(err.Error(), "invalid configuration:") {
		t.Errorf("not refused as a configuration: %v", err)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("the error lacks %q:\n%s", w, msg)
		}
	}
	if strings.Contains(msg, shortCred) {
		t.Errorf("the error prints the admin credential:\n%s", msg)
	}
}

// TestServeReportsEveryBadFile: one run of serve names every file whose content is wrong
// (signing key, AK allowlist, admin credential, a TLS pair given the wrong way round, policy,
// AK roots), each under its flag, without printing the credential.
func TestServeReportsEveryBadFile(t *testing.T) {
	p := newPKI(t)
	c, k := p.issue(t, "issuer", false)
	cert, key := p.files(t, "issuer", c, k)
	f := writeFiles(t, map[string]string{
		"sk.pem":     "no PEM here\n",
		"aks.bad":    "not an allowlist\n",
		"short.cred": shortCred + "\n",
		"policy.bad": "version: 1\nrules: [{\n",
		"roots.bad":  "not a certificate\n",
	})
	runRefused(t, []string{
		"signing-key: jwks: " + f["sk.pem"] + ": no PEM block found",
		"ak-allowlist: " + f["aks.bad"] + ": no public keys found",
		"admin-credential: issuer: admin credential is 14 bytes",
		"tls-cert, tls-key: tlsreload:",
		"policy: ",
		"ak-roots: evidence: " + f["roots.bad"],
	}, "serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--admin-credential", f["short.cred"], "--signing-key", f["sk.pem"], "--ak-allowlist", f["aks.bad"],
		"--ak-roots", f["roots.bad"], "--policy", f["policy.bad"], "--tls-cert", key, "--tls-key", cert)
}

// TestKBSReportsEveryBadFile: one run of kbs names every file whose content is wrong, each
// under its flag: JWKS, release policy, admin credential and a swapped TLS pair; with a good
// JWKS, the status list it verifies; with Redis, the KEK (before connecting).
func TestKBSReportsEveryBadFile(t *testing.T) {
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ek.PublicKey, KeyID: "k", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	p := newPKI(t)
	c, k := p.issue(t, "kbs", false)
	cert, key := p.files(t, "kbs", c, k)
	f := writeFiles(t, map[string]string{
		"jwks.bad":   "{}",
		"jwks.json":  string(set),
		"status.bad": "not a status list token",
		"policy.bad": "rules:\n  - resource: a/b/c\n    allow: 'claims.x =='\n",
		"short.cred": shortCred + "\n",
		"kek.bad":    "too short",
	})
	secrets := t.TempDir()
	base := []string{"kbs", "--addr", "127.0.0.1:0", "--issuer", "http://127.0.0.1:1", "--audience", "kbs"}

	t.Run("jwks, policy, credential, tls", func(t *testing.T) {
		runRefused(t, []string{
			"jwks: relyingparty: " + f["jwks.bad"],
			"policy: " + f["policy.bad"],
			"admin-credential: issuer: admin credential is 14 bytes",
			"tls-cert, tls-key: tlsreload:",
		}, append(base, "--secrets", secrets, "--jwks", f["jwks.bad"], "--status-list", f["status.bad"],
			"--policy", f["policy.bad"], "--admin-addr", "127.0.0.1:0", "--admin-credential", f["short.cred"],
			"--tls-cert", key, "--tls-key", cert)...)
	})
	t.Run("status list, kek", func(t *testing.T) {
		runRefused(t, []string{
			"status-list: relyingparty: " + f["status.bad"],
			"kek: kbs: key-encryption key " + f["kek.bad"],
			"admin-credential: issuer: admin credential is 14 bytes",
		}, append(base, "--redis", "redis://127.0.0.1:1", "--kek", f["kek.bad"], "--jwks", f["jwks.json"],
			"--status-list", f["status.bad"], "--admin-addr", "127.0.0.1:0", "--admin-credential", f["short.cred"])...)
	})
}
