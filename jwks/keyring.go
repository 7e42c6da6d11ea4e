// Package jwks owns the issuer's signing keys: it signs attestation results with exactly one
// active key and publishes the public half of every key a relying party may meet as a JSON Web
// Key Set (RFC 7517 section 5), together with the OpenID-style discovery document that points to
// it (OpenID Connect Discovery 1.0 section 3, RFC 8414).
//
// Private keys never leave this package: callers get signatures and public keys only.
package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/go-jose/go-jose/v4"
)

// Supported signing algorithms (RFC 7518 section 3.1, RFC 8037 for EdDSA). ES256 is the default.
var Algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.PS256, jose.RS256}

// ErrNoKey is returned when the keyring has no active signing key.
var ErrNoKey = errors.New("jwks: no active signing key")

// Key is one signing key. Its private half is unexported; kid is the RFC 7638 thumbprint
// (SHA-256, base64url) of the public key.
type Key struct {
	kid     string
	alg     jose.SignatureAlgorithm
	private crypto.Signer
	public  jose.JSONWebKey
	signer  jose.Signer
}

// KID returns the key id published in the JWKS and in every token header it signs.
func (k *Key) KID() string { return k.kid }

// Algorithm returns the JWS alg the key signs with.
func (k *Key) Algorithm() jose.SignatureAlgorithm { return k.alg }

// Public returns the public JWK (kid, alg, use "sig").
func (k *Key) Public() jose.JSONWebKey { return k.public }

// GenerateKey creates a fresh key for alg: P-256 for ES256, P-384 for ES384, Ed25519 for EdDSA,
// RSA 3072 for PS256 and RS256.
func GenerateKey(alg jose.SignatureAlgorithm) (*Key, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case jose.PS256, jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("jwks: unsupported algorithm %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("jwks: generate %s key: %w", alg, err)
	}
	return NewKey(priv, alg)
}

// NewKey wraps an existing private key. alg may be empty to pick the natural algorithm of the
// key type (ES256/ES384 by curve, EdDSA, RS256 for RSA); a mismatching alg is an error.
func NewKey(priv crypto.Signer, alg jose.SignatureAlgorithm) (*Key, error) {
	natural, err := naturalAlg(priv)
	if err != nil {
		return nil, err
	}
	if alg == "" {
		alg = natural
	}
	if !compatible(natural, alg) {
		return nil, fmt.Errorf("jwks: algorithm %s does not fit a key for %s", alg, natural)
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: string(alg), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("jwks: thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	pub.KeyID = kid
	k := &Key{kid: kid, alg: alg, private: priv, public: pub}
	opts := (&jose.SignerOptions{}).WithType("eat+jwt").WithHeader(jose.HeaderKey("kid"), kid)
	k.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv}, opts)
	if err != nil {
		return nil, fmt.Errorf("jwks: signer: %w", err)
	}
	return k, nil
}

func naturalAlg(priv crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch p := priv.(type) {
	case *ecdsa.PrivateKey:
		switch p.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
		return "", fmt.Errorf("jwks: unsupported curve %s", p.Curve.Params().Name)
	case ed25519.PrivateKey:
		return jose.EdDSA, nil
	case *rsa.PrivateKey:
		if p.N.BitLen() < 2048 {
			return "", fmt.Errorf("jwks: RSA key of %d bits is too short (2048 minimum)", p.N.BitLen())
		}
		return jose.RS256, nil
	}
	return "", fmt.Errorf("jwks: unsupported key type %T", priv)
}

func compatible(natural, alg jose.SignatureAlgorithm) bool {
	if natural == jose.RS256 {
		return alg == jose.RS256 || alg == jose.PS256
	}
	return natural == alg
}

// LoadKeyFile reads a PEM private key (PKCS#8 "PRIVATE KEY", SEC 1 "EC PRIVATE KEY" or PKCS#1
// "RSA PRIVATE KEY") from path. alg may be empty (see NewKey).
func LoadKeyFile(path string, alg jose.SignatureAlgorithm) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwks: read signing key: %w", err)
	}
	priv, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("jwks: %s: %w", path, err)
	}
	return NewKey(priv, alg)
}

// ParsePrivateKeyPEM decodes the first PEM block of b as a private key (PKCS#8, SEC 1, PKCS#1).
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", key)
	}
	return s, nil
}

// MarshalPrivateKeyPEM encodes the key's private half as PKCS#8 PEM, for `passport keys` to write
// a key file with mode 0600. It is the only way a private key leaves the package.
func (k *Key) MarshalPrivateKeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.private)
	if err != nil {
		return nil, fmt.Errorf("jwks: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Keyring holds the active signing key and every public key relying parties should accept.
// It is safe for concurrent use.
type Keyring struct {
	mu        sync.RWMutex
	active    *Key
	published []*Key // public keys in the JWKS, active first
	jwksJSON  []byte
	etag      string
}

// NewKeyring returns a keyring that signs with active and publishes it.
func NewKeyring(active *Key) *Keyring {
	r := &Keyring{}
	r.SetKeys(active, nil)
	return r
}

// SetKeys replaces the active key and the extra published keys (the next key before it signs,
// retired keys until their last token expires) in one atomic step.
func (r *Keyring) SetKeys(active *Key, others []*Key) {
	pub := make([]*Key, 0, 1+len(others))
	if active != nil {
		pub = append(pub, active)
	}
	for _, k := range others {
		if k != nil && (active == nil || k.kid != active.kid) {
			pub = append(pub, k)
		}
	}
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(pub))}
	for _, k := range pub {
		set.Keys = append(set.Keys, k.public)
	}
	b, err := json.Marshal(set)
	if err != nil { // public JWKs always marshal; keep the old set if not
		return
	}
	sum := sha256.Sum256(b)
	r.mu.Lock()
	r.active, r.published, r.jwksJSON = active, pub, b
	r.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	r.mu.Unlock()
}

// Sign serialises payload (a JSON-marshalable claim set) as a compact JWS with the active key:
// header alg, kid, typ "eat+jwt" and nothing else (never jwk, jku or x5u). It returns the token
// and the kid that signed it.
func (r *Keyring) Sign(payload any) (string, string, error) {
	r.mu.RLock()
	k := r.active
	r.mu.RUnlock()
	if k == nil {
		return "", "", ErrNoKey
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return "", "", fmt.Errorf("jwks: marshal claims: %w", err)
	}
	jws, err := k.signer.Sign(b)
	if err != nil {
		return "", "", fmt.Errorf("jwks: sign: %w", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		return "", "", fmt.Errorf("jwks: serialize: %w", err)
	}
	return s, k.kid, nil
}

// Active returns the public JWK of the signing key, or ErrNoKey.
func (r *Keyring) Active() (jose.JSONWebKey, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.active == nil {
		return jose.JSONWebKey{}, ErrNoKey
	}
	return r.active.public, nil
}

// PublicSet returns the JWKS (public keys only, active first).
func (r *Keyring) PublicSet() jose.JSONWebKeySet {
	r.mu.RLock()
	defer r.mu.RUnlock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(r.published))}
	for _, k := range r.published {
		set.Keys = append(set.Keys, k.public)
	}
	return set
}

// JWKSJSON returns the serialised JWKS and a strong ETag for it (RFC 9110 section 8.8.3), both
// computed once per key change.
func (r *Keyring) JWKSJSON() ([]byte, string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.jwksJSON, r.etag
}

// Algorithms returns the distinct algorithms of the published keys, for the discovery document.
func (r *Keyring) Algorithms() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	seen := map[jose.SignatureAlgorithm]bool{}
	for _, k := range r.published {
		if !seen[k.alg] {
			seen[k.alg] = true
			out = append(out, string(k.alg))
		}
	}
	return out
}
