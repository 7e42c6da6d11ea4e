package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/storetest"
)

// wantLoss fails t unless err reports a data loss as an unavailable store.
func wantLoss(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrDataLoss) || !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("%s = %v, want ErrDataLoss wrapped as ErrUnavailable", what, err)
	}
}

// TestEpochDetectsEmptyRestart: a Redis without persistence restarts empty under a running
// store; the allocation script finds the shard's marker gone and refuses (it would otherwise
// hand out index 0 again), and from then on every operation fails closed, Ping included.
func TestEpochDetectsEmptyRestart(t *testing.T) {
	ctx := context.Background()
	srv := startRedisServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.addr, MaxRetries: 3, DialerRetries: 3})
	t.Cleanup(func() { _ = c.Close() })
	s := New(c, "p", WithStatusListSize(16))
	if _, err := s.ArmEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	entry := func(id string) store.StatusEntry {
		return store.StatusEntry{ID: id, Subject: "sub", Expires: time.Now().Add(time.Hour)}
	}
	ref, err := s.AllocateStatus(ctx, entry("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeStatus(ctx, store.Selector{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping before the restart: %v", err)
	}
	srv.restart(t)
	_, err = s.AllocateStatus(ctx, entry("b"))
	wantLoss(t, "AllocateStatus after an empty restart", err)
	if !s.DataLost() {
		t.Error("DataLost() = false after the allocation script saw the loss")
	}
	// Latched: operations that would otherwise succeed on the empty server fail.
	wantLoss(t, "PutNonce", s.PutNonce(ctx, []byte("n"), nil, time.Minute))
	_, err = s.ReadStatusList(ctx, ref.List)
	wantLoss(t, "ReadStatusList", err)
	_, err = s.RevokeStatus(ctx, store.Selector{ID: "a"})
	wantLoss(t, "RevokeStatus", err)
	wantLoss(t, "PutAK", s.PutAK(ctx, "ak", []byte("x")))
	wantLoss(t, "Ping", s.Ping(ctx))
}

// TestEpochChecks: each path that compares the marker finds a loss on its own (a fresh store
// per case, so the latch of one case cannot satisfy another): Ping (readiness), the revocation
// script, ReadStatusList's pipeline, a marker replaced by another id, and WatchEpoch.
func TestEpochChecks(t *testing.T) {
	ctx := context.Background()
	c := requireRedis(t)
	armed := func(t *testing.T, shards int) (*Store, string) {
		prefix := testPrefix(t, c)
		s := New(c, prefix, WithStatusListSize(16), WithStatusShards(shards))
		if _, err := s.ArmEpoch(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.CheckEpoch(ctx); err != nil {
			t.Fatalf("CheckEpoch right after ArmEpoch: %v", err)
		}
		return s, prefix
	}
	t.Run("second replica shares the epoch", func(t *testing.T) {
		s, prefix := armed(t, 2)
		other := New(c, prefix, WithStatusShards(2))
		if _, err := other.ArmEpoch(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.CheckEpoch(ctx); err != nil {
			t.Errorf("first replica after the second armed: %v", err)
		}
	})
	t.Run("ping", func(t *testing.T) {
		s, _ := armed(t, 2)
		c.Del(ctx, s.epochKey(1))
		wantLoss(t, "Ping", s.Ping(ctx))
	})
	t.Run("aks marker", func(t *testing.T) {
		s, _ := armed(t, 1)
		c.Del(ctx, s.aksEpochKey())
		wantLoss(t, "CheckEpoch", s.CheckEpoch(ctx))
	})
	t.Run("replace enrolled script", func(t *testing.T) {
		s, _ := armed(t, 1)
		if _, err := s.ReplaceEnrolled(ctx, "ek:1", "ak1", []byte("v")); err != nil {
			t.Fatalf("ReplaceEnrolled while the marker is there: %v", err)
		}
		c.Del(ctx, s.aksEpochKey())
		_, err := s.ReplaceEnrolled(ctx, "ek:1", "ak2", []byte("v"))
		wantLoss(t, "ReplaceEnrolled", err)
		if !s.DataLost() {
			t.Error("DataLost() = false after the script saw the loss")
		}
		if got, _ := c.HGetAll(ctx, s.aksKey()).Result(); len(got) != 2 || got["ek:1"] != "ak1" {
			t.Errorf("the refused replacement wrote: %q", got)
		}
	})
	t.Run("revoke script", func(t *testing.T) {
		s, _ := armed(t, 1)
		c.Del(ctx, s.epochKey(0))
		_, err := s.RevokeStatus(ctx, store.Selector{ID: "x"})
		wantLoss(t, "RevokeStatus", err)
	})
	t.Run("read status list", func(t *testing.T) {
		s, _ := armed(t, 1)
		ref, err := s.AllocateStatus(ctx, store.StatusEntry{ID: "x", Subject: "s", Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		c.Del(ctx, s.epochKey(0))
		_, err = s.ReadStatusList(ctx, ref.List)
		wantLoss(t, "ReadStatusList", err)
	})
	t.Run("another id", func(t *testing.T) {
		s, _ := armed(t, 1)
		c.Set(ctx, s.epochKey(0), "someone else", 0)
		_, err := s.AllocateStatus(ctx, store.StatusEntry{ID: "x", Subject: "s", Expires: time.Now().Add(time.Hour)})
		wantLoss(t, "AllocateStatus", err)
	})
	t.Run("watch", func(t *testing.T) {
		s, _ := armed(t, 1)
		c.Del(ctx, s.epochKey(0))
		got := make(chan error, 1)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		go s.WatchEpoch(wctx, 10*time.Millisecond, func(err error) { got <- err })
		select {
		case err := <-got:
			wantLoss(t, "WatchEpoch", err)
		case <-wctx.Done():
			t.Fatal("WatchEpoch did not report the missing marker")
		}
	})
}

// TestStatusStoreArmed runs the status conformance suite on stores with the epoch armed, so
// the scripts' extra key and argument are exercised on every path.
func TestStatusStoreArmed(t *testing.T) {
	c := requireRedis(t)
	storetest.RunStatusStore(t, func(t *testing.T) (store.StatusStore, storetest.Clock) {
		s := New(c, testPrefix(t, c), WithStatusListSize(16), WithStatusShards(3))
		if _, err := s.ArmEpoch(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s, storetest.RealClock{}
	})
}

// TestAKStoreArmed runs the AK conformance suite on stores with the epoch armed, so that
// ReplaceEnrolled's marker comparison is exercised on every path.
func TestAKStoreArmed(t *testing.T) {
	c := requireRedis(t)
	storetest.RunAKStore(t, func(t *testing.T) store.AKStore {
		s := New(c, testPrefix(t, c))
		if _, err := s.ArmEpoch(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestCheckPersistence: only an append-only file passes. A server without persistence is
// refused with ErrVolatile, one with RDB save points only (Redis 7's default) with
// ErrSnapshotOnly: a crash rolls it back to its last snapshot. AOF passes, and FsyncAlways
// tells appendfsync always from everysec.
func TestCheckPersistence(t *testing.T) {
	ctx := context.Background()
	if p, err := CheckPersistence(ctx, startRedis(t)); !errors.Is(err, ErrVolatile) {
		t.Errorf("volatile server: %v, %v; want ErrVolatile", p, err)
	}
	if p, err := CheckPersistence(ctx, startRedis(t, "--save", "3600 1")); !errors.Is(err, ErrSnapshotOnly) || p.Save != "3600 1" || p.AOF {
		t.Errorf("RDB-only server: %v, %v; want ErrSnapshotOnly", p, err)
	}
	p, err := CheckPersistence(ctx, startRedis(t, "--appendonly", "yes", "--appendfsync", "everysec"))
	if err != nil || !p.AOF || p.Fsync != "everysec" || p.FsyncAlways() {
		t.Errorf("AOF everysec server: %v, %v", p, err)
	}
	p, err = CheckPersistence(ctx, startRedis(t, "--appendonly", "yes", "--appendfsync", "always"))
	if err != nil || !p.FsyncAlways() {
		t.Errorf("AOF always server: %v, %v", p, err)
	}
	if _, err := CheckPersistence(ctx, deadClient(t)); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("dead server: %v, want ErrUnavailable", err)
	}
}
