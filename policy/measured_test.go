package policy_test

import (
	"bytes"
	"encoding/hex"
	"maps"
	"slices"
	"testing"

	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/token"
)

// TestAppraisalRecordsMeasuredDigests: an affirmed appraisal records every event digest of
// PCRs 0-9 (deduplicated) and the matched PCR values, so a token can be found by a measurement
// no set holds (a GRUB command, vouched for through the pinned PCR 8) once it is revoked; PCR
// 10 and above are not recorded, and a policy without reference-value rules records nothing.
func TestAppraisalRecordsMeasuredDigests(t *testing.T) {
	st := bareState(t, testenv.EventLog(t, testenv.DefaultLog))
	f := learn(t, st)
	a := mustNew(t, f, nil).Appraise(st)
	if a.Status != token.TierAffirming {
		t.Fatalf("%v %v", a.Status, failed(a))
	}
	want := map[string]bool{}
	for _, e := range st.Machine.GetRawEvents() {
		if e.GetPcrIndex() <= 9 {
			want[hex.EncodeToString(e.GetDigest())] = true
		}
	}
	for _, p := range st.LoggedPCRs {
		want[hex.EncodeToString(st.PCRs[p])] = true
	}
	if !a.RecordMeasured {
		t.Fatal("a learned policy reads reference-value sets: RecordMeasured is not set")
	}
	measured := policy.Measured(st)
	events := map[string]bool{} // every event digest of PCRs 0-9, computed independently
	for _, e := range st.Machine.GetRawEvents() {
		if e.GetPcrIndex() <= 9 {
			events[hex.EncodeToString(e.GetDigest())] = true
		}
	}
	if got, want := measured, slices.Sorted(maps.Keys(events)); !slices.Equal(got, want) {
		t.Errorf("Measured = %d digests, want exactly the %d distinct event digests of PCRs 0-9", len(got), len(want))
	}
	recorded := slices.Concat(a.ReferenceValues, measured)
	slices.Sort(recorded)
	recorded = slices.Compact(recorded)
	for d := range want {
		if !slices.Contains(recorded, d) {
			t.Errorf("measured digest %s not recorded", d)
		}
	}
	if len(recorded) > len(want) || !slices.IsSorted(measured) || len(slices.Compact(slices.Clone(measured))) != len(measured) {
		t.Errorf("%d recorded values (want at most %d, measured sorted and unique)", len(recorded), len(want))
	}
	var grubCmd string
	for _, e := range st.Machine.GetRawEvents() {
		if e.GetPcrIndex() == 8 && bytes.HasPrefix(e.GetData(), []byte("grub_cmd")) {
			grubCmd = hex.EncodeToString(e.GetDigest())
			break
		}
	}
	for name, vals := range f.ReferenceValues {
		if slices.Contains(vals, grubCmd) {
			t.Fatalf("the GRUB command %s is in refs.%s: pick another", grubCmd, name)
		}
	}
	if grubCmd == "" || !slices.Contains(measured, grubCmd) {
		t.Errorf("GRUB command digest %q not recorded", grubCmd)
	}
	size := 0
	for _, d := range a.ReferenceValues {
		size += len(d) + 3 // JSON: quotes and comma
	}
	t.Logf("%d digests recorded for revocation, %d matched reference values (about %d bytes of JSON) in the token", len(recorded), len(a.ReferenceValues), size)
	plain := mustNew(t, &policy.File{Version: policy.FileVersion, Rules: []policy.Rule{{Name: "sb", Claim: token.ClaimConfiguration, Expr: "true", OnFailure: 96}}}, nil).Appraise(st)
	if len(plain.ReferenceValues) != 0 || plain.RecordMeasured {
		t.Errorf("a policy without reference values matched %d and asks to record measurements: %v", len(plain.ReferenceValues), plain.RecordMeasured)
	}
}

// TestRefsReadByComputedKeyRecordsMeasured: a rule that reads reference values through refs as
// a whole or with a computed key may use any set, so its appraisals ask the issuer to record
// the measured digests (RecordMeasured), as a rule naming the set does; a rule reading no set
// does not.
func TestRefsReadByComputedKeyRecordsMeasured(t *testing.T) {
	st := bareState(t, testenv.EventLog(t, testenv.DefaultLog))
	pcr8 := hex.EncodeToString(st.PCRs[8])
	for _, tc := range []struct {
		expr   string
		record bool
	}{
		{`pcrs.sha256["8"] in refs.sha256`, true},
		{`pcrs[tpm.bank]["8"] in refs[tpm.bank]`, true},
		{`refs.exists(k, pcrs.sha256["8"] in refs[k])`, true},
		{`size(refs) > 0`, true},
		{`pcrs.sha256["8"] == "` + pcr8 + `"`, false},
	} {
		f := &policy.File{Version: policy.FileVersion, ReferenceValues: map[string][]string{"sha256": {pcr8}},
			Rules: []policy.Rule{{Name: "r", Claim: token.ClaimConfiguration, Expr: tc.expr, OnFailure: policy.Value(token.ValueContraindicated)}}}
		a := mustNew(t, f, nil).Appraise(st)
		if a.Status != token.TierAffirming || a.RecordMeasured != tc.record {
			t.Errorf("%s: status %v, RecordMeasured %v, want affirming and %v", tc.expr, a.Status, a.RecordMeasured, tc.record)
		}
	}
}
