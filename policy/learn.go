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

// pcrMeaning says what PCR pcr measures (TCG PC Client Platform Firmware Profile section
// 3.3.4; PCRs 8 and 9 as GRUB uses them) and the AR4SI claim its pinning rule feeds: code
// feeds executables, everything else configuration.
func pcrMeaning(pcr uint32) (claim, what string) {
	switch pcr {
	case 0:
		return token.ClaimExecutables, "firmware code"
	case 1:
		return token.ClaimConfiguration, "firmware configuration and boot variables"
	case 2:
		return token.ClaimExecutables, "option ROM code"
	case 3:
		return token.ClaimConfiguration, "option ROM configuration"
	case 4:
		return token.ClaimExecutables, "boot manager code: shim, GRUB and EFI applications"
	case 5:
		return token.ClaimConfiguration, "boot manager configuration: GPT, boot variables"
	case 6:
		return token.ClaimConfiguration, "platform-specific events"
	case 7:
		return token.ClaimConfiguration, "Secure Boot policy: keys, db, dbx and the authorities used"
	case 8:
		return token.ClaimConfiguration, "GRUB commands and the kernel command line"
	case 9:
		return token.ClaimExecutables, "files GRUB read: kernel, initrd, grub.cfg, grubenv, modules"
	}
	return token.ClaimConfiguration, "measurements the log records"
}

// Learn writes a policy under which the machine described by s (a known-good machine, e.g.
// evidence.FromEventLog of its binary_bios_measurements) is affirmed, and which refuses
// machines whose firmware, boot loaders, EFI applications, GRUB files, kernel, kernel command
// line, Secure Boot state or PCRs differ. It pins the value of every PCR the log measures
// (rules pcr0..pcrN, sets of the same names): event types and data are not covered by the
// quote, so only the PCR values catch a measurement that was relabelled, renamed or added; the
// per-event rules (sets firmware, bootloaders, efi_apps, grub_files, kernels,
// kernel_cmdlines) explain which measurement differs. Extend the sets with more known-good
// machines (or boots) or through a refvalues.Store. It returns warnings for what it could not
// learn (no Secure Boot, no kernel found).
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
	// No AK without a quote (a bare log); an AK but no trust method for an attestation checked
	// offline (its quote is only self-consistent: evidence.FromAttestation).
	akExplain := `"AK trust: " + (ak.trust != "" ? ak.trust : ak.id == "" ? "none (no quote)" : "none (AK " + ak.id + " signed the quote but is not trusted: offline evaluation checks self-consistency only)")`
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
		warnings = append(warnings, "no kernel measured by GRUB was found: the policy has no kernel rule (the pinned PCRs and the boot loaders still pin the boot chain)")
	}
	if len(b.EFIApps) > 0 {
		f.ReferenceValues["efi_apps"] = slices.Clone(b.EFIApps)
		add(Rule{Name: "efi-apps", Claim: token.ClaimExecutables, Expr: "boot.efi_apps.all(d, d in refs.efi_apps)",
			OnSuccess: &approved, OnFailure: contra, Message: "an EFI application (PCR 4: shim, GRUB, kernel) is not one the known-good machine ran",
			Explain: `"not in refs.efi_apps: " + boot.efi_apps.filter(d, !(d in refs.efi_apps)).join(", ")`})
	}
	if len(b.GRUBFiles) > 0 {
		// Every file GRUB measured, whatever its (unverified) name says it is: a kernel renamed
		// to something else is still refused here.
		f.ReferenceValues["grub_files"] = slices.Clone(b.GRUBFiles)
		add(Rule{Name: "grub-files", Claim: token.ClaimExecutables, Expr: "boot.grub_files.all(d, d in refs.grub_files)",
			OnSuccess: &approved, OnFailure: contra, Message: "a file GRUB measured in PCR 9 (kernel, initrd, grub.cfg, grubenv, module) is not one the known-good machine read",
			Explain: `"not in refs.grub_files: " + boot.grub_files.filter(d, !(d in refs.grub_files)).join(", ")`})
	}
	if b.KernelCmdlineDigest != "" {
		f.ReferenceValues["kernel_cmdlines"] = []string{b.KernelCmdlineDigest}
		add(Rule{Name: "kernel-cmdline", Claim: token.ClaimConfiguration, Expr: "boot.kernel_cmdline_digest in refs.kernel_cmdlines",
			OnSuccess: &affirm, OnFailure: contra, Message: "the kernel command line is not the known-good machine's",
			Explain: `"kernel command line: " + boot.kernel_cmdline`})
	}
	for _, pcr := range s.LoggedPCRs {
		v, ok := in.pcrMap()["sha256"][strconv.Itoa(int(pcr))]
		if !ok {
			continue
		}
		claim, what := pcrMeaning(pcr)
		set, k := "pcr"+strconv.Itoa(int(pcr)), strconv.Itoa(int(pcr)) // a PCR missing from the quote fails the rule
		f.ReferenceValues[set] = []string{v}
		val := approved
		if claim != token.ClaimExecutables {
			val = affirm
		}
		add(Rule{Name: set, Claim: claim, Expr: `pcrs.sha256["` + k + `"] in refs.` + set,
			OnSuccess: &val, OnFailure: contra, Message: "PCR " + k + " (" + what + ") is not the known-good machine's"})
	}
	if err := f.validate(); err != nil {
		return nil, nil, err
	}
	return f, warnings, nil
}
