package relyingparty

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/token"
)

// DefaultMaxTokenSize is the default Config.MaxTokenSize: 16 KiB. A passport token with a cnf
// key, a status reference and one TPM submodule with 8 PCRs is about 2 KiB; with 24, about 4 KiB.
const DefaultMaxTokenSize = 16 << 10

// asymmetricAlgs are the JWS algorithms a verifier may allow (RFC 7518 section 3.1, RFC 8037):
// public-key signatures only. "none" and the HMAC algorithms are never accepted: a relying party
// holds no shared secret, and an HMAC "key" would be the public key bytes (alg confusion).
var asymmetricAlgs = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
}

func isAsymmetric(alg string) bool {
	for _, a := range asymmetricAlgs {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// header is what the verifier reads from a token's JOSE protected header.
type header struct {
	Alg string
	Kid string
	Typ string
}

// headerRules says what checkCompact requires of the header.
type headerRules struct {
	maxSize int
	algs    []string // allowed alg values
	typ     bool     // require typ eat+jwt
}

// checkCompact checks the shape of a compact JWS without allocating for the payload or the
// signature: the size first, then the alphabet (base64url and exactly two dots; Go's base64
// decoder would silently skip newlines), then the protected header alone. It returns the
// header's alg, kid and typ.
func checkCompact(raw string, r headerRules) (header, error) {
	if len(raw) > r.maxSize {
		return header{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), r.maxSize)
	}
	dots, first := 0, -1
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if b64url[c] {
			continue
		}
		if c != '.' {
			return header{}, fmt.Errorf("%w: byte 0x%02x at offset %d is not base64url", ErrMalformed, c, i)
		}
		dots++
		if dots > 2 {
			return header{}, fmt.Errorf("%w: more than three segments", ErrMalformed)
		}
		if first < 0 {
			first = i
		}
	}
	if dots != 2 {
		return header{}, fmt.Errorf("%w: compact JWS needs three segments", ErrMalformed)
	}
	h, err := parseHeader(raw[:first])
	if err != nil {
		return header{}, err
	}
	if !containsString(r.algs, h.Alg) {
		return header{}, fmt.Errorf("%w: %q", ErrAlgorithm, h.Alg)
	}
	if r.typ && !isEATType(h.Typ) {
		return header{}, fmt.Errorf("%w: typ %q", ErrType, h.Typ)
	}
	rest := raw[first+1:]
	if strings.IndexByte(rest, '.') == 0 || strings.HasSuffix(rest, ".") {
		return header{}, fmt.Errorf("%w: empty payload or signature", ErrMalformed)
	}
	return h, nil
}

// b64url marks the bytes of the base64url alphabet (RFC 4648 section 5), for checkCompact's
// scan: one table lookup per byte.
var b64url = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = true
	}
	return t
}()

// parseHeader decodes the protected header segment and refuses the parameters that would let a
// token choose its own key or change the signing input.
func parseHeader(seg string) (header, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return header{}, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return header{}, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	var h header
	for name, v := range m {
		var dst *string
		switch name {
		case "alg":
			dst = &h.Alg
		case "kid":
			dst = &h.Kid
		case "typ":
			dst = &h.Typ
		case "crit", "b64", "jwk", "jku", "x5u", "x5c":
			return header{}, fmt.Errorf("%w: %q", ErrHeader, name)
		default:
			continue // cty, x5t and private parameters carry no verification semantics here
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return header{}, fmt.Errorf("%w: header %q is not a string", ErrMalformed, name)
		}
	}
	return h, nil
}

// isEATType compares typ to "eat+jwt" as RFC 7515 section 4.1.9 asks: case-insensitively, with
// the "application/" prefix optional.
func isEATType(typ string) bool {
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	return strings.EqualFold(typ, token.Type)
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
