package kbs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// MediaType is the Content-Type of a release: a compact JWE (RFC 7516 section 9, RFC 7515
// section 9.2.1 "application/jose").
const MediaType = "application/jose"

// ContentEncryption is the JWE enc of every release: AES-256-GCM (RFC 7518 section 5.3).
const ContentEncryption = jose.A256GCM

// MinRSABits is the smallest RSA cnf key a secret is encrypted to.
const MinRSABits = 2048

// ErrCNF: the token's cnf key cannot receive a secret: missing, private, not for encryption
// (use other than "enc"), an unsupported type or curve, too short, or not a point of its curve.
var ErrCNF = errors.New("kbs: cnf key cannot receive secrets")

// KeyAlgorithm returns the JWE alg used to encrypt to cnf: ECDH-ES+A256KW (RFC 7518 section
// 4.6) for an EC key on P-256, P-384 or P-521, RSA-OAEP-256 (RFC 7518 section 4.3) for an RSA
// key of at least MinRSABits. Every other key fails with ErrCNF. An EC point that is not on its
// curve is refused (go-jose refuses it when the JWK is parsed; this checks keys built in code).
func KeyAlgorithm(cnf *jose.JSONWebKey) (jose.KeyAlgorithm, error) {
	if cnf == nil || cnf.Key == nil {
		return "", fmt.Errorf("%w: no key", ErrCNF)
	}
	if !cnf.IsPublic() {
		return "", fmt.Errorf("%w: a cnf key must be public", ErrCNF)
	}
	if cnf.Use != "" && cnf.Use != "enc" {
		return "", fmt.Errorf("%w: use %q", ErrCNF, cnf.Use)
	}
	switch k := cnf.Key.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return "", fmt.Errorf("%w: unsupported curve", ErrCNF)
		}
		if _, err := k.ECDH(); err != nil { // crypto/ecdh refuses points off the curve
			return "", fmt.Errorf("%w: %w", ErrCNF, err)
		}
		return jose.ECDH_ES_A256KW, nil
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < MinRSABits {
			return "", fmt.Errorf("%w: RSA key shorter than %d bits", ErrCNF, MinRSABits)
		}
		return jose.RSA_OAEP_256, nil
	}
	return "", fmt.Errorf("%w: key type %T cannot encrypt", ErrCNF, cnf.Key)
}

// EncryptTo returns secret as a compact JWE (RFC 7516 section 7.1) for cnf alone: alg from
// KeyAlgorithm, enc ContentEncryption, kid the RFC 7638 SHA-256 thumbprint of cnf, no zip. The
// content-encryption key and, for ECDH-ES, the ephemeral key are fresh for every call.
func EncryptTo(cnf *jose.JSONWebKey, secret []byte) (string, error) {
	alg, err := KeyAlgorithm(cnf)
	if err != nil {
		return "", err
	}
	tp, err := cnf.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("%w: thumbprint: %w", ErrCNF, err)
	}
	enc, err := jose.NewEncrypter(ContentEncryption, jose.Recipient{
		Algorithm: alg,
		Key:       cnf.Key,
		KeyID:     base64.RawURLEncoding.EncodeToString(tp),
	}, &jose.EncrypterOptions{}) // no Compression: never "zip"
	if err != nil {
		return "", fmt.Errorf("kbs: encrypter: %w", err)
	}
	obj, err := enc.Encrypt(secret)
	if err != nil {
		return "", fmt.Errorf("kbs: encrypt: %w", err)
	}
	return obj.CompactSerialize()
}
