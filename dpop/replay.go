package dpop

import "container/heap"

// DefaultMaxReplayEntries is the default bound of a Verifier's replay cache: live proofs
// remembered at once, all keys together.
const DefaultMaxReplayEntries = 100_000

// DefaultMaxEntriesPerKey is the default bound of one key thumbprint's live proofs in a
// Verifier's replay cache: with the default 60 s window, about 160 requests a second with one
// key, sustained.
const DefaultMaxEntriesPerKey = 10_000

// replayCache is the set of remembered proofs (key thumbprint | jti), each with the instant it
// may be forgotten, kept in a min-heap by that instant so that expired entries are evicted in
// O(log n) each, eagerly, instead of by scanning the whole set. Not safe for concurrent use:
// Verifier locks it.
type replayCache struct {
	seen   map[string]bool // id -> remembered (every entry of byExp, no other)
	perKey map[string]int  // key thumbprint -> live entries
	byExp  expiryHeap
}

type replayEntry struct {
	until int64 // unix nanoseconds; the entry is live while until >= now
	id    string
	thumb string
}

func (c *replayCache) len() int { return len(c.seen) }

// evict forgets every entry whose until lies before now (unix nanoseconds).
func (c *replayCache) evict(now int64) {
	for len(c.byExp) > 0 && c.byExp[0].until < now {
		e := heap.Pop(&c.byExp).(replayEntry)
		delete(c.seen, e.id)
		if c.perKey[e.thumb]--; c.perKey[e.thumb] <= 0 {
			delete(c.perKey, e.thumb)
		}
	}
}

// add remembers id of key thumb until the instant until (unix nanoseconds). The caller has
// checked that id is not remembered.
func (c *replayCache) add(id, thumb string, until int64) {
	if c.seen == nil {
		c.seen, c.perKey = map[string]bool{}, map[string]int{}
	}
	c.seen[id] = true
	c.perKey[thumb]++
	heap.Push(&c.byExp, replayEntry{until: until, id: id, thumb: thumb})
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
