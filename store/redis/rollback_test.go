package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/store"
)

// TestEpochDetectsSnapshotRollback: Redis goes back in time under running stores (a snapshot
// taken, more tokens issued, then a crash and a restart from the snapshot, as a Redis with
// save points and no AOF does). The epoch markers are in the snapshot, so only the status
// counter shows it: the allocating store would otherwise hand out an index already in a live
// token; a store that only read the list, and one that only answered readiness probes, find it
// too. A store armed after the rollback (the restart that acknowledges it) serves again.
func TestEpochDetectsSnapshotRollback(t *testing.T) {
	ctx := context.Background()
	srv := startRedisServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.addr, MaxRetries: 3, DialerRetries: 3})
	t.Cleanup(func() { _ = c.Close() })
	arm := func() *Store {
		s := New(c, "p", WithStatusListSize(16))
		if _, err := s.ArmEpoch(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	issuing, reading, probing := arm(), arm(), arm()
	entry := func(id string) store.StatusEntry {
		return store.StatusEntry{ID: id, Subject: "sub-" + id, Expires: time.Now().Add(time.Hour)}
	}
	if _, err := issuing.AllocateStatus(ctx, entry("a")); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var last store.StatusRef
	for _, id := range []string{"b", "c"} {
		ref, err := issuing.AllocateStatus(ctx, entry(id))
		if err != nil {
			t.Fatal(err)
		}
		last = ref
	}
	if _, err := reading.ReadStatusList(ctx, last.List); err != nil {
		t.Fatal(err)
	}
	if err := probing.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	srv.restart(t) // SIGKILL, then a restart that loads the snapshot: "b" and "c" are gone
	if n, err := c.Get(ctx, "p:status:{p/0}:next").Int64(); err != nil || n != 1 {
		t.Fatalf("counter after the rollback = %d, %v; want 1 (the snapshot's)", n, err)
	}
	if err := New(c, "p").CheckEpoch(ctx); err != nil {
		t.Fatalf("markers after the rollback: %v (the test wants them intact)", err)
	}
	ref, err := issuing.AllocateStatus(ctx, entry("d"))
	wantLoss(t, fmt.Sprintf("AllocateStatus after a rollback (got %+v)", ref), err)
	if err != nil && !strings.Contains(err.Error(), "went back") {
		t.Errorf("the error does not say the counter went back: %v", err)
	}
	_, err = reading.ReadStatusList(ctx, last.List)
	wantLoss(t, "ReadStatusList after a rollback", err)
	wantLoss(t, "Ping after a rollback", probing.Ping(ctx))
	wantLoss(t, "Ping of the allocating store (latched)", issuing.Ping(ctx))

	fresh := arm()
	if err := fresh.Ping(ctx); err != nil {
		t.Errorf("a store armed after the rollback: %v", err)
	}
	if _, err := fresh.AllocateStatus(ctx, entry("e")); err != nil {
		t.Errorf("a store armed after the rollback cannot allocate: %v", err)
	}
}

// TestEpochNoFalseRollback: concurrent allocations, list reads and probes from two armed
// stores on one prefix never look like a rollback, although their answers come back in any
// order (a check against the highest value seen when the answer arrives, instead of when the
// request was sent, would trip here).
func TestEpochNoFalseRollback(t *testing.T) {
	ctx := context.Background()
	c := requireRedis(t)
	prefix := testPrefix(t, c)
	stores := make([]*Store, 2)
	for i := range stores {
		stores[i] = New(c, prefix, WithStatusListSize(16), WithStatusShards(2))
		if _, err := stores[i].ArmEpoch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[g%2]
			for i := 0; i < 60; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				ref, err := s.AllocateStatus(ctx, store.StatusEntry{ID: id, Subject: id, Expires: time.Now().Add(time.Hour)})
				if err == nil && i%5 == 0 {
					_, err = s.ReadStatusList(ctx, ref.List)
				}
				if err == nil && i%7 == 0 {
					err = s.Ping(ctx)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, s := range stores {
		if s.DataLost() {
			t.Errorf("store %d latched a data loss", i)
		}
	}
}

// TestPingRefusesWhenWritesFail: readiness fails while Redis answers reads but refuses every
// write: maxmemory reached with noeviction (OOM) and a READONLY replica. It is not a data
// loss: readiness returns once writes are accepted again.
func TestPingRefusesWhenWritesFail(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, c *redis.Client, refuse, accept func() error, want string) {
		t.Helper()
		s := New(c, "p", WithStatusShards(2))
		if _, err := s.ArmEpoch(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping before: %v", err)
		}
		if err := refuse(); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, s.epochKey(0)).Err(); err != nil {
			t.Fatalf("reads must still work for this test: %v", err)
		}
		err := s.Ping(ctx)
		if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, ErrDataLoss) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Ping while writes are refused = %v; want ErrUnavailable (not a data loss) naming %s", err, want)
		}
		if err := accept(); err != nil {
			t.Fatal(err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping once writes are accepted again: %v", err)
		}
	}
	t.Run("maxmemory", func(t *testing.T) {
		c := startRedis(t, "--maxmemory-policy", "noeviction")
		check(t, c, func() error {
			if err := c.Set(ctx, "ballast", strings.Repeat("x", 1<<20), 0).Err(); err != nil {
				return err
			}
			used, err := usedMemory(ctx, c)
			if err != nil {
				return err
			}
			// Below what is in use: with noeviction every write is now refused.
			return c.ConfigSet(ctx, "maxmemory", fmt.Sprint(used-(512<<10))).Err()
		}, func() error {
			return c.ConfigSet(ctx, "maxmemory", "0").Err()
		}, "OOM")
	})
	t.Run("read-only replica", func(t *testing.T) {
		c := startRedis(t)
		dead := deadClient(t).Options().Addr
		host, port, _ := strings.Cut(dead, ":")
		check(t, c, func() error {
			return c.ReplicaOf(ctx, host, port).Err()
		}, func() error {
			return c.ReplicaOf(ctx, "NO", "ONE").Err()
		}, "READONLY")
	})
}

// usedMemory returns INFO memory's used_memory.
func usedMemory(ctx context.Context, c *redis.Client) (int64, error) {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
			var n int64
			_, err := fmt.Sscan(v, &n)
			return n, err
		}
	}
	return 0, errors.New("no used_memory in INFO memory")
}
