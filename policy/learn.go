package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/token"
)

// LearnOptions name the policy Learn writes.
type LearnOptions struct {
	Name        string // default "learned"
	Description string
}

// learnedPCRs are the PCRs whose values Learn pins, with the claim they feed and what they
// measure (TCG PC Client Platform Firmware Profile section 3.3.4): the PCRs that describe the
// platform's code and Secure Boot policy and do not change from one boot to the next. PCRs 1,
// 3, 5 and 6 (boot variables, GPT, platform events) and GRUB's 8 and 9 (which include
// grubenv, rewritten on boots) are left to the per-event rules.
var learnedPCRs = []struct {
	pcr   int
	claim string
	what  string
}{
	{0, token.ClaimExecutables, "firmware code"},
	{2, token.ClaimExecutables, "option ROM code"},
	{4, token.ClaimExecutables, "boot manager code: shim, GRUB and EFI applications"},
	{7, token.ClaimConfiguration, "Secure Boot policy: keys, db, dbx and the authorities used"},
}

// Learn writes a policy under which the machine described by s (a known-good machine, e.g.
// evidence.FromEventLog of its binary_bios_measurements) is affirmed, and which refuses
// machines whose firmware, boot loaders, kernel, kernel command line, Secure Boot state or
// pinned PCRs differ. Its reference values are that machine's (sets firmware, bootloaders,
// kernels, kernel_cmdlines, pcr0, pcr2, pcr4, pcr7); extend them with more known-good
// machines or through a refvalues.Store. It returns warnings for what it could not learn (no
// Secure Boot, no kernel found).
func Learn(s *evidence.State, o LearnOptions) (*File, []string, error) {
	if s == nil || s.Machine == nil {
		return nil, nil, errNoState
	}
	if s.Bank != "sha256" {
		return nil, nil, errors.New("policy: learn: only SHA-256 evidence can be learned")
	}
	if o.Name == "" {
		o.Name = "learned"
	}
	in := buildInput(s, allNeeds)
	b := in.boot
	f := &File{Version: FileVersion, Name: o.Name, Description: o.Description, ReferenceValues: map[string][]string{}}
	var warnings []string
	affirm, approved := Value(token.ValueAffirming), Value(token.ValueApprovedBoot)
	noClaim, contra, unsafe := Value(token.ValueNoClaim), Value(token.ValueContraindicated), Value(token.ValueUnsafe)
	trusted := `ak.trust in ["allowlist", "certificate", "enrolled"]`
	akExplain := `"AK trust: " + (ak.trust == "" ? "none (no quote)" : ak.trust)`
	add := func(r Rule) { f.Rules = append(f.Rules, r) }
	add(Rule{Name: "ak-hardware", Claim: token.ClaimHardware, Expr: trusted, OnSuccess: &affirm, OnFailure: noClaim,
		Message: "the attestation key is not trusted through an allowlist, certificate or enrollment (no hardware claim)", Explain: akExplain})
	add(Rule{Name: "ak-instance-identity", Claim: token.ClaimInstanceIdentity, Expr: trusted, OnSuccess: &affirm, OnFailure: noClaim,
		Message: "the attestation key is not trusted through an allowlist, certificate or enrollment (no instance-identity claim)", Explain: akExplain})
	add(Rule{Name: "pcr-bank", Claim: token.ClaimConfiguration, Expr: `tpm.bank == "sha256"`, OnFailure: contra,
		Message: "the evidence must be appraised on the SHA-256 PCR bank"})
	if b.SecureBoot {
		add(Rule{Name: "secure-boot", Claim: token.ClaimConfiguration, Expr: "boot.secure_boot", OnSuccess: &affirm, OnFailure: contra,
			Message: "UEFI Secure Boot is off; the known-good machine booted with it on"})
		add(Rule{Name: "dbx", Claim: token.ClaimConfiguration, Expr: "boot.dbx_count >= " + strconv.FormatInt(b.DBXCount, 10), OnFailure: unsafe,
			Message: fmt.Sprintf("the Secure Boot dbx (revoked boot binaries) has fewer entries than the known-good machine's %d: update it", b.DBXCount)})
	} else {
		warnings = append(warnings, "the known-good machine booted with UEFI Secure Boot off: the policy does not require it (add a rule `boot.secure_boot` once it is on)")
	}
	if len(b.Firmware) > 0 {
		f.ReferenceValues["firmware"] = slices.Clone(b.Firmware)
		add(Rule{Name: "firmware", Claim: token.ClaimExecutables, Expr: "size(boot.firmware) > 0 && boot.firmware.all(d, d in refs.firmware)",
			OnSuccess: &approved, OnFailure: contra, Message: "the firmware (PCR 0 measurements) is not one the known-good machine ran",
			Explain: `"not in refs.firmware: " + boot.firmware.filter(d, !(d in refs.firmware)).join(", ")`})
	}
	if len(b.Bootloaders) > 0 {
		f.ReferenceValues["bootloaders"] = slices.Clone(b.Bootloaders)
		add(Rule{Name: "bootloaders", Claim: token.ClaimExecutables, Expr: "size(boot.bootloaders) > 0 && boot.bootloaders.all(d, d in refs.bootloaders)",
			OnSuccess: &approved, OnFailure: contra, Message: "a boot loader (shim, GRUB or another EFI application) is not one the known-good machine ran",
			Explain: `"not in refs.bootloaders: " + boot.bootloaders.filter(d, !(d in refs.bootloaders)).join(", ")`})
	}
	if b.Kernel != "" {
		f.ReferenceValues["kernels"] = []string{b.Kernel}
		add(Rule{Name: "kernel", Claim: token.ClaimExecutables, Expr: "boot.kernel in refs.kernels", OnSuccess: &approved, OnFailure: contra,
			Message: "the kernel is not one the known-good machine booted"})
	} else {
		warnings = append(warnings, "no kernel measured by GRUB was found: the policy has no kernel rule (PCR 4 and the boot loaders still pin the boot chain)")
	}
	if b.KernelCmdlineDigest != "" {
		f.ReferenceValues["kernel_cmdlines"] = []string{b.KernelCmdlineDigest}
		add(Rule{Name: "kernel-cmdline", Claim: token.ClaimConfiguration, Expr: "boot.kernel_cmdline_digest in refs.kernel_cmdlines",
			OnSuccess: &affirm, OnFailure: contra, Message: "the kernel command line is not the known-good machine's",
			Explain: `"kernel command line: " + boot.kernel_cmdline`})
	}
	for _, lp := range learnedPCRs {
		v, ok := in.pcrs["sha256"][strconv.Itoa(lp.pcr)]
		if !ok || !slices.Contains(s.LoggedPCRs, uint32(lp.pcr)) {
			continue
		}
		set, k := "pcr"+strconv.Itoa(lp.pcr), strconv.Itoa(lp.pcr) // a PCR missing from the quote fails the rule
		f.ReferenceValues[set] = []string{v}
		val := approved
		if lp.claim != token.ClaimExecutables {
			val = affirm
		}
		add(Rule{Name: set, Claim: lp.claim, Expr: `pcrs.sha256["` + k + `"] in refs.` + set,
			OnSuccess: &val, OnFailure: contra, Message: "PCR " + k + " (" + lp.what + ") is not the known-good machine's"})
	}
	if err := f.validate(); err != nil {
		return nil, nil, err
	}
	return f, warnings, nil
}
