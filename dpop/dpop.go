// Package dpop implements OAuth 2.0 Demonstrating Proof of Possession (DPoP, RFC 9449) proofs
// for passport tokens: the attester signs a short JWT over each request's method and URL with the
// private half of its token's cnf key, and a relying party checks it, so a stolen token is useless
// without that key. Signing and verification use go-jose; nothing here is hand-rolled crypto.
//
// The relying party's middleware (package relyingparty), the key broker (package kbs) and the
// attester's client transport (package attester) all use this package.
package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Type is the typ header of every DPoP proof (RFC 9449 section 4.2).
const Type = "dpop+jwt"

// HeaderName is the HTTP header carrying the proof (RFC 9449 section 4.1).
const HeaderName = "DPoP"

// Scheme is the Authorization scheme of a DPoP-bound access token (RFC 9449 section 7.1).
const Scheme = "DPoP"

// MaxProofSize bounds the proofs Verify parses (8 KiB: a P-256 proof is ~600 bytes).
const MaxProofSize = 8 << 10

// Errors returned by Verifier.Verify; all wrap ErrInvalid.
var (
	ErrInvalid  = errors.New("dpop: invalid proof")
	ErrReplay   = fmt.Errorf("%w: jti already used", ErrInvalid)
	ErrKey      = fmt.Errorf("%w: proof key is not the token's cnf key", ErrInvalid)
	ErrStale    = fmt.Errorf("%w: iat outside the accepted window", ErrInvalid)
	ErrTarget   = fmt.Errorf("%w: htm or htu does not match the request", ErrInvalid)
	ErrBinding  = fmt.Errorf("%w: ath does not match the access token", ErrInvalid)
	ErrMissing  = fmt.Errorf("%w: no DPoP proof", ErrInvalid)
	ErrTooLarge = fmt.Errorf("%w: proof too large", ErrInvalid)
)

// Claims are a DPoP proof's claims (RFC 9449 section 4.2).
type Claims struct {
	ID       string `json:"jti"`
	Method   string `json:"htm"`
	URL      string `json:"htu"`
	IssuedAt int64  `json:"iat"`
	ATHash   string `json:"ath,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
}

// AccessTokenHash returns the ath value for token: base64url(SHA-256(ASCII token)).
func AccessTokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// NormalizeURL returns u without query and fragment, as htu is compared (RFC 9449 section 4.3
// step 9, RFC 3986 section 6.2.2-6.2.3 normalisation of scheme and host case).
func NormalizeURL(u *url.URL) string {
	c := *u
	c.RawQuery, c.Fragment, c.RawFragment, c.User = "", "", "", nil
	c.Scheme = strings.ToLower(c.Scheme)
	c.Host = strings.ToLower(c.Host)
	if c.Path == "" {
		c.Path = "/"
	}
	return c.String()
}

// NewProof signs a proof for one request with key (ES256 for P-256, ES384 for P-384, EdDSA,
// RS256 for RSA), embedding its public JWK in the header. accessToken, when non-empty, is bound
// with ath. It returns the compact JWS for the DPoP header.
func NewProof(key crypto.Signer, method string, target *url.URL, accessToken string, now time.Time) (string, error) {
	alg, err := algFor(key)
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType(Type)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", fmt.Errorf("dpop: signer: %w", err)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", fmt.Errorf("dpop: jti: %w", err)
	}
	c := Claims{ID: base64.RawURLEncoding.EncodeToString(jti), Method: method, URL: NormalizeURL(target), IssuedAt: now.Unix()}
	if accessToken != "" {
		c.ATHash = AccessTokenHash(accessToken)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(b)
	if err != nil {
		return "", fmt.Errorf("dpop: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// Algorithms accepted in proofs by default: asymmetric only (RFC 9449 section 4.3 step 5).
var Algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.PS256, jose.RS256}

// Verifier checks DPoP proofs and remembers their jti to refuse replays within the window.
// It is safe for concurrent use.
type Verifier struct {
	// Window is how far iat may lie from now, either way (default 60 s).
	Window time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxReplayEntries bounds the jti cache (default 100000); when full, new proofs are refused
	// (fail closed) until old entries expire.
	MaxReplayEntries int

	mu    sync.Mutex
	seen  map[string]int64 // jti (with key thumbprint) -> expiry (unix seconds)
	sweep int64
}

// Verify checks proof for a request with method and URL target presenting accessToken (may be
// empty), whose confirmation key is cnf (may be nil when no token is presented). It follows RFC
// 9449 section 4.3: one well-formed JWS with typ dpop+jwt and an asymmetric alg, a public jwk in
// the header that verifies the signature, htm and htu equal to the request, iat within Window,
// ath equal to the token's hash, the jwk's thumbprint equal to cnf's, and a jti not seen before.
// It returns the proof's key on success.
func (v *Verifier) Verify(proof, method string, target *url.URL, accessToken string, cnf *jose.JSONWebKey) (*jose.JSONWebKey, error) {
	if proof == "" {
		return nil, ErrMissing
	}
	if len(proof) > MaxProofSize {
		return nil, ErrTooLarge
	}
	jws, err := jose.ParseSignedCompact(proof, Algorithms)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want exactly one signature", ErrInvalid)
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != Type {
		return nil, fmt.Errorf("%w: typ %q is not %s", ErrInvalid, typ, Type)
	}
	key := h.JSONWebKey
	if key == nil || !key.Valid() || !key.IsPublic() {
		return nil, fmt.Errorf("%w: header jwk missing, invalid or private", ErrInvalid)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrInvalid, err)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrInvalid, err)
	}
	if c.ID == "" || c.Method == "" || c.URL == "" || c.IssuedAt == 0 {
		return nil, fmt.Errorf("%w: jti, htm, htu and iat are required", ErrInvalid)
	}
	if c.Method != method {
		return nil, fmt.Errorf("%w: htm %q, request %q", ErrTarget, c.Method, method)
	}
	htu, err := url.Parse(c.URL)
	if err != nil || NormalizeURL(htu) != NormalizeURL(target) {
		return nil, fmt.Errorf("%w: htu %q, request %q", ErrTarget, c.URL, NormalizeURL(target))
	}
	now := v.now()
	window := v.Window
	if window <= 0 {
		window = 60 * time.Second
	}
	if d := now.Sub(time.Unix(c.IssuedAt, 0)); d > window || d < -window {
		return nil, ErrStale
	}
	if accessToken != "" {
		if subtle.ConstantTimeCompare([]byte(c.ATHash), []byte(AccessTokenHash(accessToken))) != 1 {
			return nil, ErrBinding
		}
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: thumbprint: %w", ErrInvalid, err)
	}
	if cnf != nil {
		want, err := cnf.Thumbprint(crypto.SHA256)
		if err != nil || subtle.ConstantTimeCompare(tp, want) != 1 {
			return nil, ErrKey
		}
	}
	if err := v.remember(string(tp)+"|"+c.ID, now.Add(window).Unix(), now.Unix()); err != nil {
		return nil, err
	}
	return key, nil
}

func (v *Verifier) remember(id string, exp, now int64) error {
	max := v.MaxReplayEntries
	if max <= 0 {
		max = 100000
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		v.seen = map[string]int64{}
	}
	if now >= v.sweep || len(v.seen) >= max {
		for k, e := range v.seen {
			if e < now {
				delete(v.seen, k)
			}
		}
		v.sweep = now + 10
	}
	if e, ok := v.seen[id]; ok && e >= now {
		return ErrReplay
	}
	if len(v.seen) >= max {
		return fmt.Errorf("%w: replay cache full, retry later", ErrInvalid)
	}
	v.seen[id] = exp
	return nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func algFor(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
		return "", fmt.Errorf("dpop: unsupported curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	case *rsa.PublicKey:
		return jose.RS256, nil
	}
	return "", fmt.Errorf("dpop: unsupported key type %T", key.Public())
}
