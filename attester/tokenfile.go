package attester

import (
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// ErrTokenNotReusable is returned (wrapped) by Reusable for a token that should not be presented
// again: unreadable, expiring within the margin, or bound to another key.
var ErrTokenNotReusable = errors.New("attester: token not reusable")

// SaveToken writes tok to path and the cnf private key (PKCS#8 PEM) to path + ".key", both
// mode 0600 and each atomically (temporary file and rename): the files `passport attest --out`
// writes.
func SaveToken(path, tok string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("attester: encode cnf key: %w", err)
	}
	if err := writeAtomic(path+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return err
	}
	return writeAtomic(path, []byte(tok+"\n"))
}

// LoadToken reads the token at path and its cnf private key at path + ".key" (as SaveToken
// writes them).
func LoadToken(path string) (string, crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("attester: token: %w", err)
	}
	kb, err := os.ReadFile(path + ".key")
	if err != nil {
		return "", nil, fmt.Errorf("attester: cnf key: %w", err)
	}
	blk, _ := pem.Decode(kb)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return "", nil, fmt.Errorf("attester: %s.key: no PKCS#8 PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return "", nil, fmt.Errorf("attester: %s.key: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return "", nil, fmt.Errorf("attester: %s.key: %T is not a signing key", path, k)
	}
	return strings.TrimSpace(string(b)), s, nil
}

// Reusable returns nil when tok may be presented again with key at now: its exp is at least
// margin away and its cnf.jwk is key's public half (RFC 7638 thumbprints compared). The
// signature is not verified: the relying party does that; this only avoids presenting a token
// that is sure to fail. Errors wrap ErrTokenNotReusable.
func Reusable(tok string, key crypto.Signer, now time.Time, margin time.Duration) error {
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.PS256, jose.RS256})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTokenNotReusable, err)
	}
	var c struct {
		Exp int64 `json:"exp"`
		CNF *struct {
			JWK *jose.JSONWebKey `json:"jwk"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		return fmt.Errorf("%w: claims: %w", ErrTokenNotReusable, err)
	}
	if left := time.Unix(c.Exp, 0).Sub(now); left < margin {
		return fmt.Errorf("%w: expires in %s (margin %s)", ErrTokenNotReusable, left.Round(time.Second), margin)
	}
	if c.CNF == nil || c.CNF.JWK == nil {
		return fmt.Errorf("%w: no cnf key", ErrTokenNotReusable)
	}
	want, err1 := c.CNF.JWK.Thumbprint(crypto.SHA256)
	got, err2 := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err1 != nil || err2 != nil || subtle.ConstantTimeCompare(want, got) != 1 {
		return fmt.Errorf("%w: bound to another key", ErrTokenNotReusable)
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("attester: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("attester: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("attester: %w", err)
	}
	return nil
}
