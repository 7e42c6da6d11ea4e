package relyingparty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/passport-attest/passport/token"
)

// Defaults of StatusConfig.
const (
	// DefaultStatusMaxStaleness is how old a status list may be (since its iat, or since the
	// issuer last confirmed it unchanged) and still be used when no fresher one can be had:
	// 10 min.
	DefaultStatusMaxStaleness = 10 * time.Minute
	// DefaultStatusTTL is the refresh interval of a list whose token carries no ttl: 1 min.
	DefaultStatusTTL = time.Minute
	// MinStatusTTL and MaxStatusTTL clamp a list's ttl: it is refetched at most every 5 s and
	// at least every hour.
	MinStatusTTL = 5 * time.Second
	MaxStatusTTL = time.Hour
	// MaxStatusListTokenSize bounds a Status List Token read from the network or a file: 1 MiB.
	MaxStatusListTokenSize = 1 << 20
	// maxPushAge bounds how long a pushed revocation is remembered when no refreshed list
	// confirms it.
	maxPushAge = 24 * time.Hour
)

// Errors of token status checks (draft-ietf-oauth-status-list section 8.3). Both are
// returned wrapped in ErrRequirement when the check runs as Config.Require.
var (
	// ErrRevoked: the token's entry in its status list is not VALID (0x00): revoked (0x01
	// INVALID), suspended (0x02) or another value, or an event stream pushed its revocation.
	ErrRevoked = errors.New("relyingparty: token revoked")
	// ErrStatusUnavailable: the token's status cannot be established: it has no status
	// claim, its list is unknown, could not be fetched and no copy is fresh enough, or the
	// list is invalid (ErrStatusList). The token must be refused (fail closed); Middleware
	// answers 503.
	ErrStatusUnavailable = errors.New("relyingparty: token status unavailable")
	// ErrStatusList: a Status List Token is malformed, not typ statuslist+jwt, badly signed,
	// from another issuer, for another list, expired, or does not cover the token's index.
	// It always comes with ErrStatusUnavailable.
	ErrStatusList = errors.New("relyingparty: invalid status list token")
)

// StatusConfig configures a StatusChecker. Issuer and KeySet are required.
type StatusConfig struct {
	// Issuer is the expected iss of Status List Tokens; a token's status_list.uri must lie
	// under Issuer + "/" (no list is ever fetched from elsewhere).
	Issuer string
	// KeySet verifies Status List Tokens: the same keys as the issuer's tokens.
	KeySet KeySet
	// HTTPClient fetches lists (default: a client with a 10 s timeout).
	HTTPClient *http.Client
	// Offline never fetches: only lists given to AddListToken or LoadFile are used, each
	// until MaxStaleness after its iat (or its exp, if earlier); then tokens fail closed.
	Offline bool
	// MaxStaleness: see DefaultStatusMaxStaleness.
	MaxStaleness time.Duration
	// Algorithms allowed for Status List Tokens (default: every asymmetric JWS algorithm;
	// the key set's JWKs pin each key's own).
	Algorithms []string
	// AllowMissing accepts tokens without a status claim (default: refused).
	AllowMissing bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// StatusChecker checks a token's entry in its Token Status List (draft-ietf-oauth-status-list
// section 8): it keeps each verified list in memory, refreshes it in the background once its
// ttl has passed, keeps using it while a refresh fails up to MaxStaleness, and then fails
// closed. Revocations pushed by an event stream (Follow, MarkRevoked) take effect at once. A
// check against a cached list takes a read lock, a map lookup and a bit test. It is safe for
// concurrent use.
type StatusChecker struct {
	cfg    StatusConfig
	prefix string
	client *http.Client
	rules  headerRules

	mu       sync.RWMutex
	lists    map[string]*listEntry
	pushed   map[string]map[uint64]time.Time // uri -> index -> when pushed
	inflight map[string]chan struct{}
}

// listEntry is one verified list. Entries are immutable; a refresh replaces them.
type listEntry struct {
	statuses *token.Statuses
	checked  time.Time // iat, or when the issuer last answered 304 for it
	exp      time.Time // zero: no exp
	ttl      time.Duration
	etag     string
	iat      int64
	stale    bool // Invalidate: fetch before the next use, if possible
}

// NewStatusChecker checks cfg and returns a StatusChecker with no lists yet.
func NewStatusChecker(cfg StatusConfig) (*StatusChecker, error) {
	if cfg.Issuer == "" || cfg.KeySet == nil {
		return nil, fmt.Errorf("%w: StatusConfig needs Issuer and KeySet", ErrConfig)
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = algNames(asymmetricAlgs)
	}
	for _, a := range algs {
		if !isAsymmetric(a) {
			return nil, fmt.Errorf("%w: algorithm %q is not an asymmetric JWS algorithm", ErrConfig, a)
		}
	}
	if cfg.MaxStaleness <= 0 {
		cfg.MaxStaleness = DefaultStatusMaxStaleness
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &StatusChecker{
		cfg:      cfg,
		prefix:   strings.TrimRight(cfg.Issuer, "/") + "/",
		client:   cfg.HTTPClient,
		rules:    headerRules{maxSize: MaxStatusListTokenSize, algs: algs},
		lists:    map[string]*listEntry{},
		pushed:   map[string]map[uint64]time.Time{},
		inflight: map[string]chan struct{}{},
	}
	if c.client == nil {
		c.client = &http.Client{Timeout: DefaultFetchTimeout}
	}
	return c, nil
}

// Check returns nil when claims' status list entry is VALID, an error wrapping ErrRevoked
// when it is not (or its revocation was pushed), and one wrapping ErrStatusUnavailable when
// it cannot be established. It fetches the list (joining a fetch in flight) only when no
// usable copy is held.
func (c *StatusChecker) Check(ctx context.Context, claims *token.Claims) error {
	if claims.Status == nil {
		if c.cfg.AllowMissing {
			return nil
		}
		return fmt.Errorf("%w: the token has no status claim", ErrStatusUnavailable)
	}
	uri, idx := claims.Status.StatusList.URI, claims.Status.StatusList.Index
	now := c.cfg.Now()
	c.mu.RLock()
	e := c.lists[uri]
	_, pushed := c.pushed[uri][idx]
	c.mu.RUnlock()
	if pushed {
		return fmt.Errorf("%w: revocation pushed by the issuer", ErrRevoked)
	}
	if e == nil || e.stale || !c.usable(e, now) {
		if !strings.HasPrefix(uri, c.prefix) {
			return fmt.Errorf("%w: status list %q is not under the issuer %s", ErrStatusUnavailable, uri, c.cfg.Issuer)
		}
		var ferr error
		if !c.cfg.Offline {
			var ne *listEntry
			if ne, ferr = c.fetch(ctx, uri); ferr == nil {
				e = ne
			} else if e != nil && e.stale && c.usable(e, now) {
				c.keepStale(uri, e) // retry per ttl in the background, not on every check
			}
		}
		if e == nil || !c.usable(e, now) {
			if ferr == nil {
				ferr = errors.New("no list held (offline)")
				if e != nil {
					ferr = fmt.Errorf("the list held is too old (issued %s)", e.checked.UTC().Format(time.RFC3339))
				}
			}
			return fmt.Errorf("%w: %s: %w", ErrStatusUnavailable, uri, ferr)
		}
		if _, pushed := c.pushedNow(uri, idx); pushed {
			return fmt.Errorf("%w: revocation pushed by the issuer", ErrRevoked)
		}
	} else if !c.cfg.Offline && !now.Before(e.checked.Add(e.ttl)) {
		c.refreshAsync(uri)
	}
	return entryStatus(e, idx)
}

// entryStatus maps entry idx of e to the result of Check.
func entryStatus(e *listEntry, idx uint64) error {
	v, err := e.statuses.Get(idx)
	if err != nil {
		return fmt.Errorf("%w: %w: %w", ErrStatusUnavailable, ErrStatusList, err)
	}
	switch v {
	case token.StatusValid:
		return nil
	case token.StatusInvalid:
		return fmt.Errorf("%w: status list entry is INVALID (0x01)", ErrRevoked)
	case token.StatusSuspended:
		return fmt.Errorf("%w: status list entry is SUSPENDED (0x02)", ErrRevoked)
	}
	return fmt.Errorf("%w: status list entry is 0x%02x, not VALID", ErrRevoked, v)
}

// Require is Check for Config.Require: it has no request context, so a fetch it needs is
// bounded by DefaultFetchTimeout.
func (c *StatusChecker) Require(claims *token.Claims) error {
	if done, err := c.cached(claims); done {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultFetchTimeout)
	defer cancel()
	return c.Check(ctx, claims)
}

// cached answers from a held, fresh list without any I/O, and reports whether it could.
func (c *StatusChecker) cached(claims *token.Claims) (bool, error) {
	if claims.Status == nil {
		return false, nil
	}
	uri := claims.Status.StatusList.URI
	now := c.cfg.Now()
	c.mu.RLock()
	e := c.lists[uri]
	_, pushed := c.pushed[uri][claims.Status.StatusList.Index]
	c.mu.RUnlock()
	if pushed || e == nil || e.stale || !now.Before(e.checked.Add(e.ttl)) || !c.usable(e, now) {
		return false, nil
	}
	return true, entryStatus(e, claims.Status.StatusList.Index)
}

// keepStale clears the stale mark of e (still held for uri) after a failed fetch.
func (c *StatusChecker) keepStale(uri string, e *listEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lists[uri] == e {
		ne := *e
		ne.stale = false
		c.lists[uri] = &ne
	}
}

func (c *StatusChecker) pushedNow(uri string, idx uint64) (time.Time, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.pushed[uri][idx]
	return t, ok
}

// usable reports whether e may serve checks at now: not older than MaxStaleness and not
// past its exp.
func (c *StatusChecker) usable(e *listEntry, now time.Time) bool {
	return now.Before(e.checked.Add(c.cfg.MaxStaleness)) && (e.exp.IsZero() || now.Before(e.exp))
}

// MarkRevoked records revocations pushed for list uri (Follow calls it for each event): the
// entries are refused at once, until a refreshed list shows them revoked itself.
func (c *StatusChecker) MarkRevoked(uri string, idx ...uint64) {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for u, m := range c.pushed {
		for i, t := range m {
			if now.Sub(t) > maxPushAge {
				delete(m, i)
			}
		}
		if len(m) == 0 {
			delete(c.pushed, u)
		}
	}
	m := c.pushed[uri]
	if m == nil {
		m = map[uint64]time.Time{}
		c.pushed[uri] = m
	}
	for _, i := range idx {
		m[i] = now
	}
}

// Invalidate marks every list to be fetched again before its next use (Follow calls it when
// the event stream (re)connects: revocations may have been missed). A list that cannot be
// fetched keeps serving within MaxStaleness.
func (c *StatusChecker) Invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for uri, e := range c.lists {
		ne := *e
		ne.stale = true
		c.lists[uri] = &ne
	}
}

// AddListToken verifies a Status List Token (from a file, for an offline relying party) and
// holds it for its sub, unless a list issued later is already held. Errors wrap ErrStatusList.
func (c *StatusChecker) AddListToken(ctx context.Context, raw string) error {
	e, uri, err := c.parse(ctx, strings.TrimSpace(raw), "")
	if err != nil {
		return err
	}
	c.store(uri, e)
	return nil
}

// LoadFile reads a Status List Token file (at most MaxStatusListTokenSize bytes, as served by
// GET /v1/status-list/{id}) and adds it with AddListToken.
func (c *StatusChecker) LoadFile(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("relyingparty: status list file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxStatusListTokenSize+1))
	if err != nil {
		return fmt.Errorf("relyingparty: status list file: %w", err)
	}
	if len(b) > MaxStatusListTokenSize {
		return fmt.Errorf("%w: %s exceeds %d bytes", ErrStatusList, path, MaxStatusListTokenSize)
	}
	if err := c.AddListToken(ctx, string(b)); err != nil {
		return fmt.Errorf("relyingparty: %s: %w", path, err)
	}
	return nil
}

// store holds e for uri unless a list issued later is held, and forgets pushed revocations
// the new list confirms.
func (c *StatusChecker) store(uri string, e *listEntry) *listEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.lists[uri]; old != nil && old.iat > e.iat {
		return old
	}
	c.lists[uri] = e
	if m := c.pushed[uri]; m != nil {
		for i := range m {
			if v, err := e.statuses.Get(i); err == nil && v != token.StatusValid {
				delete(m, i)
			}
		}
		if len(m) == 0 {
			delete(c.pushed, uri)
		}
	}
	return e
}

// fetch gets uri now, joining a fetch of the same list in flight, and returns the entry held
// afterwards.
func (c *StatusChecker) fetch(ctx context.Context, uri string) (*listEntry, error) {
	c.mu.Lock()
	done, running := c.inflight[uri]
	if !running {
		done = make(chan struct{})
		c.inflight[uri] = done
	}
	old := c.lists[uri]
	c.mu.Unlock()
	if running {
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.RLock()
		e := c.lists[uri]
		c.mu.RUnlock()
		if e == nil || e.stale {
			return nil, errors.New("the fetch in flight failed")
		}
		return e, nil
	}
	defer func() {
		c.mu.Lock()
		delete(c.inflight, uri)
		c.mu.Unlock()
		close(done)
	}()
	e, err := c.get(ctx, uri, old)
	if err != nil {
		return nil, err
	}
	return c.store(uri, e), nil
}

// refreshAsync fetches uri in the background unless a fetch is in flight; failures keep the
// held list.
func (c *StatusChecker) refreshAsync(uri string) {
	c.mu.RLock()
	_, running := c.inflight[uri]
	c.mu.RUnlock()
	if running {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultFetchTimeout)
		defer cancel()
		_, _ = c.fetch(ctx, uri)
	}()
}

// get requests uri (If-None-Match with old's ETag) and verifies the answer.
func (c *StatusChecker) get(ctx context.Context, uri string, old *listEntry) (*listEntry, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/"+token.StatusListType)
	if old != nil && old.etag != "" {
		req.Header.Set("If-None-Match", old.etag)
	}
	res, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusNotModified:
		if old == nil {
			return nil, errors.New("304 without a held list")
		}
		ne := *old
		ne.checked, ne.stale = c.cfg.Now(), false
		if !ne.exp.IsZero() && !ne.checked.Before(ne.exp) {
			return nil, fmt.Errorf("%w: expired", ErrStatusList)
		}
		return &ne, nil
	case http.StatusOK:
	default:
		return nil, fmt.Errorf("GET %s: %s", uri, res.Status)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, MaxStatusListTokenSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxStatusListTokenSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrStatusList, MaxStatusListTokenSize)
	}
	e, _, err := c.parse(ctx, strings.TrimSpace(string(b)), uri)
	if err != nil {
		return nil, err
	}
	e.etag = res.Header.Get("ETag")
	return e, nil
}

// parse verifies a Status List Token (draft-ietf-oauth-status-list section 8.3): compact JWS
// with an allowed alg and typ statuslist+jwt, signature by the key set, iss = Issuer, sub =
// wantURI (when given; else under Issuer), iat not in the future, exp not passed, a decodable
// list. It returns the entry and its URI.
func (c *StatusChecker) parse(ctx context.Context, raw, wantURI string) (*listEntry, string, error) {
	h, err := checkCompact(raw, c.rules)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrStatusList, err)
	}
	if !isStatusListType(h.Typ) {
		return nil, "", fmt.Errorf("%w: typ %q, want %s", ErrStatusList, h.Typ, token.StatusListType)
	}
	// Hand the checked header to the key set, which would otherwise apply token-sized limits.
	payload, err := c.cfg.KeySet.VerifySignature(context.WithValue(ctx, stateKey{}, &verifyState{raw: raw, hdr: h}), raw)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrStatusList, err)
	}
	var cl token.StatusListClaims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return nil, "", fmt.Errorf("%w: claims: %w", ErrStatusList, err)
	}
	now := c.cfg.Now()
	switch {
	case cl.Issuer != c.cfg.Issuer:
		return nil, "", fmt.Errorf("%w: iss %q, want %q", ErrStatusList, cl.Issuer, c.cfg.Issuer)
	case wantURI != "" && cl.Subject != wantURI:
		return nil, "", fmt.Errorf("%w: sub %q, want %q", ErrStatusList, cl.Subject, wantURI)
	case !strings.HasPrefix(cl.Subject, c.prefix):
		return nil, "", fmt.Errorf("%w: sub %q is not under the issuer", ErrStatusList, cl.Subject)
	case cl.IssuedAt == 0 || time.Unix(cl.IssuedAt, 0).After(now.Add(DefaultLeeway)):
		return nil, "", fmt.Errorf("%w: iat missing or in the future", ErrStatusList)
	case cl.Expiry != 0 && !now.Before(time.Unix(cl.Expiry, 0)):
		return nil, "", fmt.Errorf("%w: expired at %s", ErrStatusList, time.Unix(cl.Expiry, 0).UTC().Format(time.RFC3339))
	}
	st, err := cl.StatusList.Decode()
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrStatusList, err)
	}
	ttl := DefaultStatusTTL
	if cl.TTL > 0 {
		ttl = time.Duration(cl.TTL) * time.Second
	}
	e := &listEntry{statuses: st, checked: time.Unix(cl.IssuedAt, 0), ttl: min(max(ttl, MinStatusTTL), MaxStatusTTL), iat: cl.IssuedAt}
	if cl.Expiry != 0 {
		e.exp = time.Unix(cl.Expiry, 0)
	}
	return e, cl.Subject, nil
}

// isStatusListType compares typ to "statuslist+jwt" as RFC 7515 section 4.1.9 asks.
func isStatusListType(typ string) bool {
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	return strings.EqualFold(typ, token.StatusListType)
}
