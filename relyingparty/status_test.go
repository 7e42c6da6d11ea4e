package relyingparty

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passport-attest/passport/token"
)

// listServer serves Status List Tokens signed by s at <URL>/v1/status-list/{id}, like the
// issuer, and counts the requests.
type listServer struct {
	t       testing.TB
	s       *signer
	clk     *clock
	srv     *httptest.Server
	fetches atomic.Int64
	down    atomic.Bool

	mu    sync.Mutex
	lists map[string][]byte
	ttl   int64
	valid time.Duration
}

func newListServer(t testing.TB, s *signer, clk *clock) *listServer {
	ls := &listServer{t: t, s: s, clk: clk, lists: map[string][]byte{"0": make([]byte, 16)}, ttl: 60, valid: time.Hour}
	ls.srv = httptest.NewServer(http.HandlerFunc(ls.serve))
	t.Cleanup(ls.srv.Close)
	return ls
}

func (ls *listServer) issuer() string       { return ls.srv.URL }
func (ls *listServer) uri(id string) string { return ls.srv.URL + "/v1/status-list/" + id }

func (ls *listServer) revoke(id string, idx uint64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.lists[id][idx/8] |= 1 << (idx % 8)
}

// token returns the signed list id as of now, with claims edited by mod.
func (ls *listServer) token(id string, mod func(*token.StatusListClaims)) string {
	ls.mu.Lock()
	b := append([]byte(nil), ls.lists[id]...)
	ttl, valid := ls.ttl, ls.valid
	ls.mu.Unlock()
	lst, err := token.EncodeStatusList(1, b)
	if err != nil {
		ls.t.Fatal(err)
	}
	now := ls.clk.Now()
	cl := token.StatusListClaims{Issuer: ls.issuer(), Subject: ls.uri(id), IssuedAt: now.Unix(),
		Expiry: now.Add(valid).Unix(), TTL: ttl, StatusList: lst}
	if mod != nil {
		mod(&cl)
	}
	tok, _, err := ls.s.ring.SignTyped(token.StatusListType, cl)
	if err != nil {
		ls.t.Fatal(err)
	}
	return tok
}

func (ls *listServer) serve(w http.ResponseWriter, r *http.Request) {
	ls.fetches.Add(1)
	id, ok := strings.CutPrefix(r.URL.Path, "/v1/status-list/")
	ls.mu.Lock()
	_, known := ls.lists[id]
	ls.mu.Unlock()
	switch {
	case ls.down.Load():
		http.Error(w, "down", http.StatusServiceUnavailable)
	case !ok || !known:
		http.NotFound(w, r)
	default:
		w.Header().Set("Content-Type", "application/statuslist+jwt")
		fmt.Fprint(w, ls.token(id, nil))
	}
}

func (ls *listServer) checker(t testing.TB, mod func(*StatusConfig)) *StatusChecker {
	t.Helper()
	cfg := StatusConfig{Issuer: ls.issuer(), KeySet: NewStaticKeySet(ls.s.ring.PublicSet()), Now: ls.clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewStatusChecker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func claimsAtIndex(uri string, idx uint64) *token.Claims {
	return &token.Claims{Status: &token.Status{StatusList: token.StatusListRef{URI: uri, Index: idx}}}
}

func TestStatusCheck(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	ls := newListServer(t, newSigner(t), clk)
	ls.revoke("0", 3)
	ls.revoke("0", 8)
	c := ls.checker(t, nil)
	for idx, want := range map[uint64]error{0: nil, 2: nil, 3: ErrRevoked, 7: nil, 8: ErrRevoked, 9: nil, 127: nil} {
		if err := c.Check(ctx, claimsAtIndex(ls.uri("0"), idx)); !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("index %d: Check = %v, want %v", idx, err, want)
		}
	}
	if n := ls.fetches.Load(); n != 1 {
		t.Errorf("%d fetches for one list, want 1", n)
	}
	// An index beyond the list, an unknown list, a list elsewhere, no status claim: refused.
	for name, cl := range map[string]*token.Claims{
		"beyond the list": claimsAtIndex(ls.uri("0"), 128),
		"unknown list":    claimsAtIndex(ls.uri("9"), 0),
		"other host":      claimsAtIndex("https://elsewhere.example/v1/status-list/0", 0),
		"prefix trick":    claimsAtIndex(ls.issuer()+".evil.example/v1/status-list/0", 0),
		"no status claim": {},
	} {
		if err := c.Check(ctx, cl); !errors.Is(err, ErrStatusUnavailable) {
			t.Errorf("%s: Check = %v, want ErrStatusUnavailable", name, err)
		}
	}
	allow := ls.checker(t, func(cfg *StatusConfig) { cfg.AllowMissing = true })
	if err := allow.Check(ctx, &token.Claims{}); err != nil {
		t.Errorf("AllowMissing: Check = %v", err)
	}
}

// TestStatusRefresh checks the ttl: no fetch within it, a background refresh after it that
// brings in a new revocation, and, while the issuer is down, the held list until
// MaxStaleness, then a refusal.
func TestStatusRefresh(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	ls := newListServer(t, newSigner(t), clk)
	c := ls.checker(t, func(cfg *StatusConfig) { cfg.MaxStaleness = 5 * time.Minute })
	tok := claimsAtIndex(ls.uri("0"), 5)
	if err := c.Check(ctx, tok); err != nil {
		t.Fatal(err)
	}
	ls.revoke("0", 5)
	clk.Advance(59 * time.Second)
	if err := c.Check(ctx, tok); err != nil {
		t.Fatalf("within the ttl the held list answers: %v", err)
	}
	if n := ls.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches within the ttl, want 1", n)
	}
	clk.Advance(2 * time.Second)
	_ = c.Check(ctx, tok) // starts the background refresh
	waitStatus(t, func() bool { return errors.Is(c.Check(ctx, tok), ErrRevoked) })

	ls.down.Store(true)
	other := claimsAtIndex(ls.uri("0"), 6)
	clk.Advance(4 * time.Minute)
	if err := c.Check(ctx, other); err != nil {
		t.Fatalf("issuer down, list 4 min old: Check = %v, want the held list to answer", err)
	}
	clk.Advance(90 * time.Second)
	if err := c.Check(ctx, other); !errors.Is(err, ErrStatusUnavailable) {
		t.Fatalf("issuer down, list past MaxStaleness: Check = %v, want ErrStatusUnavailable", err)
	}
	ls.down.Store(false)
	if err := c.Check(ctx, other); err != nil {
		t.Fatalf("issuer back: Check = %v", err)
	}
}

func waitStatus(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStatusOffline checks a relying party that never fetches: a list file is used until
// MaxStaleness after its iat, then tokens fail closed; nothing is fetched.
func TestStatusOffline(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	ls := newListServer(t, newSigner(t), clk)
	ls.revoke("0", 1)
	path := filepath.Join(t.TempDir(), "list.jwt")
	if err := os.WriteFile(path, []byte(ls.token("0", nil)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := ls.checker(t, func(cfg *StatusConfig) { cfg.Offline = true; cfg.MaxStaleness = 2 * time.Hour })
	if err := c.Check(ctx, claimsAtIndex(ls.uri("0"), 0)); !errors.Is(err, ErrStatusUnavailable) {
		t.Fatalf("offline without a list: Check = %v, want ErrStatusUnavailable", err)
	}
	if err := c.LoadFile(ctx, path); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx, claimsAtIndex(ls.uri("0"), 0)); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx, claimsAtIndex(ls.uri("0"), 1)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked index: Check = %v, want ErrRevoked", err)
	}
	// The list's exp (1 h) comes before MaxStaleness (2 h).
	clk.Advance(59 * time.Minute)
	if err := c.Check(ctx, claimsAtIndex(ls.uri("0"), 0)); err != nil {
		t.Fatalf("list 59 min old: %v", err)
	}
	clk.Advance(2 * time.Minute)
	if err := c.Check(ctx, claimsAtIndex(ls.uri("0"), 0)); !errors.Is(err, ErrStatusUnavailable) {
		t.Fatalf("list past exp: Check = %v, want ErrStatusUnavailable", err)
	}
	// A list without exp is bounded by MaxStaleness.
	c2 := ls.checker(t, func(cfg *StatusConfig) { cfg.Offline = true; cfg.MaxStaleness = 30 * time.Minute })
	if err := c2.AddListToken(ctx, ls.token("0", func(cl *token.StatusListClaims) { cl.Expiry = 0 })); err != nil {
		t.Fatal(err)
	}
	clk.Advance(29 * time.Minute)
	if err := c2.Check(ctx, claimsAtIndex(ls.uri("0"), 0)); err != nil {
		t.Fatalf("list 29 min old: %v", err)
	}
	clk.Advance(2 * time.Minute)
	if err := c2.Check(ctx, claimsAtIndex(ls.uri("0"), 0)); !errors.Is(err, ErrStatusUnavailable) {
		t.Fatalf("list past MaxStaleness: Check = %v, want ErrStatusUnavailable", err)
	}
	if n := ls.fetches.Load(); n != 0 {
		t.Fatalf("an offline checker fetched %d times", n)
	}
}

// TestStatusListRefusals feeds invalid Status List Tokens: each is refused with ErrStatusList.
func TestStatusListRefusals(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := newSigner(t)
	ls := newListServer(t, s, clk)
	c := ls.checker(t, func(cfg *StatusConfig) { cfg.Offline = true })
	other := newSigner(t)
	for name, raw := range map[string]string{
		"another issuer": ls.token("0", func(cl *token.StatusListClaims) { cl.Issuer = "https://other.example" }),
		"sub elsewhere":  ls.token("0", func(cl *token.StatusListClaims) { cl.Subject = "https://other.example/v1/status-list/0" }),
		"expired":        ls.token("0", func(cl *token.StatusListClaims) { cl.Expiry = clk.Now().Add(-time.Second).Unix() }),
		"iat in future":  ls.token("0", func(cl *token.StatusListClaims) { cl.IssuedAt = clk.Now().Add(time.Hour).Unix() }),
		"bad list":       ls.token("0", func(cl *token.StatusListClaims) { cl.StatusList.Lst = "AAAA" }),
		"typ eat+jwt":    s.sign(t, map[string]any{"iss": ls.issuer(), "sub": ls.uri("0"), "iat": clk.Now().Unix(), "status_list": map[string]any{"bits": 1, "lst": "eNrbuRgAAhcBXQ"}}),
		"unknown key": func() string {
			tok, _, _ := other.ring.SignTyped(token.StatusListType, map[string]any{"iss": ls.issuer(), "sub": ls.uri("0"), "iat": clk.Now().Unix(), "status_list": map[string]any{"bits": 1, "lst": "eNrbuRgAAhcBXQ"}})
			return tok
		}(),
		"alg none": b64([]byte(`{"alg":"none","typ":"statuslist+jwt"}`)) + "." + b64([]byte(`{}`)) + ".",
	} {
		if err := c.AddListToken(ctx, raw); !errors.Is(err, ErrStatusList) {
			t.Errorf("%s: AddListToken = %v, want ErrStatusList", name, err)
		}
	}
	// A fetched list must be the one asked for.
	online := ls.checker(t, nil)
	ls.mu.Lock()
	ls.lists["1"] = make([]byte, 16)
	ls.mu.Unlock()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, ls.token("1", nil)) // always list 1
	}))
	defer srv.Close()
	online.client = srv.Client()
	online.prefix = srv.URL + "/"
	if err := online.Check(ctx, claimsAtIndex(srv.URL+"/v1/status-list/0", 0)); !errors.Is(err, ErrStatusList) {
		t.Errorf("a list answering for another URI: Check = %v, want ErrStatusList", err)
	}
}

// TestStatusVerifier plugs the checker into a Verifier (Config.Require): a revoked token is
// refused even when it sits in the verified-token cache, and MarkRevoked takes effect at once.
func TestStatusVerifier(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := newSigner(t)
	ls := newListServer(t, s, clk)
	c := ls.checker(t, nil)
	v, err := NewVerifier(Config{Issuer: testIssuer, Audience: testAudience, KeySet: NewStaticKeySet(s.ring.PublicSet()), Now: clk.Now, Require: c.Require})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(idx uint64) string {
		cl := claimsAt(t, clk.Now())
		cl.Status = &token.Status{StatusList: token.StatusListRef{URI: ls.uri("0"), Index: idx}}
		return s.sign(t, cl)
	}
	good, bad, pushed := mk(10), mk(11), mk(12)
	ls.revoke("0", 11)
	for _, tok := range []string{good, pushed} {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(ctx, bad); !errors.Is(err, ErrRevoked) || !errors.Is(err, ErrRequirement) {
		t.Fatalf("revoked token: Verify = %v, want ErrRevoked", err)
	}
	c.MarkRevoked(ls.uri("0"), 12)
	if _, err := v.Verify(ctx, pushed); !errors.Is(err, ErrRevoked) {
		t.Fatalf("cached token after a pushed revocation: Verify = %v, want ErrRevoked", err)
	}
	if _, err := v.Verify(ctx, good); err != nil {
		t.Fatal(err)
	}
	// Middleware answers 401 for a revoked token and 503 when its status is unknown.
	h := Middleware(v)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	for tok, want := range map[string]int{good: 200, bad: 401} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("middleware answered %d, want %d", w.Code, want)
		}
	}
	ls.down.Store(true)
	clk.Advance(DefaultStatusMaxStaleness + time.Second)
	fresh := mk(13)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+fresh)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("status unavailable: middleware answered %d, want 503", w.Code)
	}
}

// TestFollow serves a revocation event stream and checks that Follow applies it: the revoked
// token leaves the verified-token cache and is refused; a resync makes lists refetch.
func TestFollow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := newClock()
	s := newSigner(t)
	ls := newListServer(t, s, clk)
	c := ls.checker(t, nil)
	v, err := NewVerifier(Config{Issuer: testIssuer, Audience: testAudience, KeySet: NewStaticKeySet(s.ring.PublicSet()), Now: clk.Now, Require: c.Require})
	if err != nil {
		t.Fatal(err)
	}
	cl := claimsAt(t, clk.Now())
	cl.Status = &token.Status{StatusList: token.StatusListRef{URI: ls.uri("0"), Index: 4}}
	tok := s.sign(t, cl)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if v.CacheLen() != 1 {
		t.Fatalf("cache holds %d tokens", v.CacheLen())
	}
	events := make(chan string, 4)
	var conns atomic.Int64
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: resync\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case e := <-events:
				fmt.Fprint(w, e)
				w.(http.Flusher).Flush()
			}
		}
	}))
	defer func() { cancel(); es.Close() }() // the stream ends before the server closes
	go func() { _ = c.Follow(ctx, es.URL, v) }()
	waitStatus(t, func() bool { return conns.Load() == 1 })
	fetches := ls.fetches.Load()
	events <- ": ping\n\nevent: revoked\ndata: {\"uri\":\"" + ls.uri("0") + "\",\"idx\":[4,5]}\n\n"
	waitStatus(t, func() bool { return v.CacheLen() == 0 })
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after the event: Verify = %v, want ErrRevoked", err)
	}
	// The pushed revocation took effect without fetching the list.
	if n := ls.fetches.Load(); n != fetches {
		t.Fatalf("the pushed revocation fetched the list (%d -> %d fetches)", fetches, n)
	}
	events <- "event: resync\ndata: {}\n\n"
	other := claimsAtIndex(ls.uri("0"), 9)
	waitStatus(t, func() bool {
		c.mu.RLock()
		defer c.mu.RUnlock()
		return c.lists[ls.uri("0")].stale
	})
	before := ls.fetches.Load()
	if err := c.Check(ctx, other); err != nil {
		t.Fatal(err)
	}
	if ls.fetches.Load() != before+1 {
		t.Fatalf("a resync did not make the list refetch")
	}
}

// BenchmarkStatusCheck is the relying party's status check with a cached list: read lock,
// map lookup, bit test (goal: under 1 us per token).
func BenchmarkStatusCheck(b *testing.B) {
	clk := newClock()
	ls := newListServer(b, newSigner(b), clk)
	ls.mu.Lock()
	ls.lists["0"] = make([]byte, 1<<14) // 131072 entries, the issuer's default list size
	ls.mu.Unlock()
	c := ls.checker(b, nil)
	ctx := context.Background()
	claims := make([]*token.Claims, 1024)
	for i := range claims {
		claims[i] = claimsAtIndex(ls.uri("0"), uint64(i*127))
	}
	if err := c.Check(ctx, claims[0]); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := c.Check(ctx, claims[i%len(claims)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCachedWithStatus is a cached token's Verify with the status check plugged in
// as Config.Require, against BenchmarkVerifyCached without it ("x-cached" is the ratio).
func BenchmarkVerifyCachedWithStatus(b *testing.B) {
	f := fixture(b)
	ls := newListServer(b, f.iss, f.clk)
	c := ls.checker(b, nil)
	v := newTestVerifier(b, f.iss, f.clk, func(cfg *Config) { cfg.Require = c.Require })
	cl := claimsAt(b, f.clk.Now())
	cl.Status = &token.Status{StatusList: token.StatusListRef{URI: ls.uri("0"), Index: 7}}
	tok := f.iss.sign(b, cl)
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	plain := newTestVerifier(b, f.iss, f.clk, nil)
	if _, err := plain.Verify(ctx, f.tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	const n = 20000
	start := time.Now()
	for i := 0; i < n; i++ {
		_, _ = plain.Verify(ctx, f.tok)
	}
	base := float64(time.Since(start).Nanoseconds()) / n
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x-cached")
}
