package token

import (
	"encoding/json"
	"fmt"
)

// Tier is an EAR trust tier (draft-ietf-rats-ear section 3.1; RFC 9334 appraisal). The numeric
// values are those of the AR4SI trust tiers: none 0, affirming 2, warning 32,
// contraindicated 96. In JSON it is the lowercase name.
type Tier int

// The EAR trust tiers.
const (
	TierNone            Tier = 0
	TierAffirming       Tier = 2
	TierWarning         Tier = 32
	TierContraindicated Tier = 96
)

// String returns the tier's EAR name.
func (t Tier) String() string {
	switch t {
	case TierNone:
		return "none"
	case TierAffirming:
		return "affirming"
	case TierWarning:
		return "warning"
	case TierContraindicated:
		return "contraindicated"
	}
	return fmt.Sprintf("tier(%d)", int(t))
}

// ParseTier reads an EAR tier name.
func ParseTier(s string) (Tier, error) {
	switch s {
	case "none":
		return TierNone, nil
	case "affirming":
		return TierAffirming, nil
	case "warning":
		return TierWarning, nil
	case "contraindicated":
		return TierContraindicated, nil
	}
	return 0, fmt.Errorf("token: unknown EAR tier %q", s)
}

// rank orders tiers from best (affirming) to worst (contraindicated). "none" means no claim was
// made and ranks between warning and contraindicated: it never affirms.
func (t Tier) rank() int {
	switch t {
	case TierAffirming:
		return 0
	case TierWarning:
		return 1
	case TierNone:
		return 2
	}
	return 3 // contraindicated and unknown values
}

// Worse reports whether t is a worse tier than u.
func (t Tier) Worse(u Tier) bool { return t.rank() > u.rank() }

// Worst returns the worse of two tiers.
func Worst(a, b Tier) Tier {
	if a.Worse(b) {
		return a
	}
	return b
}

// TierOf maps an AR4SI trustworthiness claim value (-128..127) to its tier: -1..1 none,
// 2..31 and -32..-2 affirming, 32..95 and -96..-33 warning, 96..127 and -128..-97
// contraindicated (draft-ietf-rats-ar4si section 2.3.3, draft-ietf-rats-ear section 3.1.1).
func TierOf(claim int8) Tier {
	switch {
	case claim >= -1 && claim <= 1:
		return TierNone
	case (claim >= 2 && claim <= 31) || (claim >= -32 && claim <= -2):
		return TierAffirming
	case (claim >= 32 && claim <= 95) || (claim >= -96 && claim <= -33):
		return TierWarning
	}
	return TierContraindicated
}

// MarshalJSON writes the tier's name.
func (t Tier) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// UnmarshalJSON reads a tier name or its number.
func (t *Tier) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := ParseTier(s)
		if err != nil {
			return err
		}
		*t = v
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("token: EAR tier is neither a name nor a number: %w", err)
	}
	switch Tier(n) {
	case TierNone, TierAffirming, TierWarning, TierContraindicated:
		*t = Tier(n)
		return nil
	}
	return fmt.Errorf("token: unknown EAR tier %d", n)
}

// TrustworthinessVector is the EAR trustworthiness vector: AR4SI claim name -> claim value
// (draft-ietf-rats-ar4si section 2.3). Names are the AR4SI ones: instance-identity,
// configuration, executables, file-system, hardware, runtime-opaque, storage-opaque,
// sourced-data.
type TrustworthinessVector map[string]int8

// AR4SI trustworthiness claim names.
const (
	ClaimInstanceIdentity = "instance-identity"
	ClaimConfiguration    = "configuration"
	ClaimExecutables      = "executables"
	ClaimFileSystem       = "file-system"
	ClaimHardware         = "hardware"
	ClaimRuntimeOpaque    = "runtime-opaque"
	ClaimStorageOpaque    = "storage-opaque"
	ClaimSourcedData      = "sourced-data"
)

// AR4SI claim values used by passport's appraisal (draft-ietf-rats-ar4si section 2.3.4).
const (
	ValueNoClaim            int8 = 0  // no conclusion: neutral, never affirming
	ValueUnexpectedEvidence int8 = 1  // evidence the verifier could not parse
	ValueAffirming          int8 = 2  // genuine hardware, approved configuration or executables
	ValueApprovedBoot       int8 = 3  // executables: only approved boot-time executables
	ValueUnsafe             int8 = 32 // recognized but known vulnerabilities
	ValueUnrecognized       int8 = 33 // executables not recognized
	ValueContraindicated    int8 = 96 // contraindicated configuration, executables or hardware
	ValueUnrecognizedHW     int8 = 97 // hardware (or instance) not recognized
	ValueCryptoFailed       int8 = 99 // cryptographic validation of the evidence failed
)
