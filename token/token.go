// Package token defines the attestation result that passport issues: an EAT Attestation Result
// (EAR, draft-ietf-rats-ear) carried as a JWT (RFC 7519) with typ "eat+jwt" (RFC 9711 EAT), bound
// to the attester's key through cnf (RFC 7800). The issuer, relying parties and the key broker all
// use these types, so that the claim set and its validation rules have one definition.
//
// The package knows nothing of HTTP or of signatures: it encodes claims, checks their time and
// audience rules, and computes the overall EAR status from the trustworthiness vector.
package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Type is the JOSE typ header of every token (RFC 9711 section 7.2.1: "eat+jwt").
const Type = "eat+jwt"

// Profile is the eat_profile claim: the EAR profile of draft-ietf-rats-ear section 3.
const Profile = "tag:github.com,2023:veraison/ear"

// SubmodTPM is the name of the submodule carrying the TPM appraisal in submods.
const SubmodTPM = "tpm"

// Claims is the JWT claim set of a passport token (DESIGN.md section 4).
type Claims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"` // attester identity: RFC 7638 thumbprint of the AK public key, base64url
	Audience  Audience `json:"aud"`
	IssuedAt  int64    `json:"iat"` // seconds since the Unix epoch
	NotBefore int64    `json:"nbf"`
	Expiry    int64    `json:"exp"`
	ID        string   `json:"jti"`
	Profile   string   `json:"eat_profile"`
	// EATNonce echoes a relying party's nonce when the attester asked for it (RFC 9711 section 4.1).
	EATNonce     string        `json:"eat_nonce,omitempty"`
	Confirmation *Confirmation `json:"cnf,omitempty"`
	// Status references the token's bit in a Token Status List (draft-ietf-oauth-status-list).
	Status     *Status            `json:"status,omitempty"`
	VerifierID VerifierID         `json:"ear_verifier_id"`
	Submods    map[string]*Submod `json:"submods"`
}

// Confirmation is the RFC 7800 cnf claim: the attester's public key.
type Confirmation struct {
	JWK *jose.JSONWebKey `json:"jwk"`
}

// Status is the draft-ietf-oauth-status-list status claim.
type Status struct {
	StatusList StatusListRef `json:"status_list"`
}

// StatusListRef names one bit (Index) in the status list served at URI.
type StatusListRef struct {
	Index uint64 `json:"idx"`
	URI   string `json:"uri"`
}

// VerifierID is the EAR ear.verifier-id claim (draft-ietf-rats-ear section 3.2).
type VerifierID struct {
	Build     string `json:"build"`
	Developer string `json:"developer"`
}

// Submod is one EAR submodule appraisal (draft-ietf-rats-ear section 3.1).
type Submod struct {
	Status   Tier                  `json:"ear_status"`
	Vector   TrustworthinessVector `json:"ear_trustworthiness_vector,omitempty"`
	PolicyID string                `json:"ear_appraisal_policy_id,omitempty"`
	// Measurements summarises what was appraised: PCR bank and hex digests by PCR index, and
	// the measured-boot state, so relying parties can write claim policies without the log.
	Measurements *Measurements `json:"measurements,omitempty"`
}

// Measurements is the summary of verified evidence placed in a submodule.
type Measurements struct {
	Bank       string            `json:"bank"` // "sha256"
	PCRs       map[string]string `json:"pcrs"` // PCR index (decimal) -> lowercase hex digest
	SecureBoot *bool             `json:"secure_boot,omitempty"`
	// ReferenceValues lists the digests (hex) of the reference values the evidence matched. A
	// configuration revocation (revoke --reference-value) names these, or any other event
	// digest of PCRs 0-9 the issuer recorded with the token's status entry (policy.Measured).
	ReferenceValues []string `json:"reference_values,omitempty"`
}

// submodAlias accepts the dotted EAR JSON spelling ("ear.status") beside the underscore one.
type submodAlias struct {
	Status       *Tier                 `json:"ear_status"`
	DotStatus    *Tier                 `json:"ear.status"`
	Vector       TrustworthinessVector `json:"ear_trustworthiness_vector"`
	DotVector    TrustworthinessVector `json:"ear.trustworthiness-vector"`
	PolicyID     string                `json:"ear_appraisal_policy_id"`
	DotPolicyID  string                `json:"ear.appraisal-policy-id"`
	Measurements *Measurements         `json:"measurements"`
}

// UnmarshalJSON reads both EAR spellings: ear_status / ear.status and friends. A submodule
// carrying neither status is an error, and so is one carrying two different statuses, two
// different trustworthiness vectors or two different policy ids.
func (s *Submod) UnmarshalJSON(b []byte) error {
	var a submodAlias
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	return a.into(s)
}

// into sets s from a decoded submodule in either spelling.
func (a *submodAlias) into(s *Submod) error {
	switch {
	case a.Status != nil && a.DotStatus != nil && *a.Status != *a.DotStatus:
		return errors.New("token: submodule has conflicting ear_status and ear.status")
	case a.Status != nil:
		s.Status = *a.Status
	case a.DotStatus != nil:
		s.Status = *a.DotStatus
	default:
		return errors.New("token: submodule lacks ear_status")
	}
	if a.Vector != nil && a.DotVector != nil && !maps.Equal(a.Vector, a.DotVector) {
		return errors.New("token: submodule has conflicting ear_trustworthiness_vector and ear.trustworthiness-vector")
	}
	if a.PolicyID != "" && a.DotPolicyID != "" && a.PolicyID != a.DotPolicyID {
		return errors.New("token: submodule has conflicting ear_appraisal_policy_id and ear.appraisal-policy-id")
	}
	s.Vector = a.Vector
	if s.Vector == nil {
		s.Vector = a.DotVector
	}
	s.PolicyID = a.PolicyID
	if s.PolicyID == "" {
		s.PolicyID = a.DotPolicyID
	}
	s.Measurements = a.Measurements
	return nil
}

// Audience is the aud claim: one string or an array of strings (RFC 7519 section 4.1.3). It
// marshals as a bare string when it holds exactly one value.
type Audience []string

// MarshalJSON writes a single audience as a string and several as an array.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON reads a string or an array of strings.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = Audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("token: aud is neither a string nor an array of strings: %w", err)
	}
	*a = l
	return nil
}

// Contains reports whether aud names want. Empty strings never match, so an empty array or ""
// is no audience at all.
func (a Audience) Contains(want string) bool {
	if want == "" {
		return false
	}
	for _, v := range a {
		if v == want {
			return true
		}
	}
	return false
}

// Errors returned by Claims.Validate; callers branch on them with errors.Is.
var (
	ErrExpired     = errors.New("token: expired")
	ErrNotYetValid = errors.New("token: not yet valid")
	ErrIssuer      = errors.New("token: wrong issuer")
	ErrAudience    = errors.New("token: wrong audience")
	ErrStatus      = errors.New("token: attestation status below the required tier")
	ErrMalformed   = errors.New("token: malformed claims")
)

// Expectations are what a relying party requires of a token's claims beyond its signature.
type Expectations struct {
	Issuer   string        // exact iss
	Audience string        // must be one of aud
	Leeway   time.Duration // allowed clock skew for exp and nbf
	// MinStatus is the worst acceptable overall EAR status; the zero value means TierAffirming.
	MinStatus Tier
}

// Validate checks iss, aud, nbf, exp (with leeway), the presence of jti and of at least one
// submodule, and the overall EAR status against e.MinStatus at time now. Errors wrap the
// sentinel errors above.
func (c *Claims) Validate(now time.Time, e Expectations) error {
	if c.Issuer != e.Issuer || e.Issuer == "" {
		return fmt.Errorf("%w: got %q, want %q", ErrIssuer, c.Issuer, e.Issuer)
	}
	if !c.Audience.Contains(e.Audience) {
		return fmt.Errorf("%w: %q not in %q", ErrAudience, e.Audience, []string(c.Audience))
	}
	if c.Expiry == 0 || c.ID == "" || len(c.Submods) == 0 {
		return fmt.Errorf("%w: exp, jti and submods are required", ErrMalformed)
	}
	t := now.Unix()
	leeway := int64(e.Leeway / time.Second)
	if t > c.Expiry+leeway {
		return fmt.Errorf("%w: exp %s", ErrExpired, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	if c.NotBefore != 0 && t+leeway < c.NotBefore {
		return fmt.Errorf("%w: nbf %s", ErrNotYetValid, time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	minStatus := e.MinStatus
	if minStatus == TierNone {
		minStatus = TierAffirming
	}
	if got := c.OverallStatus(); got.Worse(minStatus) {
		return fmt.Errorf("%w: %s, need %s or better", ErrStatus, got, minStatus)
	}
	return nil
}

// OverallStatus is the worst status among all submodules and every claim of their
// trustworthiness vectors (draft-ietf-rats-ear section 3.1.1): never better than the worst claim.
// A token without submodules is TierContraindicated.
func (c *Claims) OverallStatus() Tier {
	if len(c.Submods) == 0 {
		return TierContraindicated
	}
	worst := TierAffirming
	for _, s := range c.Submods {
		if s == nil {
			return TierContraindicated
		}
		worst = Worst(worst, s.Status)
		for _, v := range s.Vector {
			if t := TierOf(v); t != TierNone { // "no claim" is neutral (AR4SI value 0)
				worst = Worst(worst, t)
			}
		}
	}
	return worst
}

// Expires returns exp as a time.
func (c *Claims) Expires() time.Time { return time.Unix(c.Expiry, 0) }
