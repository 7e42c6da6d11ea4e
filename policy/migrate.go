package policy

import (
	"slices"
	"strconv"

	"github.com/passport-attest/passport/token"
)

// FromReference migrates a starter policy (Reference, issue 2's format) to an equivalent
// policy file, so that `serve --policy` keeps reading old files and gains reloads and
// revocations:
//   - ak-hardware and ak-instance-identity affirm (2) hardware and instance-identity when the AK
//     was really trusted, and make no claim (0) under --trust-any-ak;
//   - secure-boot (when required) contraindicates (96) configuration if Secure Boot is off;
//   - pcrN, one per PCR with reference values in set pcrN, sets executables to 3 (approved boot)
//     when the PCR matches and 96 (contraindicated: reference values given are enforced)
//     otherwise.
func FromReference(r *Reference) *File {
	f := &File{Version: FileVersion, Name: "starter", Description: "migrated from a starter policy (secure_boot, pcrs)",
		ReferenceValues: map[string][]string{}}
	affirm, noClaim := Value(token.ValueAffirming), Value(token.ValueNoClaim)
	trusted := `ak.trust != "any" && ak.trust != ""`
	f.Rules = append(f.Rules,
		Rule{Name: "ak-hardware", Claim: token.ClaimHardware, Expr: trusted, OnSuccess: &affirm, OnFailure: noClaim,
			Message: "the attestation key is not trusted through an allowlist, certificate or enrollment"},
		Rule{Name: "ak-instance-identity", Claim: token.ClaimInstanceIdentity, Expr: trusted, OnSuccess: &affirm, OnFailure: noClaim,
			Message: "the attestation key is not trusted through an allowlist, certificate or enrollment"})
	if r.SecureBoot {
		f.Rules = append(f.Rules, Rule{Name: "secure_boot", Claim: token.ClaimConfiguration, Expr: "boot.secure_boot",
			OnSuccess: &affirm, OnFailure: Value(token.ValueContraindicated),
			Message: "UEFI Secure Boot is required but the event log shows it disabled"})
	}
	pcrs := make([]int, 0, len(r.PCRs))
	for k := range r.PCRs {
		n, _ := strconv.Atoi(k)
		pcrs = append(pcrs, n)
	}
	slices.Sort(pcrs)
	approved := Value(token.ValueApprovedBoot)
	for _, n := range pcrs {
		k := strconv.Itoa(n)
		set := "pcr" + k
		f.ReferenceValues[set] = slices.Clone(r.PCRs[k])
		f.Rules = append(f.Rules, Rule{Name: set, Claim: token.ClaimExecutables,
			Expr:      `"` + k + `" in pcrs[tpm.bank] && pcrs[tpm.bank]["` + k + `"] in refs.` + set,
			OnSuccess: &approved, OnFailure: Value(token.ValueContraindicated),
			Message: "PCR " + k + " is not one of the reference values"})
	}
	return f
}
