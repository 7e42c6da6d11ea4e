package policy_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/eventlog"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/token"
)

// bareState is the State of one of go-tpm-tools' real logs, without a quote.
func bareState(t testing.TB, log []byte) *evidence.State {
	t.Helper()
	st, err := evidence.FromEventLog(log)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func learn(t testing.TB, st *evidence.State) *policy.File {
	t.Helper()
	f, _, err := policy.Learn(st, policy.LearnOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustNew(t testing.TB, f *policy.File, snap *refvalues.Snapshot) *policy.Policy {
	t.Helper()
	p, err := policy.New(f, snap)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// failed returns the names of the failed rules whose value is not neutral.
func failed(a *policy.Appraisal) []string {
	var out []string
	for _, f := range a.Failures {
		if token.TierOf(f.Value) != token.TierNone {
			out = append(out, f.Rule)
		}
	}
	return out
}

func failure(a *policy.Appraisal, rule string) *policy.Failure {
	for i := range a.Failures {
		if a.Failures[i].Rule == rule {
			return &a.Failures[i]
		}
	}
	return nil
}

// TestLearnedAcceptsRealLogs: every real log that the issuer can appraise, learned and then
// evaluated against its own policy, is affirmed and matches its reference values; the learned
// policy round-trips through YAML.
func TestLearnedAcceptsRealLogs(t *testing.T) {
	n := 0
	for _, l := range testenv.RealLogs(t) {
		st, err := evidence.FromEventLog(l.Data)
		if err != nil {
			continue // refused logs: see docs/EVENTLOGS.md
		}
		n++
		t.Run(l.Name, func(t *testing.T) {
			f := learn(t, st)
			y, err := f.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			f2, err := policy.Parse(y)
			if err != nil {
				t.Fatalf("learned policy does not parse back: %v\n%s", err, y)
			}
			a := mustNew(t, f2, nil).Appraise(st)
			if a.Status != token.TierAffirming || len(failed(a)) != 0 {
				t.Fatalf("learned machine not affirmed: %v %+v", a.Status, a.Failures)
			}
			if len(a.ReferenceValues) == 0 {
				t.Error("no reference values matched")
			}
			if a.Vector[token.ClaimExecutables] != token.ValueApprovedBoot {
				t.Errorf("executables = %d, want approved boot", a.Vector[token.ClaimExecutables])
			}
		})
	}
	if n < 10 {
		t.Fatalf("only %d real logs could be learned", n)
	}
}

// TestOtherMachinesRefused: the policy learned from one real machine refuses every other real
// machine, each refusal naming at least one rule.
func TestOtherMachinesRefused(t *testing.T) {
	p := mustNew(t, learn(t, bareState(t, testenv.EventLog(t, testenv.DefaultLog))), nil)
	for _, name := range []string{"rhel8-uefi.bin", "ubuntu-2104-no-secure-boot.bin", "cos-101-amd-sev.bin", "ubuntu-2404-amd-sevsnp.bin"} {
		a := p.Appraise(bareState(t, testenv.EventLog(t, name)))
		if a.Status != token.TierContraindicated || len(failed(a)) == 0 {
			t.Errorf("%s: %v %v", name, a.Status, failed(a))
		}
	}
}

// withChangedDigest returns log with the SHA-256 digest of the first raw event matching pick
// changed in one byte (and that event's new digest). The log stays well formed: a bare log is
// replayed, so its PCRs follow the change, as a real machine's quote would.
func withChangedDigest(t *testing.T, log []byte, pick func(pcr, typ uint32, data []byte) bool) ([]byte, string) {
	t.Helper()
	for _, e := range bareState(t, log).Machine.GetRawEvents() {
		if !pick(e.GetPcrIndex(), e.GetUntrustedType(), e.GetData()) {
			continue
		}
		i := bytes.Index(log, e.GetDigest())
		if i < 0 || bytes.Count(log, e.GetDigest()) != 1 {
			t.Fatalf("digest %x not unique in the log", e.GetDigest())
		}
		out := bytes.Clone(log)
		out[i+31] ^= 0x5a
		return out, hex.EncodeToString(out[i : i+32])
	}
	t.Fatal("no event matched")
	return nil, ""
}

func isKernel(pcr, typ uint32, data []byte) bool {
	return pcr == 9 && typ == uint32(tcg.Ipl) && bytes.HasPrefix(data, []byte("/boot/vmlinuz"))
}

func isGRUBApp(pcr, typ uint32, data []byte) bool {
	return pcr == 4 && typ == uint32(tcg.EFIBootServicesApplication) && bytes.Contains(data, []byte("g\x00r\x00u\x00b\x00"))
}

// TestChangedKernelRefused: the known-good log with one changed kernel digest is refused by
// the kernel rule, whose reason shows the unknown digest, by the grub-files rule and by the
// pinned PCR 9.
func TestChangedKernelRefused(t *testing.T) {
	log := testenv.EventLog(t, testenv.DefaultLog)
	p := mustNew(t, learn(t, bareState(t, log)), nil)
	bad, digest := withChangedDigest(t, log, isKernel)
	a := p.Appraise(bareState(t, bad))
	if a.Status != token.TierContraindicated {
		t.Fatalf("status %v, want contraindicated", a.Status)
	}
	if got := failed(a); !slices.Equal(got, []string{"kernel", "grub-files", "pcr9"}) {
		t.Fatalf("failed rules %v, want exactly [kernel grub-files pcr9]", got)
	}
	f := failure(a, "kernel")
	if !strings.Contains(f.Reason, digest) || !strings.Contains(f.Reason, "not one the known-good machine booted") || f.Claim != token.ClaimExecutables {
		t.Errorf("reason does not show the kernel: %+v", f)
	}
	if a.Vector[token.ClaimExecutables] != token.ValueContraindicated {
		t.Errorf("executables = %d", a.Vector[token.ClaimExecutables])
	}
}

// TestChangedBootloaderRefused: one changed GRUB (EFI application) digest is refused by the
// bootloaders and efi-apps rules and by PCR 4.
func TestChangedBootloaderRefused(t *testing.T) {
	log := testenv.EventLog(t, testenv.DefaultLog)
	p := mustNew(t, learn(t, bareState(t, log)), nil)
	bad, digest := withChangedDigest(t, log, isGRUBApp)
	a := p.Appraise(bareState(t, bad))
	if got := failed(a); a.Status != token.TierContraindicated || !slices.Equal(got, []string{"bootloaders", "efi-apps", "pcr4"}) {
		t.Fatalf("%v %v, want contraindicated by [bootloaders efi-apps pcr4]", a.Status, got)
	}
	if f := failure(a, "bootloaders"); !strings.Contains(f.Reason, digest) {
		t.Errorf("bootloaders reason does not show the unknown digest: %s", f.Reason)
	}
}

// TestRevokedValueRefused: revoking the known-good kernel refuses the very machine the policy
// was learned from, through the built-in rule (naming where the value appears and why) and the
// kernel rule (the value left its set); reinstating it accepts the machine again.
func TestRevokedValueRefused(t *testing.T) {
	st := bareState(t, testenv.EventLog(t, testenv.DefaultLog))
	f := learn(t, st)
	kernel := f.ReferenceValues["kernels"][0]
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	snap := &refvalues.Snapshot{Revoked: map[string]refvalues.Revocation{kernel: {Digest: kernel, Reason: "CVE-2026-1234", RevokedAt: at}}}
	p := mustNew(t, f, snap)
	a := p.Appraise(st)
	if got := failed(a); a.Status != token.TierContraindicated || !slices.Equal(got, []string{policy.RevokedRule, "kernel", "grub-files"}) {
		t.Fatalf("%v %v, want contraindicated by [%s kernel grub-files]", a.Status, got, policy.RevokedRule)
	}
	r := failure(a, policy.RevokedRule)
	// The event's position in the log, numbered as tpm2_eventlog and the eventlog package do
	// (Spec ID Event = 0), not among go-tpm-tools' verified events (100).
	for _, want := range []string{kernel, "CVE-2026-1234", "event 101 (PCR 9, EV_IPL)"} {
		if !strings.Contains(r.Reason, want) {
			t.Errorf("revocation reason lacks %q: %s", want, r.Reason)
		}
	}
	if !a.RecordMeasured || !slices.Contains(policy.Measured(st), kernel) {
		t.Error("the revoked kernel the evidence measured is not recorded")
	}
	if got := p.Revoked(); len(got) != 1 || got[0].Digest != kernel {
		t.Errorf("Revoked() = %+v", got)
	}
	// Revoking another measured file (GRUB's grub.cfg, which only refs.grub_files holds) is
	// refused too.
	var cfg string
	for _, e := range st.Machine.GetRawEvents() {
		if e.GetPcrIndex() == 9 && bytes.Contains(e.GetData(), []byte("grub.cfg")) {
			cfg = hex.EncodeToString(e.GetDigest())
			break
		}
	}
	a = mustNew(t, f, &refvalues.Snapshot{Revoked: map[string]refvalues.Revocation{cfg: {Digest: cfg, RevokedAt: at}}}).Appraise(st)
	if got := failed(a); !slices.Equal(got, []string{policy.RevokedRule, "grub-files"}) {
		t.Fatalf("revoked grub.cfg digest: failed %v", got)
	}
	parsed, err := eventlog.Parse(testenv.EventLog(t, testenv.DefaultLog))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range parsed.Events {
		if hex.EncodeToString(e.Digests[eventlog.SHA256]) == cfg {
			if want := fmt.Sprintf("event %d (PCR 9, EV_IPL)", e.Seq); !strings.Contains(failure(a, policy.RevokedRule).Reason, want) {
				t.Errorf("grub.cfg revocation does not say %q: %s", want, failure(a, policy.RevokedRule).Reason)
			}
			break
		}
	}
	// Without the revocation the same machine is affirmed.
	if a := mustNew(t, f, nil).Appraise(st); a.Status != token.TierAffirming || !slices.Contains(a.ReferenceValues, kernel) {
		t.Fatalf("unrevoked: %v %v", a.Status, a.ReferenceValues)
	}
	// The file's own revoked list works the same way.
	f.Revoked = []refvalues.Revocation{{Digest: strings.ToUpper(kernel), Reason: "in the file"}}
	if a := mustNew(t, f, nil).Appraise(st); a.Status != token.TierContraindicated || failure(a, policy.RevokedRule) == nil {
		t.Fatalf("file revocation: %v %v", a.Status, failed(a))
	}
}

// TestBadPoliciesRefused: each bad policy is refused at load with the rule's name and the cause
// (cel-go's message for CEL errors).
func TestBadPoliciesRefused(t *testing.T) {
	const head = "version: 1\nreference_values: {kernels: [" + `"` + "38c6396eb70b84aef13f06384a37b7e7bfa77a14e3bde632a76c90acb65c1d97" + `"` + "]}\nrules:\n"
	rule := func(body string) string { return head + "  - name: r1\n" + body }
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"syntax error", rule("    claim: executables\n    expr: 'boot.kernel in refs.kernels &&'\n    on_failure: contraindicated\n"),
			[]string{`rule "r1"`, "expr", "Syntax error"}},
		{"type error", rule("    claim: executables\n    expr: 'boot.kernel + 1 == 2'\n    on_failure: contraindicated\n"),
			[]string{`rule "r1"`, "expr", "no matching overload"}},
		{"unknown field", rule("    claim: executables\n    expr: 'boot.kernal == \"\"'\n    on_failure: contraindicated\n"),
			[]string{`rule "r1"`, "kernal"}},
		{"not a bool", rule("    claim: executables\n    expr: boot.kernel\n    on_failure: contraindicated\n"),
			[]string{`rule "r1"`, "must be a bool"}},
		{"unknown claim", rule("    claim: kernels\n    expr: 'true'\n    on_failure: contraindicated\n"),
			[]string{`rule "r1"`, "claim", `unknown claim "kernels"`}},
		{"bad value name", rule("    claim: executables\n    expr: 'true'\n    on_failure: terrible\n"),
			[]string{"terrible"}},
		{"value out of range", rule("    claim: executables\n    expr: 'true'\n    on_failure: 200\n"),
			[]string{"200"}},
		{"affirming failure", rule("    claim: executables\n    expr: 'true'\n    on_failure: affirming\n"),
			[]string{`rule "r1"`, "on_failure", "affirming tier"}},
		{"warning success", rule("    claim: executables\n    expr: 'true'\n    on_failure: contraindicated\n    on_success: 33\n"),
			[]string{`rule "r1"`, "on_success"}},
		{"undeclared set", rule("    claim: executables\n    expr: boot.kernel in refs.kernelz\n    on_failure: contraindicated\n"),
			[]string{`rule "r1"`, `"kernelz" is not declared`}},
		{"bad explain", rule("    claim: executables\n    expr: 'true'\n    on_failure: contraindicated\n    explain: 'boot.'\n"),
			[]string{`rule "r1"`, "explain"}},
		{"duplicate rule", head + "  - {name: a, claim: hardware, expr: 'true', on_failure: 96}\n  - {name: a, claim: hardware, expr: 'true', on_failure: 96}\n",
			[]string{`rule "a"`, "duplicate"}},
		{"reserved rule", head + "  - {name: " + policy.RevokedRule + ", claim: hardware, expr: 'true', on_failure: 96}\n",
			[]string{"reserved"}},
		{"bad digest", "version: 1\nreference_values: {kernels: [abc]}\nrules: []\n", []string{"reference_values.kernels", "digest"}},
		{"bad set name", "version: 1\nreference_values: {Kernels: []}\nrules: []\n", []string{"set name"}},
		{"unknown top-level field", "version: 1\nrulez: []\n", []string{"rulez"}},
		{"wrong version", "version: 2\nrules: []\n", []string{"version"}},
		{"missing expr", head + "  - {name: a, claim: hardware, on_failure: 96}\n", []string{`rule "a"`, "expr"}},
		{"empty", "", []string{"empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := policy.Parse([]byte(tc.yaml))
			if err == nil {
				_, err = policy.Compile(f)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, policy.ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestRuleEvaluationErrorFails: a rule that cannot be evaluated (a PCR missing from the
// evidence, an event type the log lacks) fails closed and says why.
func TestRuleEvaluationErrorFails(t *testing.T) {
	f, err := policy.Parse([]byte(`version: 1
rules:
  - {name: pcr23, claim: configuration, expr: 'pcrs.sha256["23"] == ""', on_failure: contraindicated}
  - {name: no-such-event, claim: configuration, expr: 'size(boot.events["EV_COMPACT_HASH"]) == 0', on_failure: unsafe}
  - {name: ok, claim: executables, expr: 'size(boot.events["EV_SEPARATOR"]) > 0', on_failure: contraindicated, on_success: approved_boot}
`))
	if err != nil {
		t.Fatal(err)
	}
	a := mustNew(t, f, nil).Appraise(bareState(t, testenv.EventLog(t, testenv.DefaultLog)))
	if got := failed(a); !slices.Equal(got, []string{"pcr23", "no-such-event"}) || a.Status != token.TierContraindicated {
		t.Fatalf("%v %v", a.Status, got)
	}
	if r := failure(a, "pcr23").Reason; !strings.Contains(r, "could not be evaluated") || !strings.Contains(r, "23") {
		t.Errorf("reason: %s", r)
	}
	if a.Vector[token.ClaimExecutables] != token.ValueApprovedBoot || a.Vector[token.ClaimConfiguration] != token.ValueContraindicated {
		t.Errorf("vector %v", a.Vector)
	}
}

// TestPolicyID: the ID is a digest of the rules and the reference values: stable across
// formatting, and changed by a rule, a reference value or a revocation.
func TestPolicyID(t *testing.T) {
	st := bareState(t, testenv.EventLog(t, testenv.DefaultLog))
	f := learn(t, st)
	base := mustNew(t, f, nil).ID()
	if !strings.HasPrefix(base, "sha256:") || len(base) != len("sha256:")+64 {
		t.Fatalf("ID %q", base)
	}
	y, _ := f.Marshal()
	f2, err := policy.Parse(append([]byte("# a comment\n"), y...))
	if err != nil {
		t.Fatal(err)
	}
	if id := mustNew(t, f2, nil).ID(); id != base {
		t.Error("a comment changed the ID")
	}
	f2.Rules[0].Message = "changed"
	if mustNew(t, f2, nil).ID() == base {
		t.Error("a rule change kept the ID")
	}
	extra := &refvalues.Snapshot{Sets: map[string][]string{"kernels": {strings.Repeat("ab", 32)}}}
	if mustNew(t, f, extra).ID() == base {
		t.Error("a new reference value kept the ID")
	}
	k := f.ReferenceValues["kernels"][0]
	rev := &refvalues.Snapshot{Revoked: map[string]refvalues.Revocation{k: {Digest: k, RevokedAt: time.Now()}}}
	if mustNew(t, f, rev).ID() == base {
		t.Error("a revocation kept the ID")
	}
	if a := mustNew(t, f, nil).Appraise(st); a.PolicyID != base {
		t.Errorf("appraisal PolicyID %q, want %q", a.PolicyID, base)
	}
}

// TestStarterPolicyMigrated: a starter policy (issue 2's format) migrated by FromReference
// reaches the same status and vector as the starter Reference on real states.
func TestStarterPolicyMigrated(t *testing.T) {
	st := bareState(t, testenv.EventLog(t, testenv.DefaultLog))
	other := bareState(t, testenv.EventLog(t, "rhel8-uefi.bin"))
	pcr7 := hex.EncodeToString(st.PCRs[7])
	for _, r := range []*policy.Reference{
		{},
		{SecureBoot: true},
		{PCRs: map[string][]string{"7": {pcr7}}},
		{SecureBoot: true, PCRs: map[string][]string{"7": {pcr7}, "4": {hex.EncodeToString(st.PCRs[4])}}},
	} {
		mig := mustNew(t, policy.FromReference(r), nil)
		for _, s := range []*evidence.State{st, other} {
			for _, trust := range []evidence.TrustMethod{evidence.TrustAny, evidence.TrustAllowlist} {
				s2 := *s
				s2.AKTrust = trust
				want, got := r.Appraise(&s2), mig.Appraise(&s2)
				if want.Status != got.Status {
					t.Fatalf("%+v on %v: starter %v %v, migrated %v %v", r, trust, want.Status, want.Vector, got.Status, got.Vector)
				}
				// "No claim" (0) is the same whether written or absent.
				for _, k := range policy.Claims {
					if want.Vector[k] != got.Vector[k] {
						t.Fatalf("%+v on %v: claim %s starter %d migrated %d", r, trust, k, want.Vector[k], got.Vector[k])
					}
				}
				if len(want.Failures) != len(failed(got)) {
					t.Fatalf("%+v on %v: starter failures %+v, migrated %v", r, trust, want.Failures, failed(got))
				}
			}
		}
	}
}

// TestKernelSwapRefused is the kernel-swap attack: the real kernel's PCR 9 event is renamed
// (event names are not covered by the quote) and carries an unknown digest, and an event with
// the known-good kernel's digest and name is appended. The name-based kernel rule is fooled
// (boot.kernel is the good digest), but the learned policy refuses the log through the rules
// that do not trust names: every GRUB file in refs.grub_files, and the pinned PCR 9.
func TestKernelSwapRefused(t *testing.T) {
	log := testenv.EventLog(t, testenv.DefaultLog)
	f := learn(t, bareState(t, log))
	p := mustNew(t, f, nil)
	bad, digest, err := logforge.KernelSwap(log)
	if err != nil {
		t.Fatal(err)
	}
	a := p.Appraise(bareState(t, bad))
	if got := failed(a); a.Status != token.TierContraindicated || !slices.Equal(got, []string{"grub-files", "pcr9"}) {
		t.Fatalf("%v %v, want contraindicated by [grub-files pcr9]", a.Status, got)
	}
	if r := failure(a, "grub-files").Reason; !strings.Contains(r, hex.EncodeToString(digest)) {
		t.Errorf("grub-files reason does not show the swapped kernel: %s", r)
	}
	if a.Vector[token.ClaimExecutables] != token.ValueContraindicated {
		t.Errorf("executables = %d", a.Vector[token.ClaimExecutables])
	}
}
