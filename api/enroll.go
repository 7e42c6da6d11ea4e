package api

import "time"

// Paths of the EK enrollment API (TCG EK Credential Profile: TPM2_MakeCredential /
// TPM2_ActivateCredential, TPM 2.0 Part 1 section 24).
const (
	PathEnroll         = "/v1/enroll"
	PathEnrollActivate = "/v1/enroll/activate"
)

// EnrollRequest is the body of POST /v1/enroll: an attester asks for its AK to be trusted on
// the strength of its TPM's endorsement key.
type EnrollRequest struct {
	// EKPub is the EK's TPMT_PUBLIC (TPM 2.0 Part 2 section 12.2.4), as TPM2_ReadPublic returns it.
	EKPub Bytes `json:"ek_pub"`
	// EKCert is the EK certificate (DER), when the TPM has one in NV; absent, the issuer must
	// have the EK public key pinned.
	EKCert Bytes `json:"ek_cert,omitempty"`
	// AKPub is the AK's TPMT_PUBLIC: a restricted signing key in the same TPM.
	AKPub Bytes `json:"ak_pub"`
}

// EnrollChallenge answers POST /v1/enroll: a credential only the TPM holding both the EK and
// an object named like the AK can open (TPM2_ActivateCredential).
type EnrollChallenge struct {
	// ID names this enrollment in the activation request (single use, expires at ExpiresAt).
	ID Bytes `json:"enrollment_id"`
	// Credential is the TPM2B_ID_OBJECT and Secret the TPM2B_ENCRYPTED_SECRET of
	// TPM2_MakeCredential, size prefixes included.
	Credential Bytes     `json:"credential_blob"`
	Secret     Bytes     `json:"encrypted_secret"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// ActivateRequest is the body of POST /v1/enroll/activate: the secret TPM2_ActivateCredential
// recovered.
type ActivateRequest struct {
	ID     Bytes `json:"enrollment_id"`
	Secret Bytes `json:"secret"`
}

// EnrollResponse answers a successful activation: the AK is now trusted.
type EnrollResponse struct {
	// AKID is the AK's RFC 7638 thumbprint: the sub of its tokens.
	AKID string `json:"ak_id"`
}
