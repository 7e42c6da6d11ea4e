package dpop

import (
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
)

// DefaultMaxReplayEntries is the default bound of a Verifier's replay cache: live proofs
// remembered at once, all holders together.
const DefaultMaxReplayEntries = 100_000

// DefaultMaxEntriesPerKey is the default bound of one holder's live proofs in a Verifier's
// replay cache (see Verifier.MaxEntriesPerKey): with the default 60 s window, about 160
// requests a second by one holder, sustained.
const DefaultMaxEntriesPerKey = 10_000

// digest is a replay cache name: a SHA-256 value, the same size whatever it names.
type digest = [sha256.Size]byte

// Domain tags of the cache's digests. They differ in their first bytes, so that no proof id,
// key holder or named holder hashes the same input as another kind.
const (
	tagProof      = "dpop proof\x00"  // + 8-byte big-endian thumbprint length + thumbprint + jti
	tagHolderKey  = "dpop key\x00"    // + key thumbprint
	tagHolderName = "dpop holder\x00" // + holder name
)

// proofID names a proof in the replay cache: SHA-256 over tagProof, the length of the key
// thumbprint, the thumbprint and the jti. The length prefix keeps (thumbprint, jti) pairs
// apart however long each is; the digest keeps an entry's size fixed, however long a jti the
// client sent (up to MaxProofSize).
func proofID(thumb []byte, jti string) digest {
	var buf [128]byte // a usual proof's input fits: no allocation on the per-request path
	b := append(buf[:0], tagProof...)
	b = binary.BigEndian.AppendUint64(b, uint64(len(thumb)))
	b = append(append(b, thumb...), jti...)
	return sha256.Sum256(b)
}

// holderID names the holder whose share of the cache a proof takes: holder when the caller
// names one, else the proof's key (its thumbprint).
func holderID(holder string, thumb []byte) digest {
	var buf [128]byte
	b := append(buf[:0], tagHolderKey...)
	b = append(b, thumb...)
	if holder != "" {
		b = append(append(buf[:0], tagHolderName...), holder...)
	}
	return sha256.Sum256(b)
}

// replayCache is the set of remembered proofs (by proofID), each with the instant it may be
// forgotten and the holder it counts against, kept in a min-heap by that instant so that
// expired entries are evicted in O(log n) each, eagerly, instead of by scanning the whole set.
// Every entry has the same size, whatever the proof carried. Not safe for concurrent use:
// Verifier locks it.
type replayCache struct {
	seen      map[digest]struct{} // proof id -> remembered (every entry of byExp, no other)
	perHolder map[digest]int      // holder id -> live entries
	byExp     expiryHeap
}

type replayEntry struct {
	until  int64 // unix nanoseconds; the entry is live while until >= now
	id     digest
	holder digest
}

func (c *replayCache) len() int { return len(c.seen) }

func (c *replayCache) has(id digest) bool {
	_, ok := c.seen[id]
	return ok
}

// evict forgets every entry whose until lies before now (unix nanoseconds).
func (c *replayCache) evict(now int64) {
	for len(c.byExp) > 0 && c.byExp[0].until < now {
		e := heap.Pop(&c.byExp).(replayEntry)
		delete(c.seen, e.id)
		if c.perHolder[e.holder]--; c.perHolder[e.holder] <= 0 {
			delete(c.perHolder, e.holder)
		}
	}
}

// add remembers id, counted against holder, until the instant until (unix nanoseconds). The
// caller has checked that id is not remembered.
func (c *replayCache) add(id, holder digest, until int64) {
	if c.seen == nil {
		c.seen, c.perHolder = map[digest]struct{}{}, map[digest]int{}
	}
	c.seen[id] = struct{}{}
	c.perHolder[holder]++
	heap.Push(&c.byExp, replayEntry{until: until, id: id, holder: holder})
}

// expiryHeap is a container/heap min-heap of entries by until.
type expiryHeap []replayEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until < h[j].until }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(replayEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = replayEntry{}
	*h = old[:len(old)-1]
	return e
}
