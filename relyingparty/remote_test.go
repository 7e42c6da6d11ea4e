package relyingparty

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passport-attest/passport/jwks"
)

// jwksServer serves a keyring's JWKS like the issuer does (ETag, Cache-Control), or fails on
// demand.
type jwksServer struct {
	*httptest.Server
	ring     *jwks.Keyring
	mode     atomic.Value // string: "ok", "500", "html403", "badjson", "empty"
	maxAge   atomic.Int64 // seconds; <0: no Cache-Control
	requests atomic.Int64
	gate     chan struct{} // when non-nil, each request waits for it to be closed
}

func newJWKSServer(t *testing.T, ring *jwks.Keyring) *jwksServer {
	s := &jwksServer{ring: ring}
	s.mode.Store("ok")
	s.maxAge.Store(-1)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.gate != nil {
			<-s.gate
		}
		switch s.mode.Load().(string) {
		case "500":
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		case "html403":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, "<html><body>Access denied by WAF</body></html>")
			return
		case "badjson":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"keys":[{"kty":"EC"`)
			return
		case "empty":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"keys":[]}`)
			return
		case "html200":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>captive portal</html>")
			return
		}
		b, etag := s.ring.JWKSJSON()
		w.Header().Set("ETag", etag)
		if ma := s.maxAge.Load(); ma >= 0 {
			w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", ma))
		}
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) keySet(clk *clock, opts ...RemoteOption) *RemoteKeySet {
	base := []RemoteOption{WithoutBackgroundRefresh(), WithClock(clk.Now), WithHTTPClient(s.Client())}
	return NewRemoteKeySet(context.Background(), s.URL, append(base, opts...)...)
}

// TestRemoteUnknownKidFlood: forged tokens with unknown kids cause at most one fetch per
// refetch interval, sequentially or concurrently, and bad signatures cause none.
func TestRemoteUnknownKidFlood(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	srv := newJWKSServer(t, iss.ring)
	ks := srv.keySet(clk, WithRefetchInterval(30*time.Second))
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = ks; c.CacheSize = -1 })
	ctx := context.Background()
	if _, err := v.Verify(ctx, iss.sign(t, claimsAt(t, clk.Now()))); err != nil {
		t.Fatal(err)
	}
	if n := ks.Fetches(); n != 1 {
		t.Fatalf("initial fetches = %d, want 1", n)
	}
	forged := make([]string, 100)
	for i := range forged {
		forged[i] = newSigner(t).sign(t, claimsAt(t, clk.Now()))
	}
	flood := func() {
		for _, f := range forged {
			if _, err := v.Verify(ctx, f); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("forged token: %v", err)
			}
		}
	}
	flood()
	if n := ks.Fetches(); n != 1 {
		t.Fatalf("within the interval: %d fetches, want 1", n)
	}
	clk.Advance(31 * time.Second)
	flood()
	if n := ks.Fetches(); n != 2 {
		t.Fatalf("after one interval: %d fetches, want 2", n)
	}
	clk.Advance(31 * time.Second)
	var wg sync.WaitGroup
	for _, f := range forged {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = v.Verify(ctx, f)
		}()
	}
	wg.Wait()
	if n := ks.Fetches(); n != 3 {
		t.Fatalf("concurrent flood after another interval: %d fetches, want 3", n)
	}
	if s := ks.Stats(); s.Suppressed < 199 {
		t.Fatalf("suppressed = %d, want the remaining forged tokens", s.Suppressed)
	}
	clk.Advance(31 * time.Second)
	badSig := newSigner(t)
	for range 50 {
		if _, err := v.Verify(ctx, badSig.forge(t, iss.header(), claimsAt(t, clk.Now()))); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("bad signature: %v", err)
		}
	}
	if n := ks.Fetches(); n != 3 {
		t.Fatalf("bad signatures caused fetches: %d, want 3", n)
	}
	if got := srv.requests.Load(); got != 3 {
		t.Fatalf("server saw %d requests, want 3", got)
	}
}

// TestRemoteRefreshFailureKeepsKeys: error statuses, HTML and bad JSON never replace the last
// good key set.
func TestRemoteRefreshFailureKeepsKeys(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	srv := newJWKSServer(t, iss.ring)
	ks := srv.keySet(clk)
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = ks; c.CacheSize = -1 })
	ctx := context.Background()
	if err := ks.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for i, mode := range []string{"500", "html403", "badjson", "empty", "html200"} {
		srv.mode.Store(mode)
		if err := ks.Refresh(ctx); err == nil {
			t.Fatalf("%s: refresh succeeded", mode)
		}
		st := ks.Stats()
		if st.Keys != 1 || st.Failures != uint64(i+1) || st.LastError == nil {
			t.Fatalf("%s: stats %+v", mode, st)
		}
		if _, err := v.Verify(ctx, iss.sign(t, claimsAt(t, clk.Now()))); err != nil {
			t.Fatalf("%s: last good keys lost: %v", mode, err)
		}
	}
	srv.mode.Store("ok")
	if err := ks.Refresh(ctx); err != nil || ks.Stats().LastError != nil {
		t.Fatalf("recovery: %v", err)
	}
}

// TestRemoteNeverFetched: an issuer that never answered yields ErrUnknownKey together with
// ErrKeySetUnavailable, and is not asked again within the interval.
func TestRemoteNeverFetched(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	srv := newJWKSServer(t, iss.ring)
	srv.mode.Store("500")
	ks := srv.keySet(clk)
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = ks })
	for range 5 {
		_, err := v.Verify(context.Background(), iss.sign(t, claimsAt(t, clk.Now())))
		if !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrKeySetUnavailable) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := ks.Fetches(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	srv.mode.Store("ok")
	clk.Advance(DefaultRefetchInterval)
	if _, err := v.Verify(context.Background(), iss.sign(t, claimsAt(t, clk.Now()))); err != nil {
		t.Fatalf("after the issuer recovered: %v", err)
	}
}

// TestRemoteKeyRotation: a new kid published by the issuer is picked up without a restart,
// through an unknown-kid refetch or through max-age expiry.
func TestRemoteKeyRotation(t *testing.T) {
	ctx := context.Background()
	rotate := func(t *testing.T, ring *jwks.Keyring, old *signer) *signer {
		next := newSigner(t)
		ring.SetKeys(next.key, []*jwks.Key{old.key}) // the old key stays published
		return next
	}
	t.Run("unknown kid", func(t *testing.T) {
		clk := newClock()
		iss := newSigner(t)
		srv := newJWKSServer(t, iss.ring)
		ks := srv.keySet(clk)
		v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = ks })
		oldTok := iss.sign(t, claimsAt(t, clk.Now()))
		if _, err := v.Verify(ctx, oldTok); err != nil {
			t.Fatal(err)
		}
		next := rotate(t, iss.ring, iss)
		clk.Advance(DefaultRefetchInterval)
		if _, err := v.Verify(ctx, next.sign(t, claimsAt(t, clk.Now()))); err != nil {
			t.Fatalf("token of the new key: %v", err)
		}
		v.Purge()
		if _, err := v.Verify(ctx, oldTok); err != nil {
			t.Fatalf("token of the old key after rotation: %v", err)
		}
		if n := ks.Fetches(); n != 2 {
			t.Fatalf("fetches = %d, want 2", n)
		}
	})
	t.Run("max-age", func(t *testing.T) {
		clk := newClock()
		iss := newSigner(t)
		srv := newJWKSServer(t, iss.ring)
		srv.maxAge.Store(120)
		// An interval of an hour: only staleness can explain a second fetch.
		ks := srv.keySet(clk, WithRefetchInterval(time.Hour), WithMaxAgeBounds(time.Minute, time.Hour))
		v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = ks; c.CacheSize = -1 })
		if err := ks.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if got := ks.Stats().FreshUntil; !got.Equal(t0.Add(120 * time.Second)) {
			t.Fatalf("FreshUntil = %v, want t0+120s", got)
		}
		oldTok := iss.sign(t, claimsAt(t, clk.Now()))
		next := rotate(t, iss.ring, iss)
		newTok := next.sign(t, claimsAt(t, clk.Now()))
		clk.Advance(119 * time.Second)
		if _, err := v.Verify(ctx, oldTok); err != nil {
			t.Fatal(err)
		}
		if n := ks.Fetches(); n != 1 {
			t.Fatalf("fresh keys refetched: %d", n)
		}
		clk.Advance(2 * time.Second) // stale now: the next use refreshes in the background
		if _, err := v.Verify(ctx, oldTok); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return ks.Stats().Keys == 2 })
		if _, err := v.Verify(ctx, newTok); err != nil {
			t.Fatalf("token of the new key: %v", err)
		}
		if n := ks.Fetches(); n != 2 {
			t.Fatalf("fetches = %d, want 2", n)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRemoteMaxAgeBounds: Cache-Control max-age is clamped, absent means the default.
func TestRemoteMaxAgeBounds(t *testing.T) {
	k := NewRemoteKeySet(context.Background(), "http://unused.invalid", WithoutBackgroundRefresh(),
		WithMaxAgeBounds(time.Minute, time.Hour), WithDefaultMaxAge(5*time.Minute))
	for cc, want := range map[string]time.Duration{
		"":                       5 * time.Minute,
		"max-age=1":              time.Minute,
		"public, max-age=600":    10 * time.Minute,
		"max-age=999999999":      time.Hour,
		"no-store":               time.Minute,
		"max-age=abc":            5 * time.Minute,
		"no-cache, max-age=3000": 50 * time.Minute,
	} {
		h := http.Header{}
		if cc != "" {
			h.Set("Cache-Control", cc)
		}
		if got := k.cacheAge(h); got != want {
			t.Errorf("Cache-Control %q: age %s, want %s", cc, got, want)
		}
	}
}

// TestRemoteConditionalFetch: the ETag is sent back and a 304 keeps and refreshes the keys.
func TestRemoteConditionalFetch(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	srv := newJWKSServer(t, iss.ring)
	ks := srv.keySet(clk)
	ctx := context.Background()
	for range 3 {
		if err := ks.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st := ks.Stats(); st.NotModified != 2 || st.Keys != 1 {
		t.Fatalf("stats %+v, want 2 not-modified answers and the key kept", st)
	}
}

// TestRemoteMergedFetches: concurrent first uses share one request.
func TestRemoteMergedFetches(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	srv := newJWKSServer(t, iss.ring)
	srv.gate = make(chan struct{})
	var results []FetchResult
	var mu sync.Mutex
	ks := srv.keySet(clk, WithFetchObserver(func(r FetchResult) { mu.Lock(); results = append(results, r); mu.Unlock() }))
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = ks; c.CacheSize = -1 })
	tok := iss.sign(t, claimsAt(t, clk.Now()))
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(context.Background(), tok); err != nil {
				errs <- err
			}
		}()
	}
	waitFor(t, func() bool { return srv.requests.Load() == 1 })
	time.Sleep(20 * time.Millisecond) // let the other callers pile up on the fetch
	close(srv.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("verify: %v", err)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Fatalf("server saw %d requests, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(results) != 1 || results[0].Status != 200 || results[0].Keys != 1 || results[0].Err != nil {
		t.Fatalf("observer saw %+v", results)
	}
}

// TestRemoteBackgroundRefresh: the goroutine refreshes as max-age says and stops with ctx.
func TestRemoteBackgroundRefresh(t *testing.T) {
	iss := newSigner(t)
	srv := newJWKSServer(t, iss.ring)
	srv.maxAge.Store(0)
	ctx, cancel := context.WithCancel(context.Background())
	ks := NewRemoteKeySet(ctx, srv.URL, WithHTTPClient(srv.Client()), WithMaxAgeBounds(20*time.Millisecond, 50*time.Millisecond))
	waitFor(t, func() bool { return ks.Fetches() >= 3 })
	cancel()
	time.Sleep(30 * time.Millisecond) // a fetch in flight may still finish
	n := ks.Fetches()
	time.Sleep(150 * time.Millisecond)
	if m := ks.Fetches(); m != n {
		t.Fatalf("refreshes continued after cancel: %d -> %d", n, m)
	}
	if ks.Stats().Keys != 1 {
		t.Fatal("no keys after background refresh")
	}
}
