package api

import "time"

// Background check (RFC 9334 section 5.2): the relying party, not the attester, takes the
// evidence to the verifier. The exchange between attester and relying party uses these HTTP
// headers (see docs/BACKGROUND_CHECK.md):
//
//  1. the relying party answers a request that needs evidence with 401, a challenge nonce
//     obtained from the issuer in HeaderNonce, and a WWW-Authenticate challenge with
//     EvidenceScheme and the same nonce;
//  2. the attester repeats the request with its evidence for that nonce, bound to the origin
//     of the URL it called (an AttestRequest with Origin set, extraData ExtraDataFor; as JSON,
//     base64url without padding) in HeaderEvidence, and a DPoP proof (RFC 9449) signed by the
//     evidence's cnf key;
//  3. the relying party forwards the evidence to the issuer's POST PathAppraise and receives an
//     attestation result addressed to itself.
const (
	// HeaderNonce carries the challenge nonce (base64url, no padding) in the relying party's
	// 401 answer.
	HeaderNonce = "Attestation-Nonce"
	// HeaderEvidence carries the attester's evidence: base64url (no padding) of the JSON of an
	// AttestRequest whose Nonce is the challenge nonce.
	HeaderEvidence = "Attestation-Evidence"
	// EvidenceScheme is the WWW-Authenticate scheme of the challenge: `Attestation
	// realm="...", nonce="..."`.
	EvidenceScheme = "Attestation"
)

// AppraiseRequest is the body of POST /v1/appraise: a relying party forwards an attester's
// evidence and names itself as the audience of the result.
type AppraiseRequest struct {
	// Evidence is the attester's answer to an issuer challenge: nonce, TPM attestation and cnf
	// key, exactly as the attester produced it. Its Audience and EATNonce are ignored.
	Evidence *AttestRequest `json:"evidence"`
	// Audience is the relying party's identifier: the result's aud. Required; for evidence
	// bound to an origin (Evidence.Origin) it must be a URL of that origin, without userinfo,
	// query or fragment; an issuer with an audience allowlist refuses names outside it.
	Audience string `json:"audience"`
}

// AppraiseResponse answers a successful POST /v1/appraise.
type AppraiseResponse struct {
	// Result is the signed attestation result, a compact JWS with typ "eat+jwt" like a
	// passport token, whose aud is the request's Audience and whose eat_nonce is the evidence's
	// nonce (base64url, no padding).
	Result string `json:"result"`
	// ExpiresAt is the result's exp claim.
	ExpiresAt time.Time `json:"expires_at"`
}

// EncodeNonce returns a nonce as it travels in headers and in eat_nonce: base64url without
// padding (RFC 4648 section 5).
func EncodeNonce(n []byte) string { return encode(n) }

// DecodeNonce reads a nonce in the encoding of EncodeNonce (padded or standard base64 is
// accepted too).
func DecodeNonce(s string) ([]byte, error) { return decode(s) }
