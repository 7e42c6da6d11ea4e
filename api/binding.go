package api

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"strings"

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
	return ExtraDataFor(nonce, cnf, "")
}

// ExtraDataFor is ExtraData for evidence made for one relying party (the background check,
// docs/BACKGROUND_CHECK.md): SHA-256(nonce || T || origin), where origin is the relying party's
// origin as Origin serializes it; with origin "" it is ExtraData. The nonce and T have fixed
// lengths, so the input is unambiguous. The issuer mints for such evidence only audiences of
// that origin: a relying party that received the evidence cannot have it appraised, nor a
// passport minted, for another relying party.
//
// It fails as ExtraData does, and when origin is not in Origin's serialization.
func ExtraDataFor(nonce []byte, cnf *jose.JSONWebKey, origin string) ([]byte, error) {
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
	if origin != "" {
		if o, err := Origin(origin); err != nil || o != origin {
			return nil, fmt.Errorf("api: %q is not a serialized origin (scheme://host[:port])", origin)
		}
	}
	h := sha256.New()
	h.Write(nonce)
	h.Write(tp)
	h.Write([]byte(origin))
	return h.Sum(nil), nil
}

// Origin returns the ASCII serialization of the origin of rawURL (RFC 6454 sections 4 and
// 6.2): its scheme and host in lower case, and its port unless it is the scheme's default
// (443 for https, 80 for http), e.g. "https://rp.example" for "https://RP.example:443/a?b".
// Only absolute http and https URLs with a host have one; others are an error.
func Origin(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", errors.New("api: not a URL")
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if (scheme != "https" && scheme != "http") || host == "" || u.Opaque != "" {
		return "", errors.New("api: an origin needs an absolute http or https URL with a host")
	}
	if strings.Contains(host, ":") { // an IPv6 literal
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && !(scheme == "https" && p == "443") && !(scheme == "http" && p == "80") {
		host += ":" + p
	}
	return scheme + "://" + host, nil
}
