package ratelimit

import (
	"net/http"
	"sync"
	"time"
)

// Concurrency caps requests in progress at once: at most total in all and at most perClient
// per client key (ClientKey). It is meant for long-lived requests such as event streams,
// which a rate limit does not bound: each holds a goroutine, buffers and a file descriptor
// for as long as it lasts. It remembers only the clients holding a slot, so its memory is
// bounded by total. It is safe for concurrent use.
type Concurrency struct {
	total, perClient int

	mu    sync.Mutex
	n     int
	byKey map[string]int
}

// NewConcurrency returns a cap of total requests in all and perClient per client; a value
// below 1 counts as 1.
func NewConcurrency(total, perClient int) *Concurrency {
	return &Concurrency{total: max(total, 1), perClient: max(perClient, 1), byKey: map[string]int{}}
}

// Acquire takes a slot for key. It returns scope "" and a release function to call exactly
// once when the request ends, or the scope of the cap that refused (ScopeClient when key
// holds perClient slots already, else ScopeGlobal when total are held) and a nil release.
func (c *Concurrency) Acquire(key string) (release func(), scope string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.byKey[key] >= c.perClient:
		return nil, ScopeClient
	case c.n >= c.total:
		return nil, ScopeGlobal
	}
	c.n++
	c.byKey[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.n--
			if c.byKey[key]--; c.byKey[key] <= 0 {
				delete(c.byKey, key)
			}
		})
	}, ""
}

// InUse returns the number of slots held and of clients holding them.
func (c *Concurrency) InUse() (slots, clients int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, len(c.byKey)
}

// Middleware serves a request only while it holds a slot for its client (ClientKey) and
// refuses the others with 503 Service Unavailable, a Retry-After of retryAfter (whole
// seconds, at least 1) and the JSON body {"error":"temporarily_unavailable",...} of the
// issuer API; onRefused (may be nil) is called for each with the scope of the cap
// (ScopeClient, ScopeGlobal). 503 rather than 429: the server is out of a resource, which
// it frees as other requests end.
func (c *Concurrency) Middleware(next http.Handler, retryAfter time.Duration, onRefused func(r *http.Request, scope string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, scope := c.Acquire(ClientKey(r))
		if release != nil {
			defer release()
			next.ServeHTTP(w, r)
			return
		}
		if onRefused != nil {
			onRefused(r, scope)
		}
		desc := "too many concurrent requests from this client; retry after the Retry-After delay"
		if scope == ScopeGlobal {
			desc = "the server holds as many concurrent requests of this kind as it serves; retry after the Retry-After delay"
		}
		refuse(w, http.StatusServiceUnavailable, retryAfter, "temporarily_unavailable", desc)
	})
}
