package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/token"
)

// Reference is the starter policy: whether UEFI Secure Boot must be on, and accepted digests per
// PCR of the verified bank (reference values, RFC 9334 section 3.3). Its YAML form is
//
//	secure_boot: true
//	pcrs:
//	  "7": ["<hex sha256>", ...]
//
// An empty Reference affirms any cryptographically verified evidence.
type Reference struct {
	SecureBoot bool                `yaml:"secure_boot" json:"secure_boot"`
	PCRs       map[string][]string `yaml:"pcrs" json:"pcrs"`
	id         string
}

// LoadReference reads a starter policy file (YAML or JSON) and validates its digests.
func LoadReference(path string) (*Reference, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	r, err := parseReference(b)
	if err != nil {
		return nil, fmt.Errorf("policy: %s: %w", path, err)
	}
	return r, nil
}

// parseReference decodes and validates a starter policy document.
func parseReference(b []byte) (*Reference, error) {
	var r Reference
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	for pcr, vals := range r.PCRs {
		if n, err := strconv.Atoi(pcr); err != nil || n < 0 || n > 23 {
			return nil, fmt.Errorf("PCR %q is not 0..23", pcr)
		}
		for i, v := range vals {
			d, err := hex.DecodeString(v)
			if err != nil || len(d) != sha256.Size {
				return nil, fmt.Errorf("PCR %s value %d is not a hex SHA-256 digest", pcr, i)
			}
			vals[i] = strings.ToLower(v)
		}
	}
	sum := sha256.Sum256(b)
	r.id = "sha256:" + hex.EncodeToString(sum[:])
	return &r, nil
}

// ID returns the policy's identifier: the SHA-256 of its file, or "default" for a zero value.
func (r *Reference) ID() string {
	if r.id == "" {
		return "passport:default"
	}
	return r.id
}

// Appraise applies the reference values to s:
//   - hardware and instance-identity are affirmed (2) when the AK was really trusted, and make
//     no claim (0) under --trust-any-ak;
//   - configuration: secure boot required but off sets 96 (contraindicated);
//   - executables: every PCR with reference values must match one, else 96 (contraindicated:
//     the issuer refuses; reference values given are enforced); all matching sets 3 (approved
//     boot).
func (r *Reference) Appraise(s *evidence.State) *Appraisal {
	a := &Appraisal{PolicyID: r.ID(), Vector: token.TrustworthinessVector{}}
	if s.AKTrust != evidence.TrustAny && s.AKTrust != "" {
		a.Set(token.ClaimHardware, token.ValueAffirming)
		a.Set(token.ClaimInstanceIdentity, token.ValueAffirming)
	}
	if r.SecureBoot {
		if s.SecureBoot() {
			a.Set(token.ClaimConfiguration, token.ValueAffirming)
		} else {
			a.Set(token.ClaimConfiguration, token.ValueContraindicated)
			a.Failures = append(a.Failures, Failure{Rule: "secure_boot", Claim: token.ClaimConfiguration,
				Value: token.ValueContraindicated, Reason: "UEFI Secure Boot is required but the event log shows it disabled"})
		}
	}
	if len(r.PCRs) > 0 {
		ok := true
		keys := make([]string, 0, len(r.PCRs))
		for k := range r.PCRs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, pcr := range keys {
			n, _ := strconv.Atoi(pcr)
			got, quoted := s.PCRs[uint32(n)]
			h := hex.EncodeToString(got)
			switch {
			case !quoted:
				ok = false
				a.Failures = append(a.Failures, Failure{Rule: "pcr" + pcr, Claim: token.ClaimExecutables,
					Value: token.ValueContraindicated, Reason: fmt.Sprintf("PCR %s has reference values but is not in the quote", pcr)})
			case !slices.Contains(r.PCRs[pcr], h):
				ok = false
				a.Failures = append(a.Failures, Failure{Rule: "pcr" + pcr, Claim: token.ClaimExecutables,
					Value: token.ValueContraindicated, Reason: fmt.Sprintf("PCR %s is %s, not one of %d reference values", pcr, h, len(r.PCRs[pcr]))})
			default:
				a.ReferenceValues = append(a.ReferenceValues, h)
			}
		}
		if ok {
			a.Set(token.ClaimExecutables, token.ValueApprovedBoot)
		} else {
			a.Set(token.ClaimExecutables, token.ValueContraindicated)
		}
	}
	return a.Finish()
}
