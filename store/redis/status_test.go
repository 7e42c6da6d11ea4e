package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/storetest"
)

func TestStatusStore(t *testing.T) {
	c := requireRedis(t)
	storetest.RunStatusStore(t, func(t *testing.T) (store.StatusStore, storetest.Clock) {
		return New(c, testPrefix(t, c), WithStatusListSize(16)), storetest.RealClock{}
	})
}

// TestStatusStoreSharded runs the suite with three shards: subjects spread over independent
// counters and lists, and the invariants still hold.
func TestStatusStoreSharded(t *testing.T) {
	c := requireRedis(t)
	storetest.RunStatusStore(t, func(t *testing.T) (store.StatusStore, storetest.Clock) {
		return New(c, testPrefix(t, c), WithStatusListSize(16), WithStatusShards(3)), storetest.RealClock{}
	})
}

func TestRevocationFeed(t *testing.T) {
	c := requireRedis(t)
	storetest.RunRevocationFeed(t, func(t *testing.T) (store.StatusStore, store.RevocationFeed) {
		prefix := testPrefix(t, c)
		// The feed is a second Store on its own connection: another replica.
		other := redis.NewClient(c.Options())
		t.Cleanup(func() { _ = other.Close() })
		return New(c, prefix, WithStatusListSize(16)), New(other, prefix, WithStatusListSize(16))
	})
}

func TestBlobStore(t *testing.T) {
	c := requireRedis(t)
	storetest.RunBlobStore(t, func(t *testing.T) store.BlobStore { return New(c, testPrefix(t, c)) })
}

// TestStatusBitmapLayout pins the conversion between the status list's bit order (entry i is
// bit i%8 of byte i/8 counting from the least significant bit) and Redis's (SETBIT offset o is
// bit 7-o%8 of byte o/8): the raw bitmap GET returns is the status list's byte array.
func TestStatusBitmapLayout(t *testing.T) {
	ctx := context.Background()
	c := requireRedis(t)
	prefix := testPrefix(t, c)
	s := New(c, prefix, WithStatusListSize(64))
	var ids []string
	for i := 0; i < 12; i++ {
		e := store.StatusEntry{ID: "jti-" + string(rune('a'+i)), Subject: "ak", Expires: time.Now().Add(time.Minute)}
		if _, err := s.AllocateStatus(ctx, e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	for _, i := range []int{0, 9, 11} {
		if _, err := s.RevokeStatus(ctx, store.Selector{ID: ids[i]}); err != nil {
			t.Fatal(err)
		}
	}
	key := prefix + ":status:{" + prefix + "/0}:list:0"
	raw, err := c.Get(ctx, key).Bytes()
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	if len(raw) != 2 || raw[0] != 0x01 || raw[1] != 0x0a {
		t.Fatalf("raw bitmap % x, want 01 0a", raw)
	}
	for off, want := range map[int64]int64{7: 1, 0: 0, 14: 1, 12: 1, 8: 0} {
		if got := c.GetBit(ctx, key, off).Val(); got != want {
			t.Errorf("GETBIT %d = %d, want %d", off, got, want)
		}
	}
	// The bitmap lives as long as its list's last entry, no longer.
	if ttl := c.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("bitmap PTTL = %v, want in (0, 1m]", ttl)
	}
	b, err := s.ReadStatusList(ctx, 0)
	if err != nil || len(b) != 8 || b[0] != 0x01 || b[1] != 0x0a {
		t.Fatalf("ReadStatusList = % x, %v", b, err)
	}
}

// TestStatusKeysExpire checks the TTLs of an entry's records: id, subject and label sets live
// until the entry expires, and sets as long as their longest entry.
func TestStatusKeysExpire(t *testing.T) {
	ctx := context.Background()
	c := requireRedis(t)
	prefix := testPrefix(t, c)
	s := New(c, prefix)
	base := s.shardBase(0)
	short := store.StatusEntry{ID: "a", Subject: "ak", Labels: []string{"rv"}, Expires: time.Now().Add(time.Minute)}
	long := store.StatusEntry{ID: "b", Subject: "ak", Labels: []string{"rv"}, Expires: time.Now().Add(time.Hour)}
	for _, e := range []store.StatusEntry{long, short} {
		if _, err := s.AllocateStatus(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for key, max := range map[string]time.Duration{
		digestKey(base, "id", "a"):   time.Minute,
		digestKey(base, "id", "b"):   time.Hour,
		digestKey(base, "sub", "ak"): time.Hour,
		digestKey(base, "lbl", "rv"): time.Hour,
	} {
		ttl := c.PTTL(ctx, key).Val()
		if ttl <= max-time.Minute/2 || ttl > max {
			t.Errorf("PTTL %s = %v, want about %v", key, ttl, max)
		}
	}
}

// TestStatusFailClosed checks that an unreachable server yields ErrUnavailable from every
// status operation, never an index or a list.
func TestStatusFailClosed(t *testing.T) {
	ctx := context.Background()
	s := New(deadClient(t), "p")
	e := store.StatusEntry{ID: "a", Subject: "ak", Expires: time.Now().Add(time.Minute)}
	if ref, err := s.AllocateStatus(ctx, e); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("AllocateStatus = %+v, %v; want ErrUnavailable", ref, err)
	}
	if _, err := s.RevokeStatus(ctx, store.Selector{ID: "a"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("RevokeStatus = %v, want ErrUnavailable", err)
	}
	if b, err := s.ReadStatusList(ctx, 0); !errors.Is(err, store.ErrUnavailable) || b != nil {
		t.Errorf("ReadStatusList = %x, %v; want ErrUnavailable", b, err)
	}
	if _, _, err := s.GetBlob(ctx, "k"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("GetBlob = %v, want ErrUnavailable", err)
	}
	if _, err := s.PutBlob(ctx, "k", nil, 0); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("PutBlob = %v, want ErrUnavailable", err)
	}
}

// TestWatchResyncAfterRestart stops the watched server and starts it again on the same port:
// the watcher reconnects by itself, reports a Resync, and receives later revocations.
func TestWatchResyncAfterRestart(t *testing.T) {
	srv := startRedisServer(t)
	c := srv.client(t, "", "")
	s := New(c, "p", WithStatusListSize(16))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan store.RevocationEvent, 16)
	go func() { _ = s.WatchRevocations(ctx, func(ev store.RevocationEvent) { events <- ev }) }()
	if ev := nextEvent(t, events); !ev.Resync {
		t.Fatalf("first event %+v, want Resync", ev)
	}
	srv.restart(t)
	if ev := nextEvent(t, events); !ev.Resync {
		t.Fatalf("event after restart %+v, want Resync", ev)
	}
	e := store.StatusEntry{ID: "a", Subject: "ak", Expires: time.Now().Add(time.Minute)}
	ref, err := s.AllocateStatus(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeStatus(ctx, store.Selector{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, events)
	if ev.Resync || ev.List != ref.List || len(ev.Indexes) != 1 || ev.Indexes[0] != ref.Index {
		t.Fatalf("event %+v, want revocation of %+v", ev, ref)
	}
}

func nextEvent(t *testing.T, ch chan store.RevocationEvent) store.RevocationEvent {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no revocation event within 30 s")
	}
	return store.RevocationEvent{}
}

func TestParseRevocation(t *testing.T) {
	r, err := parseRevocation("7 1 2 300")
	if err != nil || r.List != 7 || len(r.Indexes) != 3 || r.Indexes[2] != 300 {
		t.Fatalf("parseRevocation = %+v, %v", r, err)
	}
	for _, bad := range []string{"", "7", "x 1", "7 -1", "7 1 y"} {
		if _, err := parseRevocation(bad); err == nil {
			t.Errorf("parseRevocation(%q) succeeded", bad)
		}
	}
}

// BenchmarkAllocateStatus is one status entry allocation (jti, subject and two reference-value
// records, folded TPM clock check): one Lua script, one round trip.
func BenchmarkAllocateStatus(b *testing.B) {
	ctx := context.Background()
	c := requireRedis(b)
	s := New(c, testPrefix(b, c))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e := store.StatusEntry{ID: "jti-" + strconv.Itoa(i), Subject: "ak", Labels: []string{"rv-1", "rv-2"},
			Expires: time.Now().Add(time.Minute), Clock: &store.ClockAdvance{AK: "ak", Info: store.ClockInfo{Clock: uint64(i)}, TTL: time.Minute}}
		if _, err := s.AllocateStatus(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllocateStatusManyLabels allocates entries with 100 labels each, as the issuer
// does under a policy with reference-value sets (the measured digests of PCRs 0-9).
func BenchmarkAllocateStatusManyLabels(b *testing.B) {
	ctx := context.Background()
	c := requireRedis(b)
	s := New(c, testPrefix(b, c))
	labels := make([]string, 100)
	for i := range labels {
		labels[i] = fmt.Sprintf("%064x", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e := store.StatusEntry{ID: "jti-" + strconv.Itoa(i), Subject: "ak", Labels: labels, Expires: time.Now().Add(time.Minute)}
		if _, err := s.AllocateStatus(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadStatusList reads a 131072-entry list (16 KiB) in one pipelined round trip.
func BenchmarkReadStatusList(b *testing.B) {
	ctx := context.Background()
	c := requireRedis(b)
	s := New(c, testPrefix(b, c))
	if _, err := s.AllocateStatus(ctx, store.StatusEntry{ID: "a", Subject: "ak", Expires: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.RevokeStatus(ctx, store.Selector{ID: "a"}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.ReadStatusList(ctx, 0); err != nil {
			b.Fatal(err)
		}
	}
}
