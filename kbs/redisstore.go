package kbs

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/api"
)

// KEKSize is the size of a RedisStore key-encryption key: 32 bytes (AES-256).
const KEKSize = 32

// sealVersion is the first byte of every value RedisStore writes; it names the format
// version(1) || nonce(12) || AES-256-GCM ciphertext and tag.
const sealVersion = 1

// RedisStore keeps secrets in Redis (go-redis v9 UniversalClient: single, Sentinel or
// Cluster), each encrypted with AES-256-GCM (NIST SP 800-38D) under a key-encryption key (KEK)
// that never goes to Redis. The resource name is the GCM additional data, so a value copied to
// another key, altered, or written under another KEK is refused (ErrCorrupt) instead of
// released. Keys are PREFIX:secret:repository/type/tag.
type RedisStore struct {
	client redis.UniversalClient
	prefix string
	aead   cipher.AEAD
}

// NewRedisStore returns a store on client with key prefix prefix (e.g. "passport-kbs") and the
// 32-byte kek (see LoadKEK). The client is not closed by the store.
func NewRedisStore(client redis.UniversalClient, prefix string, kek []byte) (*RedisStore, error) {
	if client == nil {
		return nil, errors.New("kbs: nil Redis client")
	}
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("kbs: key-encryption key is %d bytes, want %d", len(kek), KEKSize)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("kbs: key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("kbs: key-encryption key: %w", err)
	}
	return &RedisStore{client: client, prefix: prefix, aead: aead}, nil
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// LoadKEK reads a key-encryption key from path: exactly 32 raw bytes (not all printable), or (surrounding white
// space ignored) 64 hex digits or the standard or URL base64 encoding of 32 bytes. Anything else
// is an error that does not echo the file's content. Generate one with
// `head -c 32 /dev/urandom > kek` and keep it readable by the KBS only.
func LoadKEK(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kbs: key-encryption key: %w", err)
	}
	// 32 bytes that are all printable are text (the hex of 16 bytes, say), not a raw key: a
	// random key is all printable with probability (95/256)^32, about 2^-46.
	if len(b) == KEKSize && !printable(b) {
		return b, nil
	}
	s := string(bytes.TrimSpace(b))
	if k, err := hex.DecodeString(s); err == nil && len(k) == KEKSize {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KEKSize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("kbs: key-encryption key %s is not 32 raw bytes, 64 hex digits or base64 of 32 bytes", path)
}

func (s *RedisStore) key(id api.ResourceID) string { return s.prefix + ":secret:" + id.String() }

// aad binds a sealed value to its resource name.
func aad(id api.ResourceID) []byte { return []byte("passport-kbs-secret/v1:" + id.String()) }

// Get implements Store.
func (s *RedisStore) Get(ctx context.Context, id api.ResourceID) ([]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	v, err := s.client.Get(ctx, s.key(id)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
	}
	ns := s.aead.NonceSize()
	if len(v) < 1+ns+s.aead.Overhead() || v[0] != sealVersion {
		return nil, fmt.Errorf("%w: %s: unknown format", ErrCorrupt, id)
	}
	pt, err := s.aead.Open(nil, v[1:1+ns], v[1+ns:], aad(id))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, id, err)
	}
	return pt, nil
}

// Put implements Store with one SET of the sealed value (atomic in Redis).
func (s *RedisStore) Put(ctx context.Context, id api.ResourceID, secret []byte) error {
	if err := checkPut(id, secret); err != nil {
		return err
	}
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(secret)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return err
	}
	out = s.aead.Seal(out, out[1:1+ns], secret, aad(id))
	if err := s.client.Set(ctx, s.key(id), out, 0).Err(); err != nil {
		return fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
	}
	return nil
}

// Delete implements Store.
func (s *RedisStore) Delete(ctx context.Context, id api.ResourceID) error {
	if err := id.Validate(); err != nil {
		return err
	}
	n, err := s.client.Del(ctx, s.key(id)).Result()
	if err != nil {
		return fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}
