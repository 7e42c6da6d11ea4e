package api

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// ExtraDataSize is the length of the quote's extraData (qualifyingData): one SHA-256 digest.
const ExtraDataSize = sha256.Size

// ExtraData computes the value the attester passes as the quote's extraData (TPM 2.0 Part 3,
// TPM2_Quote qualifyingData) and the issuer recomputes: SHA-256(nonce || T), where T is the
// RFC 7638 SHA-256 thumbprint of the attester's cnf public key. Binding the key into the quote
// makes the evidence, and so the token, useless to anyone who does not hold that key.
//
// It fails when the nonce is not exactly NonceSize bytes or the key is missing or private.
func ExtraData(nonce []byte, cnf *jose.JSONWebKey) ([]byte, error) {
	if len(nonce) != NonceSize {
		return nil, fmt.Errorf("api: nonce is %d bytes, want %d", len(nonce), NonceSize)
	}
	if cnf == nil || cnf.Key == nil {
		return nil, errors.New("api: no cnf key")
	}
	if !cnf.IsPublic() {
		return nil, errors.New("api: cnf key must be a public key")
	}
	tp, err := cnf.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("api: cnf thumbprint: %w", err)
	}
	h := sha256.New()
	h.Write(nonce)
	h.Write(tp)
	return h.Sum(nil), nil
}
