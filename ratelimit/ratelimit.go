// Package ratelimit limits requests per client with one token bucket (golang.org/x/time/rate)
// per client, kept in a bounded LRU so that a flood from many addresses costs bounded
// memory, under an optional global bucket shared by every client (WithGlobal). Its purpose on
// the issuer is the routes that create state: every challenge is a nonce, every enrollment a
// session, stored (in Redis) for its TTL, so an unlimited client could fill the store; with a
// limit of r per second and a TTL of t, one client holds at most burst + r*t entries, and all
// clients together at most globalBurst + globalRate*t whatever their number.
//
// Concurrency caps long-lived requests (the issuer's revocation event streams) instead: at
// most so many at once in all and per client.
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

// Scopes of a refusal: the client's own limit, or the ceiling shared by every client. They are
// the scope label of the issuer's passport_rate_limited_total.
const (
	ScopeClient = "client"
	ScopeGlobal = "global"
)

// Limiter holds one token bucket per client key, and optionally one global bucket
// (WithGlobal). It is safe for concurrent use.
type Limiter struct {
	limit  rate.Limit
	burst  int
	max    int
	now    func() time.Time
	global *rate.Limiter // nil: no global ceiling

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

// WithGlobal adds a ceiling shared by every client: perSecond requests on average with bursts
// of burst, in all (perSecond <= 0: none). A request is counted against it only once its
// client's own bucket allowed it, so a client over its own limit never spends the shared
// tokens that other clients need.
func WithGlobal(perSecond float64, burst int) Option {
	return func(l *Limiter) {
		if perSecond > 0 {
			l.global = rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))
		}
	}
}

// New returns a limiter allowing perSecond requests per client on average with bursts of
// burst, remembering at most maxClients clients (the least recently seen is forgotten, and
// starts again with a full bucket). perSecond <= 0 disables the per-client limit.
func New(perSecond float64, burst, maxClients int, opts ...Option) *Limiter {
	l := &Limiter{limit: rate.Limit(perSecond), burst: max(burst, 1), max: max(maxClients, 1), now: time.Now,
		ll: list.New(), m: make(map[string]*list.Element)}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Allow takes one token from key's bucket and one from the global bucket. When either is
// empty it returns false and how long until a token is available.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	scope, wait := l.Take(key)
	return scope == "", wait
}

// Take is Allow naming the limit that refused: "" when the request is allowed, ScopeClient
// when key's own bucket is empty, ScopeGlobal when the global bucket is (key's token is then
// given back), with how long until a token is available.
func (l *Limiter) Take(key string) (scope string, wait time.Duration) {
	now := l.now()
	var own *rate.Reservation
	if l.limit > 0 {
		own = l.get(key).ReserveN(now, 1)
		if !own.OK() {
			return ScopeClient, time.Second
		}
		if d := own.DelayFrom(now); d > 0 {
			own.CancelAt(now)
			return ScopeClient, d
		}
	}
	if l.global == nil {
		return "", 0
	}
	g := l.global.ReserveN(now, 1)
	d := g.DelayFrom(now)
	if g.OK() && d <= 0 {
		return "", 0
	}
	g.CancelAt(now)
	if own != nil {
		own.CancelAt(now)
	}
	if !g.OK() {
		d = time.Second
	}
	return ScopeGlobal, d
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

// Middleware refuses requests over the client's limit (the client being ClientKey) or over
// the global ceiling with 429 Too Many Requests, a Retry-After header in whole seconds (RFC
// 9110 section 10.2.3) and the JSON error body {"error":"rate_limited",...} of the issuer API;
// onLimited (may be nil) is called for each with the scope that refused (ScopeClient,
// ScopeGlobal). Both scopes answer 429: the client's remedy is the same (wait Retry-After),
// and 503 stays the sign of an issuer whose store is down.
func (l *Limiter) Middleware(next http.Handler, onLimited func(r *http.Request, scope string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, wait := l.Take(ClientKey(r))
		if scope == "" {
			next.ServeHTTP(w, r)
			return
		}
		if onLimited != nil {
			onLimited(r, scope)
		}
		desc := "too many requests from this client; retry after the Retry-After delay"
		if scope == ScopeGlobal {
			desc = "the issuer is at its overall request ceiling; retry after the Retry-After delay"
		}
		refuse(w, http.StatusTooManyRequests, wait, "rate_limited", desc)
	})
}

// refuse writes an error answer of the issuer API with a Retry-After of wait, in whole
// seconds (at least 1).
func refuse(w http.ResponseWriter, status int, wait time.Duration, code, desc string) {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
