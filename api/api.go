// Package api holds the JSON shapes exchanged between attesters, the issuer (verifier) and relying
// parties over HTTP. It is shared by the issuer's handlers and the attester's client so that both
// sides agree on one definition; it has no logic beyond encoding.
//
// The exchange follows the passport model of RFC 9334 section 5.1: the attester fetches a
// challenge (POST /v1/challenge), answers with evidence (POST /v1/attest) and receives an
// attestation result as a signed token.
package api

import (
	"encoding/base64"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Paths of the issuer's HTTP API (DESIGN.md section 3).
const (
	PathDiscovery = "/.well-known/openid-configuration"
	PathJWKS      = "/.well-known/jwks.json"
	PathChallenge = "/v1/challenge"
	PathAttest    = "/v1/attest"
	PathAppraise  = "/v1/appraise"
)

// NonceSize is the length in bytes of every challenge nonce the issuer hands out: 32 bytes, an
// 8-byte expiry time followed by 24 bytes (192 bits) from crypto/rand.
const NonceSize = 32

// ChallengeResponse answers POST /v1/challenge.
type ChallengeResponse struct {
	// Nonce is NonceSize random bytes, base64url without padding in JSON ([]byte's std encoding
	// is avoided so that it can travel in URLs).
	Nonce Bytes `json:"nonce"`
	// ExpiresAt is when the issuer forgets the nonce (RFC 3339 in JSON).
	ExpiresAt time.Time `json:"expires_at"`
}

// AttestRequest is the body of POST /v1/attest: the evidence for one challenge.
type AttestRequest struct {
	// Nonce is the challenge nonce exactly as received.
	Nonce Bytes `json:"nonce"`
	// Attestation is a go-tpm-tools attest.Attestation protobuf (AK public area, one quote per
	// PCR bank, TCG event log, optional AK certificate), binary-encoded.
	Attestation Bytes `json:"attestation"`
	// CNF is the attester's public key that the token will be bound to (RFC 7800 cnf.jwk).
	// The quotes' extraData must equal SHA-256(nonce || RFC 7638 thumbprint of this key), with
	// Origin appended when set (ExtraDataFor).
	CNF *jose.JSONWebKey `json:"cnf"`
	// Audience is the token's aud claim (required, at most 256 bytes; the issuer may restrict
	// which audiences it mints for).
	Audience string `json:"audience,omitempty"`
	// EATNonce, when set, is echoed in the token's eat_nonce claim (a relying party's nonce, 8 to
	// 88 bytes: RFC 9711 section 4.1).
	EATNonce string `json:"eat_nonce,omitempty"`
	// Origin, when set, is the origin (api.Origin's serialization, e.g. "https://rp.example")
	// of the relying party the evidence was made for in a background check: the quote's
	// extraData is then ExtraDataFor(nonce, cnf, Origin), and the issuer mints only for an
	// Audience that is a URL of that origin.
	Origin string `json:"origin,omitempty"`
}

// AttestResponse answers a successful POST /v1/attest.
type AttestResponse struct {
	// Token is the attestation result: a compact JWS with typ "eat+jwt".
	Token string `json:"token"`
	// ExpiresAt is the token's exp claim.
	ExpiresAt time.Time `json:"expires_at"`
}

// Error is every non-2xx body of the issuer, in the style of RFC 6749 section 5.2.
type Error struct {
	// Code is a short machine-readable word such as "invalid_request" or "nonce_reused".
	Code string `json:"error"`
	// Description says what failed in words an operator can act on. It never carries secrets.
	Description string `json:"error_description,omitempty"`
}

// Error implements the error interface so clients can return the issuer's refusal as is.
func (e *Error) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// Bytes is a byte slice encoded in JSON as unpadded base64url (RFC 4648 section 5), the
// encoding JOSE uses; it also accepts padded and standard base64 on input.
type Bytes []byte

// MarshalText encodes b as unpadded base64url; encoding/json quotes it as a JSON string.
// (Text rather than JSON methods: encoding/json then neither re-scans nor compacts the
// attestation's few kilobytes, a measurable share of an attestation's CPU.)
func (b Bytes) MarshalText() ([]byte, error) {
	out := make([]byte, base64.RawURLEncoding.EncodedLen(len(b)))
	base64.RawURLEncoding.Encode(out, b)
	return out, nil
}

// UnmarshalText decodes a base64url or standard base64 string, padded or not. encoding/json
// calls it with the string's unquoted contents and refuses non-string values.
func (b *Bytes) UnmarshalText(text []byte) error {
	v, err := decodeBytes(text)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
