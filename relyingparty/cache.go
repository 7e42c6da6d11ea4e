package relyingparty

import (
	"container/list"
	"crypto/sha256"
	"strings"
	"sync"

	"github.com/passport-attest/passport/token"
)

// DefaultCacheSize is the default Config.CacheSize: 10,000 verified tokens (about 4 KiB each:
// the token itself and its decoded claims).
const DefaultCacheSize = 10_000

// cacheKey is the SHA-256 of a token's signature segment (the text after its last dot), see
// keyOf. It only locates an entry: a hit also requires the whole presented token to equal the
// one stored in the entry.
type cacheKey [32]byte

// keyOf returns the cache key of raw: SHA-256 over its signature segment only (86 bytes for
// ES256 instead of ~2 KiB for the whole token, ~0.2 us instead of ~1.4 us).
//
// Why this is safe: the key is not trusted to identify a token. get accepts an entry only when
// the presented token equals, byte for byte, the token that was verified and stored in it
// (tokensEqual, in constant time). So the key's only job is to find candidates, and an
// attacker who copies a cached token's signature segment onto another header or payload (the
// obvious way to aim at an entry) finds the entry, fails the comparison and goes through full
// verification, which refuses the forgery. SHA-256 stays collision resistant, so distinct
// signature segments never share an entry by accident or by design; and the whole-token
// comparison, not the key, is the security boundary, so a weaker hash here could cost
// performance, never correctness.
func keyOf(raw string) cacheKey {
	return sha256.Sum256(bytesOf(raw[strings.LastIndexByte(raw, '.')+1:]))
}

type cacheEntry struct {
	key    cacheKey
	raw    string // the verified token, compared in full on every hit
	claims *token.Claims
	by     keyRef // the key that verified raw; the entry is valid only while it is held
}

// tokenCache is a bounded LRU of tokens that passed verification, with an index by jti for
// revocation. Claims are immutable once stored.
type tokenCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // of *cacheEntry, most recently used first
	byKey map[cacheKey]*list.Element
	byJTI map[string][]*list.Element
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{
		max:   max,
		ll:    list.New(),
		byKey: make(map[cacheKey]*list.Element),
		byJTI: make(map[string][]*list.Element),
	}
}

// get returns the claims of the cached token raw, whose key is k. An entry whose token differs
// from raw is a miss and stays cached. An entry past its exp (expiredAt, in Unix seconds,
// leeway applied), or whose verification key held no longer reports held, is dropped and
// reported as a miss, so that the caller verifies the token in full and reports why.
func (c *tokenCache) get(k cacheKey, raw string, expiredAt int64, held keyHolder) (*token.Claims, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !tokensEqual(e.raw, raw) {
		return nil, false
	}
	if expiredAt > e.claims.Expiry || !held.holds(e.by) {
		c.removeLocked(el)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e.claims, true
}

// put remembers the verified token raw (key k) with its claims and the key that verified it.
// An entry with the same key and another token (which SHA-256 collision resistance rules out
// in practice) is replaced.
func (c *tokenCache) put(k cacheKey, raw string, claims *token.Claims, by keyRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[k]; ok {
		if tokensEqual(el.Value.(*cacheEntry).raw, raw) {
			c.ll.MoveToFront(el)
			return
		}
		c.removeLocked(el)
	}
	// A copy: raw may be a slice of a larger string (a whole Authorization header) that the
	// cache must not keep alive.
	el := c.ll.PushFront(&cacheEntry{key: k, raw: strings.Clone(raw), claims: claims, by: by})
	c.byKey[k] = el
	c.byJTI[claims.ID] = append(c.byJTI[claims.ID], el)
	for c.ll.Len() > c.max {
		c.removeLocked(c.ll.Back())
	}
}

func (c *tokenCache) removeLocked(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.ll.Remove(el)
	delete(c.byKey, e.key)
	els := c.byJTI[e.claims.ID]
	for i, x := range els {
		if x == el {
			els = append(els[:i], els[i+1:]...)
			break
		}
	}
	if len(els) == 0 {
		delete(c.byJTI, e.claims.ID)
	} else {
		c.byJTI[e.claims.ID] = els
	}
}

// forget drops every entry with this jti and returns how many there were.
func (c *tokenCache) forget(jti string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	els := append([]*list.Element(nil), c.byJTI[jti]...)
	for _, el := range els {
		c.removeLocked(el)
	}
	return len(els)
}

// forgetIf drops every entry whose claims match and returns how many there were.
func (c *tokenCache) forgetIf(match func(*token.Claims) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for el := c.ll.Front(); el != nil; {
		next := el.Next()
		if match(el.Value.(*cacheEntry).claims) {
			c.removeLocked(el)
			n++
		}
		el = next
	}
	return n
}

func (c *tokenCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	clear(c.byKey)
	clear(c.byJTI)
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
