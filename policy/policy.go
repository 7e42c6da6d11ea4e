// Package policy turns verified evidence into an attestation result: the EAR status and
// trustworthiness vector (draft-ietf-rats-ear section 3, draft-ietf-rats-ar4si section 2.3) that
// the issuer puts in a token. Evaluation is pure: no I/O, no clock, only the verified state.
package policy

import (
	"bytes"
	"encoding/hex"
	"slices"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/token"
)

// Appraiser evaluates verified evidence. Implementations are pure and safe for concurrent use.
type Appraiser interface {
	Appraise(s *evidence.State) *Appraisal
}

// Appraisal is the outcome of a policy evaluation.
type Appraisal struct {
	// Status is the submodule's EAR status: never better than the worst claim in Vector.
	Status token.Tier
	// Vector is the AR4SI trustworthiness vector.
	Vector token.TrustworthinessVector
	// PolicyID identifies the policy in force (ear_appraisal_policy_id).
	PolicyID string
	// Failures lists the rules that did not hold, in words an operator can act on.
	Failures []Failure
	// ReferenceValues lists (sorted, unique, hex as the policy's sets write them) the reference
	// values the evidence matched; the token carries them
	// (submods.tpm.measurements.reference_values) and the issuer records them, lower-cased,
	// with the token's status entry.
	ReferenceValues []string
	// RecordMeasured is set when a rule reads a reference-value set: the appraisal then vouched
	// for every event digest of PCRs 0-9, and the issuer records Measured(s) with the token's
	// status entry (not in the token, which stays small) so that revoking any of them later
	// (revoke --reference-value) finds the token.
	RecordMeasured bool
}

// Failure is one rule that did not hold.
type Failure struct {
	Rule   string `json:"rule"`
	Claim  string `json:"claim"`  // the AR4SI claim it feeds
	Value  int8   `json:"value"`  // the claim value it set
	Reason string `json:"reason"` // what was expected and what was seen
}

// Finish computes Status from Vector: affirming unless a claim is worse, never better than the
// worst claim. Claims with the "none" tier are neutral.
func (a *Appraisal) Finish() *Appraisal {
	c := token.Claims{Submods: map[string]*token.Submod{"x": {Status: token.TierAffirming, Vector: a.Vector}}}
	a.Status = c.OverallStatus()
	return a
}

// Set records claim = value, keeping the worse value when the claim is already set, as rules
// do (a "none" value never erases an affirming, warning or contraindicated one).
func (a *Appraisal) Set(claim string, value int8) {
	if a.Vector == nil {
		a.Vector = token.TrustworthinessVector{}
	}
	combine(a.Vector, claim, value)
}

// MaxMeasuredPCR is the last PCR whose event digests Measured returns (PCRs 0-9: firmware,
// boot loaders, GRUB, kernel; PCRs 10 and above hold runtime logs such as IMA's).
const MaxMeasuredPCR = 9

// Measured returns every event digest of PCRs 0 to MaxMeasuredPCR in s's verified event log
// (sorted, unique, lowercase hex; nil for a nil State): what an Appraisal with RecordMeasured
// vouched for. It is not part of Appraise, which only decides: the issuer calls it once per
// token it issues, to label the token's status entry.
func Measured(s *evidence.State) []string {
	if s == nil {
		return nil
	}
	events := s.Machine.GetRawEvents()
	ds := make([][]byte, 0, len(events))
	for _, e := range events {
		if e.GetPcrIndex() <= MaxMeasuredPCR {
			ds = append(ds, e.GetDigest())
		}
	}
	// Sorted as bytes, which is the order of their lowercase hex; encoded into one string.
	slices.SortFunc(ds, bytes.Compare)
	ds = slices.CompactFunc(ds, bytes.Equal)
	n := 0
	for _, d := range ds {
		n += hex.EncodedLen(len(d))
	}
	buf := make([]byte, 0, n)
	for _, d := range ds {
		buf = hex.AppendEncode(buf, d)
	}
	all := string(buf)
	out := make([]string, len(ds))
	off := 0
	for i, d := range ds {
		l := hex.EncodedLen(len(d))
		out[i], off = all[off:off+l], off+l
	}
	return out
}
