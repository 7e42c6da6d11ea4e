package policy

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cel.dev/cel-go/common/types"
	pb "github.com/google/go-tpm-tools/proto/attest"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/token"
)

// slowAppraise is the reference Appraise: every rule through CEL on the whole input (every
// PCR, event type and list, digests encoded one by one, no native check, no cached field
// value), reference values and measured digests found by comparing decoded set values one by
// one and sorting. Policy.Appraise must return exactly what it returns.
func slowAppraise(p *Policy, s *evidence.State) *Appraisal {
	a := &Appraisal{PolicyID: p.id, Vector: token.TrustworthinessVector{}}
	accepted := func(raw []byte) int { // the first accepted value (in acceptedHex order) equal to raw
		for i, v := range p.acceptedHex {
			if b, err := hex.DecodeString(v); err == nil && bytes.Equal(b, raw) {
				return i
			}
		}
		return -1
	}
	revoked := map[string]refvalues.Revocation{}
	for _, r := range p.Revoked() {
		b, _ := hex.DecodeString(r.Digest)
		revoked[string(b)] = r
	}
	var matched []int
	var hits []revokedHit
	see := func(raw []byte) {
		if i := accepted(raw); i >= 0 && !slices.Contains(matched, i) {
			matched = append(matched, i)
		}
	}
	for _, idx := range s.LoggedPCRs {
		v, ok := s.PCRs[idx]
		if !ok {
			continue
		}
		see(v)
		if r, ok := revoked[string(v)]; ok {
			hits = append(hits, revokedHit{r: r, pcr: int(idx), event: -1, pcrValue: true})
		}
	}
	// Independently of the compiler's analysis: a rule that mentions refs, under a policy that
	// declares sets, reads reference values (the rules of these tests name refs only to read them).
	for _, r := range p.prog.file.Rules {
		a.RecordMeasured = a.RecordMeasured || (strings.Contains(r.Expr, "refs") && len(p.prog.file.ReferenceValues) > 0)
	}
	for i, e := range s.Machine.GetRawEvents() {
		see(e.GetDigest())
		if r, ok := revoked[string(e.GetDigest())]; ok {
			hits = append(hits, revokedHit{r: r, pcr: int(e.GetPcrIndex()), event: i, typ: e.GetUntrustedType()})
		}
	}
	slices.Sort(matched)
	for _, i := range matched {
		a.ReferenceValues = append(a.ReferenceValues, p.acceptedHex[i])
	}
	if len(hits) > 0 {
		var msgs []string
		for _, h := range hits {
			if h.event >= 0 {
				h.event = s.EventPosition(h.event)
			}
			msgs = append(msgs, h.String())
		}
		slices.Sort(msgs)
		combine(a.Vector, p.prog.revClaim, p.prog.revValue)
		a.Failures = append(a.Failures, Failure{Rule: RevokedRule, Claim: p.prog.revClaim, Value: p.prog.revValue,
			Reason: "the evidence contains a revoked reference value: " + strings.Join(slices.Compact(msgs), "; ")})
	}
	in := buildInput(s, allNeeds)
	defer in.release()
	in.tpm.cel, in.boot.cel = nil, nil // cel-go's own conversion at every read
	act := &activation{in: in, refs: p.refs}
	for _, r := range p.prog.rules {
		out, _, err := r.prg.Eval(act)
		if err == nil && out == types.True {
			if r.OnSuccess != nil {
				combine(a.Vector, r.Claim, int8(*r.OnSuccess))
			}
			continue
		}
		combine(a.Vector, r.Claim, int8(r.OnFailure))
		a.Failures = append(a.Failures, Failure{Rule: r.Name, Claim: r.Claim, Value: int8(r.OnFailure), Reason: p.reason(r, act, out, err)})
	}
	slices.SortStableFunc(a.Failures, func(x, y Failure) int { return listOrder(x.Value) - listOrder(y.Value) })
	return a.Finish()
}

// realLogStates parses every real log of go-tpm-tools' test data that evidence.FromEventLog
// accepts.
func realLogStates(t *testing.T) map[string]*evidence.State {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-tpm-tools").Output()
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "internal/test/eventlogs", "*.bin"))
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]*evidence.State{}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := evidence.FromEventLog(b); err == nil {
			states[filepath.Base(path)] = st
		}
	}
	if len(states) < 5 {
		t.Fatalf("only %d real logs parsed", len(states))
	}
	return states
}

// mutated returns a deep copy of s changed by change.
func mutated(s *evidence.State, change func(*evidence.State)) *evidence.State {
	c := *s
	c.PCRs = map[uint32][]byte{}
	for k, v := range s.PCRs {
		c.PCRs[k] = slices.Clone(v)
	}
	c.LoggedPCRs = slices.Clone(s.LoggedPCRs)
	c.Machine = proto.Clone(s.Machine).(*pb.MachineState)
	change(&c)
	return &c
}

// mutations are changed states that reach the corners of the fast paths: trusted and
// untrusted AKs, changed kernel, boot loader, firmware and PCR values, a PCR missing from
// the quote, another bank, no boot loader, firmware or GRUB events at all, duplicated digests, digests sharing their first byte (more than a
// counting-sort bucket holds) or their first 8 bytes, digests shorter than 8 bytes, a clock.
func mutations(s *evidence.State) map[string]*evidence.State {
	events := func(c *evidence.State) []*pb.Event { return c.Machine.GetRawEvents() }
	flip := func(pick func(e *pb.Event) bool) func(*evidence.State) {
		return func(c *evidence.State) {
			for _, e := range events(c) {
				if pick(e) {
					e.Digest[len(e.Digest)-1] ^= 1
				}
			}
		}
	}
	drop := func(pick func(e *pb.Event) bool) func(*evidence.State) {
		return func(c *evidence.State) {
			c.Machine.RawEvents = slices.DeleteFunc(c.Machine.GetRawEvents(), pick)
		}
	}
	out := map[string]*evidence.State{
		"as-is": s,
		"trusted-ak": mutated(s, func(c *evidence.State) {
			c.AKTrust, c.AKID, c.Clock.Clock = evidence.TrustAllowlist, "ak-0123", 12345
		}),
		"any-ak":      mutated(s, func(c *evidence.State) { c.AKTrust, c.AKID = "any", "ak-0123" }),
		"kernel":      mutated(s, flip(func(e *pb.Event) bool { return e.GetPcrIndex() == 9 })),
		"bootloaders": mutated(s, flip(func(e *pb.Event) bool { return e.GetPcrIndex() == 4 && e.GetUntrustedType() == evBSA })),
		"firmware":    mutated(s, flip(func(e *pb.Event) bool { return e.GetPcrIndex() == 0 })),
		"pcr7":        mutated(s, func(c *evidence.State) { c.PCRs[7][0] ^= 1 }),
		"no-pcr4":     mutated(s, func(c *evidence.State) { delete(c.PCRs, 4) }),
		"sha1-bank":   mutated(s, func(c *evidence.State) { c.Bank = "sha1" }),
		// Empty lists: the learned rules' size(...) > 0 guards must fail exactly as CEL's.
		"no-bootloaders": mutated(s, drop(func(e *pb.Event) bool { return e.GetPcrIndex() == 4 })),
		"no-firmware":    mutated(s, drop(func(e *pb.Event) bool { return e.GetPcrIndex() == 0 })),
		"no-grub":        mutated(s, drop(func(e *pb.Event) bool { return e.GetPcrIndex() == 8 || e.GetPcrIndex() == 9 })),
		"duplicates": mutated(s, func(c *evidence.State) {
			ev := events(c)
			for i := 1; i < len(ev); i += 3 {
				ev[i].Digest = slices.Clone(ev[i-1].Digest)
			}
		}),
		"same-first-byte": mutated(s, func(c *evidence.State) {
			for _, e := range events(c) {
				e.Digest[0] = 0x5a
			}
		}),
		"same-first-8-bytes": mutated(s, func(c *evidence.State) {
			for i, e := range events(c) {
				if i%2 == 0 {
					copy(e.Digest, "passport")
				}
			}
		}),
		"short-digests": mutated(s, func(c *evidence.State) {
			for i, e := range events(c) {
				if i%5 == 0 {
					e.Digest = e.Digest[:i%8]
				}
			}
		}),
	}
	return out
}

// extraRules are hand-written rules of every kind (CEL only, explained, erring), evaluated
// next to the learned ones.
var extraRules = []Rule{
	{Name: "pcrs-logged", Claim: token.ClaimConfiguration, Expr: "[0, 1, 2, 3, 4, 5, 6, 7].all(i, i in tpm.logged_pcrs)", OnFailure: Value(token.ValueContraindicated)},
	{Name: "cmdline", Claim: token.ClaimConfiguration, Expr: `!boot.kernel_cmdline.split(" ").exists(a, a in ["single", "emergency"])`, OnFailure: Value(token.ValueContraindicated)},
	{Name: "efi-apps-known", Claim: token.ClaimExecutables, Expr: "boot.efi_apps.all(d, d in refs.bootloaders || d in refs.kernels)", OnFailure: Value(token.ValueContraindicated)},
	{Name: "separators", Claim: token.ClaimConfiguration, Expr: `size(boot.events["EV_SEPARATOR"]) >= 7`, OnFailure: Value(token.ValueUnsafe)},
	{Name: "events", Claim: token.ClaimConfiguration, Expr: `boot.events.all(t, size(boot.events[t]) < 100)`, OnFailure: Value(token.ValueUnsafe)},
	{Name: "pcr-computed-key", Claim: token.ClaimConfiguration, Expr: `pcrs[tpm.bank]["0"] in refs.pcr0`, OnFailure: Value(token.ValueUnsafe)},
	{Name: "pcr-padded-key", Claim: token.ClaimConfiguration, Expr: `pcrs.sha256["07"] in refs.pcr7`, OnFailure: Value(token.ValueUnsafe)},
	{Name: "grub", Claim: token.ClaimConfiguration, Expr: `boot.grub_commands.all(c, c.size() < 1000)`, OnFailure: Value(token.ValueUnsafe),
		Explain: `"grub commands: " + string(size(boot.grub_commands))`},
	{Name: "kernel-file", Claim: token.ClaimExecutables, Expr: `boot.kernel == "" || boot.kernel in boot.grub_files`, OnFailure: Value(token.ValueUnsafe)},
	{Name: "tech", Claim: token.ClaimHardware, Expr: `boot.confidential_technology in ["", "NONE", "AMD_SEV"]`, OnFailure: Value(token.ValueUnsafe)},
	{Name: "trust-eq", Claim: token.ClaimHardware, Expr: `ak.trust == "allowlist"`, OnFailure: Value(token.ValueNoClaim)},
	{Name: "dbx-any", Claim: token.ClaimConfiguration, Expr: "boot.dbx_count >= 1", OnFailure: Value(token.ValueUnsafe)},
	{Name: "clock", Claim: token.ClaimHardware, Expr: "clock.clock > 0", OnFailure: Value(token.ValueUnsafe)},
}

// TestFastPathsAgreeWithReference: on every pair of real logs (a policy learned from one plus
// hand-written rules, evidence from another), changed in every way mutations knows, with
// reference values revoked, added in upper case or empty, Appraise returns exactly what the
// reference slowAppraise returns: status, vector, failures and their explanations, reference
// values and measured digests.
func TestFastPathsAgreeWithReference(t *testing.T) {
	states := realLogStates(t)
	names := slices.Sorted(maps.Keys(states))
	var cases, refused, nativeRules int
	for _, from := range names {
		f, _, err := Learn(states[from], LearnOptions{})
		if err != nil {
			continue // not a SHA-256 log
		}
		f.Rules = append(f.Rules, extraRules...)
		kernel := ""
		if k := f.ReferenceValues["kernels"]; len(k) > 0 {
			kernel = k[0]
		}
		snaps := map[string]*refvalues.Snapshot{"none": nil}
		if kernel != "" {
			snaps["revoked-kernel"] = &refvalues.Snapshot{Revoked: map[string]refvalues.Revocation{
				kernel: {Digest: kernel, Reason: "CVE-2026-0001", RevokedAt: time.Unix(1800000000, 0).UTC()}}}
			snaps["odd-values"] = &refvalues.Snapshot{Sets: map[string][]string{
				"kernels": {strings.ToUpper(kernel), ""}, "pcr7": {strings.ToUpper(f.ReferenceValues["pcr7"][0])}, "firmware": {""}}}
		}
		for sname, snap := range snaps {
			p, err := New(f, snap)
			if err != nil {
				t.Fatalf("%s/%s: %v", from, sname, err)
			}
			for _, r := range p.prog.rules {
				if r.native != nil {
					nativeRules++
				}
			}
			for _, of := range names {
				for mname, st := range mutations(states[of]) {
					got, want := p.Appraise(st), slowAppraise(p, st)
					if !reflect.DeepEqual(got, want) {
						t.Errorf("policy of %s (%s), evidence %s (%s):\n got %s\nwant %s", from, sname, of, mname, show(got), show(want))
					}
					cases++
					if got.Status == token.TierContraindicated {
						refused++
					}
				}
			}
		}
	}
	if cases < 100 || refused == 0 || refused == cases || nativeRules == 0 {
		t.Fatalf("%d cases, %d refused, %d native rules: the comparison must cover affirmed and refused evidence", cases, refused, nativeRules)
	}
}

func show(a *Appraisal) string {
	var b strings.Builder
	fmt.Fprintf(&b, "status %v vector %v\n", a.Status, a.Vector)
	for _, f := range a.Failures {
		fmt.Fprintf(&b, "  %s %s %d: %s\n", f.Rule, f.Claim, f.Value, f.Reason)
	}
	fmt.Fprintf(&b, "  reference values %v\n  record measured %v", a.ReferenceValues, a.RecordMeasured)
	return b.String()
}

// TestConcurrentAppraisalsAgree: evaluations running at the same time (each takes its input,
// scratch space and cached CEL values from pools) still return the reference appraisal (run
// it with -race too).
func TestConcurrentAppraisalsAgree(t *testing.T) {
	states := realLogStates(t)
	names := slices.Sorted(maps.Keys(states))
	var p *Policy
	for _, n := range names {
		if f, _, err := Learn(states[n], LearnOptions{}); err == nil {
			f.Rules = append(f.Rules, extraRules...)
			if p, err = New(f, nil); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	want := map[string]*Appraisal{}
	for _, n := range names {
		want[n] = slowAppraise(p, states[n])
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				for _, n := range names {
					if got := p.Appraise(states[n]); !reflect.DeepEqual(got, want[n]) {
						t.Errorf("%s: concurrent appraisal differs from the reference", n)
					}
				}
			}
		})
	}
	wg.Wait()
}
