package issuer_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/store/memory"
	"github.com/passport-attest/passport/token"
)

// learnedEngine learns a policy from the real log (bare), writes it and loads a policy engine.
func learnedEngine(t *testing.T, log []byte) (*policy.Engine, *policy.File) {
	t.Helper()
	st, err := evidence.FromEventLog(log)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := policy.Learn(st, policy.LearnOptions{Name: "issuer-test"})
	if err != nil {
		t.Fatal(err)
	}
	y, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, y, 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := policy.NewEngine(context.Background(), path, policy.EngineOptions{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return e, f
}

func verifiedClaims(t *testing.T, srv *testenv.Server, raw string) *token.Claims {
	t.Helper()
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: srv.URL, Audience: "test", KeySet: relyingparty.NewStaticKeySet(srv.Keyring.PublicSet())})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const refAdminCredential = "0123456789abcdef-refvalues-admin"

// adminCall sends one admin request with the credential and decodes a JSON answer into out.
func refAdminCall(t *testing.T, base, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+refAdminCredential)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if out != nil && res.StatusCode < 300 {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return res.StatusCode
}

// description returns the issuer's error_description of a refusal.
func description(t *testing.T, err error) string {
	t.Helper()
	var he *attester.HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("%v is not an HTTP refusal", err)
	}
	return he.Err.Description
}

// TestRevokedReferenceValue: through the admin API, revoking the kernel a machine booted makes
// the issuer refuse that machine's next evidence (403 naming the rule and the digest), lists
// the revocation for token revocation, and reinstating it accepts the machine again. The token
// minted before carries the policy ID in force and the matched reference values, the kernel's
// among them.
func TestRevokedReferenceValue(t *testing.T) {
	ctx := context.Background()
	log := testenv.EventLog(t, testenv.DefaultLog)
	eng, f := learnedEngine(t, log)
	a := testenv.AttesterFor(t, log)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Policy: eng})
	auth, err := issuer.NewAdminAuth([]byte(refAdminCredential))
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(srv.Issuer.AdminHandler(auth))
	defer admin.Close()
	c := &attester.Client{IssuerURL: srv.URL}
	kernel := f.ReferenceValues["kernels"][0]

	res, err := c.Attest(ctx, a, "test")
	if err != nil {
		t.Fatal(err)
	}
	sub := verifiedClaims(t, srv, res.Token).Submods[token.SubmodTPM]
	if sub.Status != token.TierAffirming || sub.PolicyID != eng.PolicyID() || !slices.Contains(sub.Measurements.ReferenceValues, kernel) {
		t.Fatalf("token: status %v, policy %q (in force %q), reference values %v", sub.Status, sub.PolicyID, eng.PolicyID(), sub.Measurements.ReferenceValues)
	}
	if sub.Vector[token.ClaimHardware] != token.ValueAffirming || sub.Vector[token.ClaimExecutables] != token.ValueApprovedBoot {
		t.Errorf("vector %v", sub.Vector)
	}

	var rr api.RevokeReferenceValueResponse
	if st := refAdminCall(t, admin.URL, http.MethodPost, api.PathReferenceValueRevocations,
		api.RevokeReferenceValueRequest{Digest: kernel, Reason: "CVE-2026-4242"}, &rr); st != http.StatusCreated || !rr.Created || rr.Revocation.Digest != kernel || rr.PolicyID != eng.PolicyID() {
		t.Fatalf("revoke: %d %+v", st, rr)
	}
	if rr.PolicyID == sub.PolicyID {
		t.Error("the policy ID did not change with the revocation")
	}
	if st := refAdminCall(t, admin.URL, http.MethodPost, api.PathReferenceValueRevocations,
		api.RevokeReferenceValueRequest{Digest: kernel, Reason: "again"}, &rr); st != http.StatusOK || rr.Created || rr.Revocation.Reason != "CVE-2026-4242" {
		t.Fatalf("second revoke: %d %+v", st, rr)
	}

	// The token issued before the revocation is revoked too (its status list bit).
	if err := statusOf(t, srv, res.Token); !errors.Is(err, relyingparty.ErrRevoked) {
		t.Fatalf("token issued before the configuration revocation: status %v, want revoked", err)
	}

	_, err = c.Attest(ctx, a, "test")
	st, codeStr := code(t, err)
	if st != http.StatusForbidden || codeStr != "policy_refused" {
		t.Fatalf("after revocation: %d %s", st, codeStr)
	}
	desc := description(t, err)
	for _, want := range []string{policy.RevokedRule, "event 101 (PCR 9, EV_IPL)", kernel, "CVE-2026-4242", "kernel: the kernel is not one"} {
		if !strings.Contains(desc, want) {
			t.Errorf("refusal lacks %q: %s", want, desc)
		}
	}

	var list api.ReferenceValueRevocationList
	if st := refAdminCall(t, admin.URL, http.MethodGet, api.PathReferenceValueRevocations, nil, &list); st != http.StatusOK ||
		len(list.Revocations) != 1 || list.Revocations[0].Digest != kernel || list.Revocations[0].RevokedAt.IsZero() {
		t.Fatalf("list: %d %+v", st, list)
	}
	if l, err := srv.Issuer.ListRevokedReferenceValues(ctx); err != nil || len(l) != 1 || l[0].Digest != kernel {
		t.Fatalf("ListRevokedReferenceValues = %+v, %v", l, err)
	}

	if st := refAdminCall(t, admin.URL, http.MethodPost, api.PathReferenceValueRevocations, api.RevokeReferenceValueRequest{Digest: "not-a-digest"}, nil); st != http.StatusBadRequest {
		t.Errorf("bad digest: %d", st)
	}
	req, _ := http.NewRequest(http.MethodPost, admin.URL+api.PathReferenceValueRevocations, strings.NewReader(`{"digest":"`+kernel+`"}`))
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("without credential: %v %v", res.StatusCode, err)
	}

	if st := refAdminCall(t, admin.URL, http.MethodDelete, api.PathReferenceValueRevocations+"/"+kernel, nil, nil); st != http.StatusNoContent {
		t.Fatalf("reinstate: %d", st)
	}
	if st := refAdminCall(t, admin.URL, http.MethodDelete, api.PathReferenceValueRevocations+"/"+kernel, nil, nil); st != http.StatusNotFound {
		t.Fatalf("second reinstate: %d", st)
	}
	if _, err := c.Attest(ctx, a, "test"); err != nil {
		t.Fatalf("after reinstatement: %v", err)
	}
}

// TestChangedKernelRefusedByIssuer: a machine whose log differs from the known-good one only
// in its kernel digest (replayed into the simulator, so the quote is genuine) is refused with
// 403 naming the kernel rule.
func TestChangedKernelRefusedByIssuer(t *testing.T) {
	log := testenv.EventLog(t, testenv.DefaultLog)
	eng, f := learnedEngine(t, log)
	st, err := evidence.FromEventLog(log)
	if err != nil {
		t.Fatal(err)
	}
	var bad []byte
	for _, e := range st.Machine.GetRawEvents() {
		if e.GetPcrIndex() == 9 && e.GetUntrustedType() == uint32(tcg.Ipl) && bytes.HasPrefix(e.GetData(), []byte("/boot/vmlinuz")) {
			i := bytes.Index(log, e.GetDigest())
			bad = bytes.Clone(log)
			bad[i] ^= 0xff
			break
		}
	}
	a := testenv.AttesterFor(t, bad)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Policy: eng})
	_, err = (&attester.Client{IssuerURL: srv.URL}).Attest(context.Background(), a, "test")
	status, c := code(t, err)
	desc := description(t, err)
	if status != http.StatusForbidden || c != "policy_refused" || !strings.Contains(desc, "kernel: the kernel is not one the known-good machine booted") {
		t.Fatalf("%d %s %s", status, c, desc)
	}
	if strings.Contains(desc, "bootloaders:") || strings.Contains(desc, "pcr4:") || strings.Contains(desc, f.ReferenceValues["kernels"][0]) {
		t.Errorf("refusal names more than the kernel: %s", desc)
	}
}

// TestReferenceValuesUnmanaged: with the starter policy the admin API says reference values
// are not managed (501) and the list is empty.
func TestReferenceValuesUnmanaged(t *testing.T) {
	srv := testenv.Issuer(t, testenv.IssuerOptions{})
	auth, _ := issuer.NewAdminAuth([]byte(refAdminCredential))
	admin := httptest.NewServer(srv.Issuer.AdminHandler(auth))
	defer admin.Close()
	if st := refAdminCall(t, admin.URL, http.MethodPost, api.PathReferenceValueRevocations, api.RevokeReferenceValueRequest{Digest: strings.Repeat("ab", 32)}, nil); st != http.StatusNotImplemented {
		t.Fatalf("POST: %d", st)
	}
	if l, err := srv.Issuer.ListRevokedReferenceValues(context.Background()); err != nil || len(l) != 0 {
		t.Fatalf("list: %v %v", l, err)
	}
}

// statusOf checks tok's status list entry at srv, as a relying party would.
func statusOf(t *testing.T, srv *testenv.Server, tok string) error {
	t.Helper()
	sc, err := relyingparty.NewStatusChecker(relyingparty.StatusConfig{Issuer: srv.URL, KeySet: relyingparty.NewStaticKeySet(srv.Keyring.PublicSet())})
	if err != nil {
		t.Fatal(err)
	}
	return sc.Check(context.Background(), verifiedClaims(t, srv, tok))
}

// TestRevokeByReferenceValueBlocksIt: passport revoke --reference-value (POST
// /admin/v1/revoke) revokes the live tokens whose evidence carried the value AND makes the
// policy refuse new evidence carrying it.
func TestRevokeByReferenceValueBlocksIt(t *testing.T) {
	ctx := context.Background()
	log := testenv.EventLog(t, testenv.DefaultLog)
	eng, f := learnedEngine(t, log)
	a := testenv.AttesterFor(t, log)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Policy: eng})
	auth, err := issuer.NewAdminAuth([]byte(refAdminCredential))
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(srv.Issuer.AdminHandler(auth))
	defer admin.Close()
	c := &attester.Client{IssuerURL: srv.URL}
	kernel := f.ReferenceValues["kernels"][0]
	res, err := c.Attest(ctx, a, "test")
	if err != nil {
		t.Fatal(err)
	}
	var rr api.RevokeResponse
	if st := refAdminCall(t, admin.URL, http.MethodPost, api.PathAdminRevoke, api.RevokeRequest{ReferenceValue: kernel}, &rr); st != http.StatusOK || rr.Count != 1 {
		t.Fatalf("revoke by reference value: %d %+v", st, rr)
	}
	if err := statusOf(t, srv, res.Token); !errors.Is(err, relyingparty.ErrRevoked) {
		t.Fatalf("live token: status %v, want revoked", err)
	}
	if _, err := c.Attest(ctx, a, "test"); err == nil {
		t.Fatal("new evidence carrying the revoked value was accepted")
	} else if st, codeStr := code(t, err); st != http.StatusForbidden || codeStr != "policy_refused" {
		t.Fatalf("new evidence: %d %s", st, codeStr)
	}
}

// TestKernelSwapRefusedByIssuer: the kernel-swap log (logforge.KernelSwap: the real kernel
// renamed with an unknown digest, the good kernel's digest appended under its name), replayed
// into the simulator so the quote is genuine, is refused (403) under the policy learned from
// the original log, by the rules that do not trust event names; no token is minted.
func TestKernelSwapRefusedByIssuer(t *testing.T) {
	log := testenv.EventLog(t, testenv.DefaultLog)
	eng, _ := learnedEngine(t, log)
	bad, _, err := logforge.KernelSwap(log)
	if err != nil {
		t.Fatal(err)
	}
	a := testenv.AttesterFor(t, bad)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Policy: eng})
	res, err := (&attester.Client{IssuerURL: srv.URL}).Attest(context.Background(), a, "test")
	if err == nil {
		t.Fatalf("kernel-swap log minted a token: %+v", verifiedClaims(t, srv, res.Token).Submods[token.SubmodTPM])
	}
	status, c := code(t, err)
	desc := description(t, err)
	if status != http.StatusForbidden || c != "policy_refused" || !strings.Contains(desc, "grub-files:") || !strings.Contains(desc, "pcr9:") {
		t.Fatalf("%d %s %s", status, c, desc)
	}
}

// TestRevokeByMeasuredDigest: tokens minted under a learned policy record every PCR 0-9 event
// digest, so revoke --reference-value finds them by a measurement no reference-value set lists
// (a GRUB command, vouched for through the pinned PCR 8).
func TestRevokeByMeasuredDigest(t *testing.T) {
	log := testenv.EventLog(t, testenv.DefaultLog)
	eng, f := learnedEngine(t, log)
	st, err := evidence.FromEventLog(log)
	if err != nil {
		t.Fatal(err)
	}
	var grubCmd string
	for _, e := range st.Machine.GetRawEvents() {
		if e.GetPcrIndex() == 8 && bytes.HasPrefix(e.GetData(), []byte("grub_cmd")) {
			grubCmd = hex.EncodeToString(e.GetDigest())
			break
		}
	}
	for name, vals := range f.ReferenceValues {
		if grubCmd == "" || slices.Contains(vals, grubCmd) {
			t.Fatalf("GRUB command digest %q is empty or in refs.%s", grubCmd, name)
		}
	}
	a := testenv.AttesterFor(t, log)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Policy: eng})
	c := &attester.Client{IssuerURL: srv.URL}
	toks := []string{attestOnce(t, c, a), attestOnce(t, c, a)}
	// The token itself stays small: it carries the matched reference values only; the
	// measured digests are recorded with its status entry.
	if rv := claimsOf(t, toks[0]).Submods[token.SubmodTPM].Measurements.ReferenceValues; slices.Contains(rv, grubCmd) {
		t.Fatalf("the token carries every measured digest (%d values), not only the matched reference values", len(rv))
	}
	t.Logf("token: %d bytes", len(toks[0]))
	if res := revoke(t, admin(t, srv.Issuer), api.RevokeRequest{ReferenceValue: grubCmd}); res.Count != 2 {
		t.Fatalf("revoking the GRUB command digest revoked %d tokens, want 2", res.Count)
	}
	v, _ := verifier(t, srv, nil)
	for i, tok := range toks {
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, relyingparty.ErrRevoked) {
			t.Errorf("token %d: Verify = %v, want ErrRevoked", i, err)
		}
	}
}

// TestRevocationReachesStaleReplica: two replicas share a status store; the operator revokes
// a reference value at one, while the other still appraises with a policy snapshot that does
// not know it (its store poll has not come round, or its appraisal began before). The stale
// replica's evidence passes its policy, but the store refuses the token's status entry
// atomically with the revocation: no valid token carrying the value is issued after it.
func TestRevocationReachesStaleReplica(t *testing.T) {
	ctx := context.Background()
	log := testenv.EventLog(t, testenv.DefaultLog)
	engA, f := learnedEngine(t, log)
	engB, _ := learnedEngine(t, log) // its own snapshot: never told of the revocation
	shared := memory.New()
	a := testenv.AttesterFor(t, log)
	opts := func(p *policy.Engine) testenv.IssuerOptions {
		return testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Policy: p, Nonces: shared, Clocks: shared}
	}
	srvA, srvB := testenv.Issuer(t, opts(engA)), testenv.Issuer(t, opts(engB))
	kernel := f.ReferenceValues["kernels"][0]
	before, err := (&attester.Client{IssuerURL: srvB.URL}).Attest(ctx, a, "test")
	if err != nil {
		t.Fatal(err)
	}
	if code, body := adminPost(t, admin(t, srvA.Issuer), api.PathReferenceValueRevocations, api.RevokeReferenceValueRequest{Digest: kernel, Reason: "CVE"}, adminCredential); code != http.StatusCreated {
		t.Fatalf("revoke-value at A: %d %s", code, body)
	}
	if slices.ContainsFunc(engB.Current().Revoked(), func(r refvalues.Revocation) bool { return r.Digest == kernel }) {
		t.Fatal("replica B already knows the revocation: the test proves nothing")
	}
	_, err = (&attester.Client{IssuerURL: srvB.URL}).Attest(ctx, a, "test")
	var he *attester.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Fatalf("attestation at the stale replica after the revocation: %v, want 403", err)
	}
	v, _ := verifier(t, srvB, nil)
	if _, err := v.Verify(ctx, before.Token); !errors.Is(err, relyingparty.ErrRevoked) {
		t.Fatalf("the token issued before the revocation: %v, want ErrRevoked", err)
	}
}
