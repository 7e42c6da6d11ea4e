package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/config"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/refvalues"
)

// runPolicyCLI executes the passport CLI in-process and returns its stdout, stderr and error.
func runPolicyCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// TestPolicyLearnEval is the contract: learn from a real log, the same log is affirmed (exit
// 0), another machine's log is refused with the failed rules and reasons printed.
func TestPolicyLearnEval(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	good := testenv.EventLogPath(t, testenv.DefaultLog)
	out, stderr, err := runPolicyCLI(t, "policy", "learn", "--event-log", good, "--out", pol)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote "+pol) || !strings.Contains(stderr, "Secure Boot off") {
		t.Errorf("learn output: %q %q", out, stderr)
	}
	out, _, err = runPolicyCLI(t, "policy", "eval", "--policy", pol, "--event-log", good)
	if err != nil || !strings.Contains(out, "status    affirming") || !strings.Contains(out, "affirmed:") {
		t.Fatalf("eval of the learned machine: %v\n%s", err, out)
	}
	out, _, err = runPolicyCLI(t, "policy", "eval", "--policy", pol, "--event-log", testenv.EventLogPath(t, "rhel8-uefi.bin"))
	if !errors.Is(err, errNotAffirmed) {
		t.Fatalf("eval of another machine: %v", err)
	}
	for _, want := range []string{"status    contraindicated", "refused by 12 rules", "- kernel [executables=96]: the kernel is not one the known-good machine booted (seen: boot.kernel = \"",
		"- bootloaders [executables=96]", "- kernel-cmdline [configuration=96]", "no claim made by 2 rules"} {
		if !strings.Contains(out, want) {
			t.Errorf("eval output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runPolicyCLI(t, "policy", "eval", "--json", "--policy", pol, "--event-log", testenv.EventLogPath(t, "rhel8-uefi.bin"))
	var j appraisalJSON
	if !errors.Is(err, errNotAffirmed) || json.Unmarshal([]byte(out), &j) != nil || j.Status.String() != "contraindicated" || len(j.Failures) != 14 {
		t.Fatalf("eval --json: %v %+v\n%s", err, j, out)
	}
	out, _, err = runPolicyCLI(t, "policy", "check", "--policy", pol)
	if err != nil || !strings.Contains(out, "policy id sha256:") || !strings.Contains(out, "kernels 1") {
		t.Fatalf("check: %v %s", err, out)
	}
	// A reference-values file that revokes the kernel refuses the learned machine.
	f, err := policy.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	refs := filepath.Join(dir, "refs.yaml")
	if _, _, err := refvalues.NewFile(refs).Revoke(context.Background(), refvalues.Revocation{Digest: f.ReferenceValues["kernels"][0], Reason: "CVE-X", RevokedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	out, _, err = runPolicyCLI(t, "policy", "eval", "--policy", pol, "--reference-values", refs, "--event-log", good)
	if !errors.Is(err, errNotAffirmed) || !strings.Contains(out, policy.RevokedRule) || !strings.Contains(out, "CVE-X") {
		t.Fatalf("eval with a revoked kernel: %v\n%s", err, out)
	}
}

// TestPolicyLearnAttestation learns from a real GCE attestation file.
func TestPolicyLearnAttestation(t *testing.T) {
	att := filepath.Join(testenv.ModuleDir(t, "github.com/google/go-tpm-tools"), "internal/test/attestations/gce-cos-85-nonce9009.pb")
	pol := filepath.Join(t.TempDir(), "p.yaml")
	if _, _, err := runPolicyCLI(t, "policy", "learn", "--attestation", att, "--out", pol); err != nil {
		t.Fatal(err)
	}
	out, _, err := runPolicyCLI(t, "policy", "eval", "--policy", pol, "--attestation", att)
	if err != nil || !strings.Contains(out, "status    affirming") {
		t.Fatalf("%v\n%s", err, out)
	}
	// The attestation has a quote: its AK is not trusted offline, but it is not "no quote".
	if strings.Contains(out, "no quote") || !strings.Contains(out, "signed the quote but is not trusted") {
		t.Errorf("AK rules explained wrongly:\n%s", out)
	}
	b, _ := os.ReadFile(pol)
	if !strings.Contains(string(b), "name: secure-boot") {
		t.Error("the GCE machine booted with Secure Boot but the policy does not require it")
	}
	if _, _, err := runPolicyCLI(t, "policy", "eval", "--policy", pol, "--event-log", testenv.EventLogPath(t, "cos-101-amd-sev.bin")); !errors.Is(err, errNotAffirmed) {
		t.Fatalf("another COS machine: %v", err)
	}
}

// TestPolicyCLIRefusals: bad inputs are errors, not verdicts.
func TestPolicyCLIRefusals(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nrules:\n  - {name: k, claim: executables, expr: 'boot.kernel ==', on_failure: 96}\n"), 0o600)
	for _, args := range [][]string{
		{"policy", "eval", "--policy", bad, "--event-log", testenv.EventLogPath(t, testenv.DefaultLog)},
		{"policy", "check", "--policy", bad},
		{"policy", "learn", "--event-log", testenv.EventLogPath(t, "debian-10.bin"), "--out", filepath.Join(dir, "x.yaml")},
		{"policy", "learn", "--out", filepath.Join(dir, "x.yaml")},
		{"policy", "eval", "--policy", bad},
	} {
		_, _, err := runPolicyCLI(t, args...)
		if err == nil || errors.Is(err, errNotAffirmed) {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, _, err := runPolicyCLI(t, "policy", "check", "--policy", bad); err == nil || !strings.Contains(err.Error(), `rule "k"`) {
		t.Errorf("check error does not name the rule: %v", err)
	}
}

// TestPolicyRevokeValueCLI drives revoke-value, list-revoked and reinstate-value against an
// issuer's admin API.
func TestPolicyRevokeValueCLI(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	if _, _, err := runPolicyCLI(t, "policy", "learn", "--event-log", testenv.EventLogPath(t, testenv.DefaultLog), "--out", pol); err != nil {
		t.Fatal(err)
	}
	eng, err := policy.NewEngine(context.Background(), pol, policy.EngineOptions{Log: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.Issuer(t, testenv.IssuerOptions{Policy: eng})
	cred := filepath.Join(dir, "cred")
	os.WriteFile(cred, []byte("0123456789abcdef-cli-credential\n"), 0o600)
	auth, err := issuer.LoadAdminCredential(cred)
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(srv.Issuer.AdminHandler(auth))
	defer admin.Close()
	kernel := eng.Current().Program().File().ReferenceValues["kernels"][0]
	out, _, err := runPolicyCLI(t, "policy", "revoke-value", "--admin", admin.URL, "--credential", cred, "--reason", "CVE-2026-7", kernel)
	var rr api.RevokeReferenceValueResponse
	if err != nil || json.Unmarshal([]byte(out), &rr) != nil || !rr.Created || rr.Revocation.Reason != "CVE-2026-7" {
		t.Fatalf("revoke-value: %v %s", err, out)
	}
	out, _, err = runPolicyCLI(t, "policy", "list-revoked", "--admin", admin.URL, "--credential", cred)
	if err != nil || !strings.Contains(out, kernel) {
		t.Fatalf("list-revoked: %v %s", err, out)
	}
	if _, _, err := runPolicyCLI(t, "policy", "revoke-value", "--admin", admin.URL, "--credential", cred, "nothex"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("bad digest: %v", err)
	}
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("wrong-credential-000000000"), 0o600)
	if _, _, err := runPolicyCLI(t, "policy", "list-revoked", "--admin", admin.URL, "--credential", wrong); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong credential: %v", err)
	}
	if _, _, err := runPolicyCLI(t, "policy", "reinstate-value", "--admin", admin.URL, "--credential", cred, kernel); err != nil {
		t.Fatal(err)
	}
	if l, _ := eng.ListRevokedReferenceValues(context.Background()); len(l) != 0 {
		t.Fatalf("still revoked: %+v", l)
	}
}

// TestServePolicyReloadOnSIGHUP: serve's policy engine reloads on SIGHUP (polling off), keeps
// the running policy when the new file is bad, and serve refuses to start with a bad policy.
func TestServePolicyReloadOnSIGHUP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	if _, _, err := runPolicyCLI(t, "policy", "learn", "--event-log", testenv.EventLogPath(t, testenv.DefaultLog), "--out", pol); err != nil {
		t.Fatal(err)
	}
	eng, closeRefs, err := startPolicyEngine(ctx, sf(config.Serve{Policy: pol, ReferenceValues: filepath.Join(dir, "refs.yaml")}))
	if err != nil {
		t.Fatal(err)
	}
	defer closeRefs()
	id0 := eng.PolicyID()
	b, _ := os.ReadFile(pol)
	sighupUntil := func(cond func() bool) bool {
		for range 50 {
			if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			if cond() {
				return true
			}
		}
		return false
	}
	os.WriteFile(pol, []byte(strings.Replace(string(b), "expr: boot.kernel in refs.kernels", "expr: boot.kernel in refs.kernels +", 1)), 0o644)
	sighupUntil(func() bool { return false })
	if eng.PolicyID() != id0 {
		t.Fatal("a bad policy replaced the running one")
	}
	os.WriteFile(pol, []byte(strings.Replace(string(b), "name: ubuntu-2104-no-dbx", "name: renamed", 1)), 0o644)
	if !sighupUntil(func() bool { return eng.PolicyID() != id0 }) {
		t.Fatal("SIGHUP did not reload the policy")
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nrules:\n  - {name: k, claim: executables, expr: '1', on_failure: 96}\n"), 0o600)
	if _, _, err := startPolicyEngine(ctx, sf(config.Serve{Policy: bad})); err == nil || !strings.Contains(err.Error(), "must be a bool") {
		t.Fatalf("bad policy at start: %v", err)
	}
	if _, _, err := startPolicyEngine(ctx, sf(config.Serve{Policy: pol, ReferenceValues: "redis"})); err == nil {
		t.Fatal("--reference-values redis without --redis accepted")
	}
}
