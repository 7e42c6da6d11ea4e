package policy_test

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/token"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStarterPolicyOnRealLogs appraises real machines' verified evidence: a secure-boot machine
// passes "secure_boot: true", a machine without secure boot is contraindicated, and PCR
// reference values accept the machine they were taken from and refuse another value.
func TestStarterPolicyOnRealLogs(t *testing.T) {
	sb := testenv.VerifiedState(t, "rhel8-uefi.bin")
	noSB := testenv.VerifiedState(t, "ubuntu-2104-no-secure-boot.bin")
	if !sb.SecureBoot() || noSB.SecureBoot() {
		t.Fatalf("fixture logs: secure boot %v / %v, want true / false", sb.SecureBoot(), noSB.SecureBoot())
	}
	ref, err := policy.LoadReference(write(t, "secure_boot: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := ref.Appraise(sb); a.Status != token.TierAffirming || a.Vector[token.ClaimConfiguration] != token.ValueAffirming {
		t.Fatalf("secure-boot machine: %+v", a)
	}
	a := ref.Appraise(noSB)
	if a.Status != token.TierContraindicated || len(a.Failures) != 1 || a.Failures[0].Rule != "secure_boot" {
		t.Fatalf("machine without secure boot: %+v", a)
	}

	pcr7 := hex.EncodeToString(sb.PCRs[7])
	ref, err = policy.LoadReference(write(t, "pcrs:\n  \"7\": [\""+strings.ToUpper(pcr7)+"\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := ref.Appraise(sb); a.Status != token.TierAffirming || a.Vector[token.ClaimExecutables] != token.ValueApprovedBoot || len(a.ReferenceValues) != 1 {
		t.Fatalf("reference machine: %+v", a)
	}
	if a := ref.Appraise(noSB); a.Status != token.TierContraindicated || a.Failures[0].Rule != "pcr7" || !strings.Contains(a.Failures[0].Reason, "not one of") {
		t.Fatalf("other machine: %+v", a)
	}
	ref, _ = policy.LoadReference(write(t, "pcrs:\n  \"16\": [\""+pcr7+"\"]\n"))
	if a := ref.Appraise(sb); a.Status != token.TierContraindicated || !strings.Contains(a.Failures[0].Reason, "not in the quote") && !strings.Contains(a.Failures[0].Reason, "not one of") {
		t.Fatalf("PCR 16: %+v", a)
	}
	// Trust method feeds the hardware claim: --trust-any-ak makes no hardware claim.
	trustAny := *sb
	trustAny.AKTrust = evidence.TrustAny
	if a := (&policy.Reference{}).Appraise(&trustAny); a.Vector[token.ClaimHardware] != 0 {
		t.Fatalf("trust-any AK got a hardware claim: %+v", a.Vector)
	}
	if a := (&policy.Reference{}).Appraise(sb); a.Vector[token.ClaimHardware] != token.ValueAffirming {
		t.Fatalf("allowlisted AK lacks the hardware claim: %+v", a.Vector)
	}
}

func TestLoadReferenceRefusesBadFiles(t *testing.T) {
	for _, body := range []string{
		"pcrs:\n  \"24\": [\"" + strings.Repeat("00", 32) + "\"]\n",
		"pcrs:\n  \"7\": [\"abcd\"]\n",
		"secure_bot: true\n",
		"pcrs: [1, 2]\n",
	} {
		if _, err := policy.LoadReference(write(t, body)); err == nil {
			t.Errorf("accepted %q", body)
		}
	}
}
