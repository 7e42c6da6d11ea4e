package jwks_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/internal/testredis"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/store"
	dirstore "github.com/passport-attest/passport/store/dir"
	"github.com/passport-attest/passport/store/memory"
	redisstore "github.com/passport-attest/passport/store/redis"
	"github.com/passport-attest/passport/store/storetest"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func newKEK(t *testing.T) *jwks.KEK {
	t.Helper()
	k, err := jwks.GenerateKEK()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// verifies reports whether tok's signature verifies with the key of its kid in set.
func verifies(tok string, set jose.JSONWebKeySet) bool {
	jws, err := jose.ParseSignedCompact(tok, jwks.Algorithms)
	if err != nil {
		return false
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		return false
	}
	_, err = jws.Verify(keys[0].Key)
	return err == nil
}

func states(infos []jwks.KeyInfo) map[string]int {
	m := map[string]int{}
	for _, k := range infos {
		m[k.State]++
	}
	return m
}

// TestRotationSchedule steps an injected clock through 50 scheduled rotations, signing a
// token at every step, and checks the rotation invariants at each step: one signing key, which
// was published at least one period before it signed; every token verifies with the published
// set until it expires; retired keys leave the set after their retention, so the set stays
// small.
func TestRotationSchedule(t *testing.T) {
	ctx := context.Background()
	clk := storetest.NewFakeClock(t0)
	const (
		period    = time.Hour
		lifetime  = 5 * time.Minute
		retention = lifetime + 2*time.Minute
		step      = 5 * time.Minute
	)
	ring := jwks.NewKeyring(nil)
	r, err := jwks.NewRotator(ctx, jwks.RotatorConfig{Keyring: ring, Storage: memory.New(), KEK: newKEK(t),
		Period: period, Retention: retention, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := ring.Active()
	firstSeen := map[string]time.Time{}
	type issued struct {
		tok string
		exp time.Time
		kid string
	}
	var toks []issued
	signers := map[string]bool{}
	for i := 0; i <= 50*int(period/step); i++ {
		now := clk.Now()
		set := ring.PublicSet()
		for _, k := range set.Keys {
			if _, ok := firstSeen[k.KeyID]; !ok {
				firstSeen[k.KeyID] = now
			}
		}
		if st := states(r.Keys()); st[jwks.StateActive] != 1 || st[jwks.StateNext] != 1 || st[jwks.StateRetired] > 1 {
			t.Fatalf("step %d: key states %v, want one active, one next, at most one retired", i, st)
		}
		if len(set.Keys) > 3 {
			t.Fatalf("step %d: %d keys published", i, len(set.Keys))
		}
		tok, kid, err := ring.Sign(map[string]any{"exp": now.Add(lifetime).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		if kid != first.KeyID && now.Sub(firstSeen[kid]) < period {
			t.Fatalf("step %d: key %s signs %v after it was first published, want at least %v", i, kid, now.Sub(firstSeen[kid]), period)
		}
		signers[kid] = true
		toks = append(toks, issued{tok, now.Add(lifetime), kid})
		for _, it := range toks {
			if now.Before(it.exp.Add(time.Minute)) && !verifies(it.tok, set) { // one minute of relying-party leeway
				t.Fatalf("step %d: a token signed by %s and valid until %s no longer verifies", i, it.kid, it.exp)
			}
		}
		for _, k := range r.Keys() {
			if k.State == jwks.StateRetired && !now.Before(k.PublishedUntil) {
				t.Fatalf("step %d: retired key %s still listed after %s", i, k.KID, k.PublishedUntil)
			}
		}
		clk.Advance(step)
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(signers) != 51 {
		t.Fatalf("%d keys signed over 50 rotations, want 51", len(signers))
	}
}

func TestRotateManual(t *testing.T) {
	ctx := context.Background()
	ring := jwks.NewKeyring(nil)
	r, err := jwks.NewRotator(ctx, jwks.RotatorConfig{Keyring: ring, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	before := r.Keys()
	var next string
	for _, k := range before {
		if k.State == jwks.StateNext {
			next = k.KID
		}
	}
	active, _ := ring.Active()
	if err := r.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	now, _ := ring.Active()
	if now.KeyID != next {
		t.Fatalf("after Rotate the active key is %s, want the published next key %s", now.KeyID, next)
	}
	if st := states(r.Keys()); st[jwks.StateRetired] != 1 || st[jwks.StateNext] != 1 {
		t.Fatalf("key states after Rotate: %v", st)
	}
	if set := ring.PublicSet(); len(set.Key(active.KeyID)) != 1 {
		t.Fatal("the retired key left the JWKS at once")
	}
}

// storages returns a fresh shared Storage of every kind: memory, a directory, Redis.
func storages(t *testing.T) map[string]func(t *testing.T) jwks.Storage {
	return map[string]func(t *testing.T) jwks.Storage{
		"memory": func(t *testing.T) jwks.Storage { return memory.New() },
		"dir": func(t *testing.T) jwks.Storage {
			s, err := dirstore.New(filepath.Join(t.TempDir(), "keys"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"redis": func(t *testing.T) jwks.Storage {
			c, prefix := testredis.Redis(t)
			return redisstore.New(c, prefix)
		},
	}
}

// TestReplicasRace runs two keyrings on one storage (two issuer replicas), lets them race
// through a due scheduled rotation and then through a manual rotation at the same moment:
// each race ends with exactly one new key, and both replicas sign with the same key.
func TestReplicasRace(t *testing.T) {
	for name, mk := range storages(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			clk := storetest.NewFakeClock(t0)
			st, kek := &gatedStorage{Storage: mk(t)}, newKEK(t)
			cfg := func(ring *jwks.Keyring) jwks.RotatorConfig {
				return jwks.RotatorConfig{Keyring: ring, Storage: st, KEK: kek, Period: time.Hour, Retention: time.Hour, Now: clk.Now}
			}
			ringA, ringB := jwks.NewKeyring(nil), jwks.NewKeyring(nil)
			// Even the first start races: both replicas find no key set.
			var a, b *jwks.Rotator
			st.arm(2)
			race(t, func() (err error) { a, err = jwks.NewRotator(ctx, cfg(ringA)); return }, func() (err error) { b, err = jwks.NewRotator(ctx, cfg(ringB)); return })
			sameActive(t, ringA, ringB)
			if n := len(a.Keys()); n != 2 {
				t.Fatalf("after the first start: %d keys, want 2", n)
			}
			for round := 0; round < 5; round++ {
				clk.Advance(time.Hour)
				st.arm(2)
				race(t, func() error { return a.Sync(ctx) }, func() error { return b.Sync(ctx) })
				sameActive(t, ringA, ringB)
				if st := states(a.Keys()); st[jwks.StateRetired] != 1 || st[jwks.StateNext] != 1 {
					t.Fatalf("round %d: key states %v after a racing scheduled rotation", round, st)
				}
			}
			st.arm(2)
			race(t, func() error { return a.Rotate(ctx) }, func() error { return b.Rotate(ctx) })
			race(t, func() error { return a.Sync(ctx) }, func() error { return b.Sync(ctx) })
			sameActive(t, ringA, ringB)
			if st := states(a.Keys()); st[jwks.StateRetired] != 2 || st[jwks.StateNext] != 1 {
				t.Fatalf("key states %v after two racing manual rotations, want exactly one rotation", st)
			}
		})
	}
}

// gatedStorage makes races real: once armed for n loads, it holds every write until n loads
// have been served (at most 5 s), so that the racing replicas all read the same version
// before any of them writes.
type gatedStorage struct {
	jwks.Storage
	mu    sync.Mutex
	loads int
	open  chan struct{}
}

func (g *gatedStorage) arm(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.loads, g.open = n, make(chan struct{})
}

func (g *gatedStorage) GetBlob(ctx context.Context, name string) ([]byte, uint64, error) {
	b, v, err := g.Storage.GetBlob(ctx, name)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.loads > 0 {
		if g.loads--; g.loads == 0 {
			close(g.open)
		}
	}
	return b, v, err
}

func (g *gatedStorage) PutBlob(ctx context.Context, name string, data []byte, version uint64) (uint64, error) {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
		}
	}
	return g.Storage.PutBlob(ctx, name, data, version)
}

// race runs fns at the same moment and fails on any error.
func race(t *testing.T, fns ...func() error) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, len(fns))
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn()
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func sameActive(t *testing.T, a, b *jwks.Keyring) {
	t.Helper()
	ka, _ := a.Active()
	kb, _ := b.Active()
	if ka.KeyID == "" || ka.KeyID != kb.KeyID {
		t.Fatalf("replicas sign with %q and %q", ka.KeyID, kb.KeyID)
	}
	if len(a.PublicSet().Keys) != len(b.PublicSet().Keys) {
		t.Fatalf("replicas publish %d and %d keys", len(a.PublicSet().Keys), len(b.PublicSet().Keys))
	}
}

// TestWrongKEK checks that a replica with another key-encryption key refuses to start.
func TestWrongKEK(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	if _, err := jwks.NewRotator(ctx, jwks.RotatorConfig{Keyring: jwks.NewKeyring(nil), Storage: st, KEK: newKEK(t), Retention: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ring := jwks.NewKeyring(nil)
	_, err := jwks.NewRotator(ctx, jwks.RotatorConfig{Keyring: ring, Storage: st, KEK: newKEK(t), Retention: time.Hour})
	if !errors.Is(err, jwks.ErrUnseal) {
		t.Fatalf("NewRotator with another KEK = %v, want ErrUnseal", err)
	}
	if _, err := ring.Active(); !errors.Is(err, jwks.ErrNoKey) {
		t.Fatal("the refused replica got a signing key")
	}
	if _, err := jwks.NewRotator(ctx, jwks.RotatorConfig{Keyring: ring, Storage: st, Retention: time.Hour}); err == nil {
		t.Fatal("a shared storage without a KEK was accepted")
	}
}

// TestStorageDown checks that a Sync against an unreachable storage fails with
// store.ErrUnavailable and leaves the Keyring signing with its keys.
func TestStorageDown(t *testing.T) {
	ctx := context.Background()
	srv := testredis.StartRedis(t)
	c, err := redisstore.Open(srv.URL + "?max_retries=-1&dial_timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ring := jwks.NewKeyring(nil)
	r, err := jwks.NewRotator(ctx, jwks.RotatorConfig{Keyring: ring, Storage: redisstore.New(c, "p"), KEK: newKEK(t), Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := ring.Active()
	srv.Stop()
	if err := r.Sync(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Sync with Redis down = %v, want ErrUnavailable", err)
	}
	if err := r.Rotate(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Rotate with Redis down = %v, want ErrUnavailable", err)
	}
	if after, err := ring.Active(); err != nil || after.KeyID != before.KeyID {
		t.Fatalf("keyring changed while the storage was down: %v %v", after.KeyID, err)
	}
}
