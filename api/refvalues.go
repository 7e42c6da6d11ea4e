package api

import "time"

// Paths of the admin API for configuration revocation (issuer admin listener, bearer
// credential): POST revokes a reference value, GET lists the revoked ones, DELETE
// PathReferenceValueRevocations + "/{digest}" reinstates one.
const PathReferenceValueRevocations = "/admin/v1/reference-values/revocations"

// RevokeReferenceValueRequest is the body of POST PathReferenceValueRevocations.
type RevokeReferenceValueRequest struct {
	// Digest is the reference value to refuse from now on: a hex SHA-256 (or SHA-1/384/512)
	// digest, a PCR value or an event-log event digest.
	Digest string `json:"digest"`
	// Reason says why, in operator words (e.g. a CVE identifier); at most 512 bytes.
	Reason string `json:"reason,omitempty"`
}

// ReferenceValueRevocation is one revoked reference value.
type ReferenceValueRevocation struct {
	Digest    string    `json:"digest"`
	Reason    string    `json:"reason,omitempty"`
	RevokedAt time.Time `json:"revoked_at"`
}

// RevokeReferenceValueResponse answers POST PathReferenceValueRevocations: 201 when the
// revocation is new, 200 when the digest was already revoked (the first revocation is kept).
type RevokeReferenceValueResponse struct {
	Revocation ReferenceValueRevocation `json:"revocation"`
	Created    bool                     `json:"created"`
	// PolicyID is the ear_appraisal_policy_id in force after the revocation.
	PolicyID string `json:"policy_id,omitempty"`
}

// ReferenceValueRevocationList answers GET PathReferenceValueRevocations, sorted by digest.
type ReferenceValueRevocationList struct {
	Revocations []ReferenceValueRevocation `json:"revocations"`
}
