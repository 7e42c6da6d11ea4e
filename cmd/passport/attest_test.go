package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"github.com/passport-attest/passport/config"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/client"

	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/store/memory"
)

// TestAttestEnrollSWTPM runs `passport attest --tpm swtpm:... --event-log LOG --enroll`
// against an issuer that pins only the swtpm's EK: the CLI enrolls the AK and gets a token.
func TestAttestEnrollSWTPM(t *testing.T) {
	spec, _ := testenv.SWTPM(t)
	rw, err := attester.OpenTPM(spec)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := client.EndorsementKeyRSA(rw)
	if err != nil {
		t.Fatal(err)
	}
	ekPub := ek.PublicKey()
	ek.Close()
	rw.Close()

	srv := testenv.Issuer(t, testenv.IssuerOptions{PinnedEKs: []crypto.PublicKey{ekPub}})
	out := filepath.Join(t.TempDir(), "token")
	args := []string{"attest", "--issuer", srv.URL, "--tpm", spec, "--event-log", testenv.EventLogPath(t, testenv.DefaultLog), "--audience", "cli", "--out", out}
	if _, err := runCLI(t, args...); err == nil || !strings.Contains(err.Error(), "ak_trust") {
		t.Fatalf("attest without --enroll: %v, want an AK trust refusal", err)
	}
	// The refused run replayed the log into swtpm already: start over on a fresh one.
	spec2, _ := testenv.SWTPM(t)
	rw, err = attester.OpenTPM(spec2)
	if err != nil {
		t.Fatal(err)
	}
	ek, err = client.EndorsementKeyRSA(rw)
	if err != nil {
		t.Fatal(err)
	}
	ekPub = ek.PublicKey()
	ek.Close()
	rw.Close()
	srv = testenv.Issuer(t, testenv.IssuerOptions{PinnedEKs: []crypto.PublicKey{ekPub}})
	args[2], args[4] = srv.URL, spec2
	if _, err := runCLI(t, append(args, "--enroll")...); err != nil {
		t.Fatalf("attest --enroll: %v", err)
	}
	tok, err := os.ReadFile(out)
	if err != nil || strings.Count(string(tok), ".") != 2 {
		t.Fatalf("no token written: %v", err)
	}
}

// TestBuildEnroller: --ek-allowlist and --ek-roots turn enrollment on; alone,
// --ek-intermediates is refused.
func TestBuildEnroller(t *testing.T) {
	dir := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pinFile := filepath.Join(dir, "ek.pem")
	os.WriteFile(pinFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	root := filepath.Join(testenv.ModuleDir(t, "github.com/google/go-tpm-tools"), "server", "ca-certs", "tpm_ek_root_1.cer")
	m := memory.New()
	al, _ := evidence.NewStoredAllowlist(m)
	if e, err := buildEnroller(config.AKTrust{}, m, al); e != nil || err != nil {
		t.Fatalf("enrollment on without flags: %v %v", e, err)
	}
	for _, f := range []config.AKTrust{{EKAllowlist: pinFile}, {EKRoots: []string{root}}} {
		if e, err := buildEnroller(f, m, al); e == nil || err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
	}
	if _, err := buildEnroller(config.AKTrust{EKIntermediates: []string{root}}, m, al); err == nil {
		t.Fatal("--ek-intermediates alone accepted")
	}
	if _, err := buildEnroller(config.AKTrust{EKAllowlist: filepath.Join(dir, "missing")}, m, al); err == nil {
		t.Fatal("missing --ek-allowlist file accepted")
	}
}
