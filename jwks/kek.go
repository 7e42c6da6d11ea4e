package jwks

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
)

// KEKSize is the size of a key-encryption key: 32 bytes, an AES-256 key.
const KEKSize = 32

// KEK is a key-encryption key: it seals the private signing keys that replicas share through
// a Storage with AES-256-GCM (NIST SP 800-38D; Go's crypto/cipher), each under a fresh random
// 96-bit nonce and bound to its kid as additional authenticated data, so that a sealed key
// cannot be swapped for another kid's. Sealed form: nonce || ciphertext || tag.
type KEK struct {
	aead cipher.AEAD
}

// ErrUnseal means a sealed private key does not open under this KEK: the wrong KEK, or a
// tampered or swapped document.
var ErrUnseal = errors.New("jwks: sealed key does not open under this key-encryption key")

// NewKEK returns a KEK for a 32-byte key.
func NewKEK(key []byte) (*KEK, error) {
	if len(key) != KEKSize {
		return nil, fmt.Errorf("jwks: key-encryption key is %d bytes, want %d", len(key), KEKSize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("jwks: key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("jwks: key-encryption key: %w", err)
	}
	return &KEK{aead: aead}, nil
}

// GenerateKEK returns a random KEK, for a keyring kept in this process only.
func GenerateKEK() (*KEK, error) {
	k := make([]byte, KEKSize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("jwks: key-encryption key: %w", err)
	}
	return NewKEK(k)
}

// LoadKEK reads a KEK from path: 32 raw bytes, or (surrounding white space ignored) 64
// hexadecimal digits or the standard or URL-safe base64 of 32 bytes. Create one with
// `head -c 32 /dev/urandom > kek` and keep it mode 0600, apart from the key storage.
func LoadKEK(path string) (*KEK, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwks: read key-encryption key: %w", err)
	}
	if len(b) == KEKSize {
		return NewKEK(b)
	}
	t := string(bytes.TrimSpace(b))
	if k, err := hex.DecodeString(t); err == nil && len(k) == KEKSize {
		return NewKEK(k)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(t); err == nil && len(k) == KEKSize {
			return NewKEK(k)
		}
	}
	return nil, fmt.Errorf("jwks: %s: want 32 bytes, raw, hex or base64", path)
}

func aad(kid string) []byte { return []byte("passport-jwks-v1:" + kid) }

// seal encrypts plaintext for kid.
func (k *KEK) seal(kid string, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("jwks: seal: %w", err)
	}
	return k.aead.Seal(nonce, nonce, plaintext, aad(kid)), nil
}

// open decrypts what seal returned for kid, or fails with ErrUnseal.
func (k *KEK) open(kid string, sealed []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n+k.aead.Overhead() {
		return nil, fmt.Errorf("%w: kid %s: too short", ErrUnseal, kid)
	}
	pt, err := k.aead.Open(nil, sealed[:n], sealed[n:], aad(kid))
	if err != nil {
		return nil, fmt.Errorf("%w: kid %s", ErrUnseal, kid)
	}
	return pt, nil
}
