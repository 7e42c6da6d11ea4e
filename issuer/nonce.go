package issuer

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/passport-attest/passport/api"
)

// A challenge nonce is api.NonceSize bytes: an 8-byte big-endian expiry time in Unix
// milliseconds followed by 24 random bytes (192 bits from crypto/rand). The expiry prefix is
// not trusted for anything: it only lets the issuer tell "expired" from "unknown or already used"
// when the store no longer holds the nonce, without keeping tombstones. Freshness itself comes
// from the store's single-use entry and its TTL.
const nonceTimeSize = 8

func newNonce(expires time.Time) ([]byte, error) {
	n := make([]byte, api.NonceSize)
	binary.BigEndian.PutUint64(n, uint64(expires.UnixMilli()))
	if _, err := rand.Read(n[nonceTimeSize:]); err != nil {
		return nil, fmt.Errorf("issuer: nonce: %w", err)
	}
	return n, nil
}

// nonceExpired reports whether the expiry prefix of a well-formed nonce lies before now.
func nonceExpired(n []byte, now time.Time) bool {
	if len(n) != api.NonceSize {
		return false
	}
	return int64(binary.BigEndian.Uint64(n)) < now.UnixMilli()
}
