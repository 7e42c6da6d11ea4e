package relyingparty

import (
	"container/list"
	"sync"

	"github.com/passport-attest/passport/token"
)

// DefaultCacheSize is the default Config.CacheSize: 10,000 verified tokens (about 2 KiB each
// with their decoded claims).
const DefaultCacheSize = 10_000

// cacheKey is the SHA-256 of a whole raw token.
type cacheKey [32]byte

type cacheEntry struct {
	key    cacheKey
	claims *token.Claims
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

// get returns the claims of a cached token. An entry for which expired reports true is dropped
// and reported as a miss, so that the caller verifies the token in full and reports why.
func (c *tokenCache) get(k cacheKey, expired func(*token.Claims) bool) (*token.Claims, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if expired(e.claims) {
		c.removeLocked(el)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e.claims, true
}

func (c *tokenCache) put(k cacheKey, claims *token.Claims) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[k]; ok {
		c.ll.MoveToFront(el)
		return
	}
	el := c.ll.PushFront(&cacheEntry{key: k, claims: claims})
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
