package api

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

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
// 6.2): its scheme and host in lower case, an IPv6 literal in its canonical form (RFC 5952),
// and its port as a decimal number unless it is the scheme's default (443 for https, 80 for
// http), e.g. "https://rp.example" for "https://RP.example:443/a?b". Only absolute http and
// https URLs whose host is ASCII (an internationalized name in its A-label form, xn--) have
// one; others, and IPv6 literals with a zone, are an error. Non-ASCII hosts are refused rather
// than case-folded: Unicode lower-casing maps some non-ASCII letters to ASCII ones ("İ" to
// "i"), so a host an HTTP client resolves elsewhere could otherwise serialize as another.
func Origin(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", errors.New("api: not a URL")
	}
	scheme := strings.ToLower(u.Scheme)
	host := u.Hostname()
	if (scheme != "https" && scheme != "http") || host == "" || u.Opaque != "" {
		return "", errors.New("api: an origin needs an absolute http or https URL with a host")
	}
	for i := 0; i < len(host); i++ {
		if host[i] >= utf8.RuneSelf {
			return "", errors.New("api: an origin's host must be ASCII (use the xn-- form of an internationalized name)")
		}
	}
	host = strings.ToLower(host)
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		if a.Zone() != "" {
			return "", errors.New("api: an origin's IPv6 literal must not have a zone")
		}
		host = "[" + a.String() + "]"
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", errors.New("api: an origin's port must be 1 to 65535")
		}
		if !(scheme == "https" && n == 443) && !(scheme == "http" && n == 80) {
			host += ":" + strconv.Itoa(n)
		}
	}
	return scheme + "://" + host, nil
}

// AudienceOfOrigin reports whether audience is an http or https URL without userinfo, query or
// fragment whose origin (Origin) is origin: the audiences the issuer mints for evidence bound
// to origin (AttestRequest.Origin), and the audience a background-check relying party at
// origin must have.
func AudienceOfOrigin(audience, origin string) bool {
	u, err := url.Parse(audience)
	if err != nil || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return false
	}
	o, err := Origin(audience)
	return err == nil && o == origin
}
