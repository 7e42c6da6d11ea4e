// Package ratelimit limits requests per client with one token bucket (golang.org/x/time/rate)
// per client, kept in a bounded LRU so that a flood from many addresses costs bounded
// memory. Its purpose on the issuer is POST /v1/challenge: every challenge is a nonce stored
// (in Redis) for its TTL, so an unlimited client could fill the store; with a limit of r per
// second and a TTL of t, one client holds at most burst + r*t nonces.
//
// The client is the connection's remote address (ClientKey): an IPv4 address (IPv4-mapped IPv6
// addresses count as IPv4), or the /64 prefix of an IPv6 address, since one host or site is
// usually given a whole /64 and could otherwise take a fresh bucket with each of its addresses.
// Behind a reverse proxy or NAT every client shares the proxy's bucket (the issuer sees the
// proxy's address): limit at the proxy as well, or run the issuer where it sees clients
// directly.
package ratelimit

import (
	"container/list"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter holds one token bucket per client key. It is safe for concurrent use.
type Limiter struct {
	limit rate.Limit
	burst int
	max   int
	now   func() time.Time

	mu sync.Mutex
	ll *list.List // of *entry, most recently used first
	m  map[string]*list.Element
}

type entry struct {
	key string
	lim *rate.Limiter
}

// Option configures New.
type Option func(*Limiter)

// WithClock injects the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(l *Limiter) { l.now = now } }

// New returns a limiter allowing perSecond requests per client on average with bursts of
// burst, remembering at most maxClients clients (the least recently seen is forgotten, and
// starts again with a full bucket). perSecond <= 0 disables limiting.
func New(perSecond float64, burst, maxClients int, opts ...Option) *Limiter {
	l := &Limiter{limit: rate.Limit(perSecond), burst: max(burst, 1), max: max(maxClients, 1), now: time.Now,
		ll: list.New(), m: make(map[string]*list.Element)}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Allow takes one token from key's bucket. When the bucket is empty it returns false and how
// long until a token is available.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if l.limit <= 0 {
		return true, 0
	}
	now := l.now()
	lim := l.get(key)
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Len returns the number of clients remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ll.Len()
}

func (l *Limiter) get(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.m[key]; ok {
		l.ll.MoveToFront(el)
		return el.Value.(*entry).lim
	}
	e := &entry{key: key, lim: rate.NewLimiter(l.limit, l.burst)}
	l.m[key] = l.ll.PushFront(e)
	for l.ll.Len() > l.max {
		old := l.ll.Back()
		l.ll.Remove(old)
		delete(l.m, old.Value.(*entry).key)
	}
	return e.lim
}

// ClientIP returns the IP of r's peer (RemoteAddr without the port).
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ClientKey returns the rate-limit key of r's peer: its IPv4 address ("192.0.2.1"; an
// IPv4-mapped IPv6 address gives its IPv4 address), or the /64 prefix of its IPv6 address
// ("2001:db8:1:2::/64", zone dropped). A RemoteAddr that is not an IP is its own key.
func ClientKey(r *http.Request) string {
	host := ClientIP(r)
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return addr.String()
	}
	p, err := addr.WithZone("").Prefix(64)
	if err != nil {
		return host
	}
	return p.String()
}

// Middleware refuses requests over the client's limit (the client being ClientKey) with 429 Too Many Requests, a
// Retry-After header in whole seconds (RFC 9110 section 10.2.3) and the JSON error body
// {"error":"rate_limited",...} of the issuer API; onLimited (may be nil) is called for each.
func (l *Limiter) Middleware(next http.Handler, onLimited func(r *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait := l.Allow(ClientKey(r))
		if ok {
			next.ServeHTTP(w, r)
			return
		}
		if onLimited != nil {
			onLimited(r)
		}
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"error":             "rate_limited",
			"error_description": "too many requests from this client; retry after the Retry-After delay",
		})
	})
}
