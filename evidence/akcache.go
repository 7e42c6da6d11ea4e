package evidence

import (
	"crypto"
	"crypto/sha256"
	"sync"

	pb "github.com/google/go-tpm-tools/proto/attest"
)

// maxAKCache bounds the decoded-AK cache; a full cache is cleared (attesters come back, the
// cost of a miss is one TPMT_PUBLIC decode).
const maxAKCache = 100000

// akEntry is an AK public area decoded, checked (CheckAKAttributes) and thumbprinted once.
type akEntry struct {
	pub crypto.PublicKey
	id  string
}

// akCache remembers decoded AK public areas by SHA-256 of their encoding, so that an attester
// coming back does not pay the TPMT_PUBLIC decode and the RFC 7638 thumbprint again. Only
// areas that passed decodeAK are cached, so a hit is as good as the checks.
type akCache struct {
	mu sync.RWMutex
	m  map[[32]byte]akEntry
}

// get returns the decoded AK of att, decoding and caching it on a miss.
func (c *akCache) get(att *pb.Attestation) (akEntry, error) {
	k := sha256.Sum256(att.GetAkPub())
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return e, nil
	}
	_, pub, err := decodeAK(att)
	if err != nil {
		return akEntry{}, err
	}
	id, err := Thumbprint(pub)
	if err != nil {
		return akEntry{}, fail(CheckDecode, err)
	}
	e = akEntry{pub: pub, id: id}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxAKCache {
		c.m = make(map[[32]byte]akEntry)
	}
	c.m[k] = e
	c.mu.Unlock()
	return e, nil
}
