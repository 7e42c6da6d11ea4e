package redisrefs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/refvalues/refvaluestest"
	"github.com/passport-attest/passport/token"
)

// The shared test server: PASSPORT_REDIS_URL, default redis://127.0.0.1:6379/0. If it does
// not answer, tests fail, unless PASSPORT_SKIP_REDIS=1.
const defaultRedisURL = "redis://127.0.0.1:6379/0"

var (
	sharedOnce   sync.Once
	sharedClient *redis.Client
	sharedErr    error
)

func requireRedis(tb testing.TB) *redis.Client {
	tb.Helper()
	sharedOnce.Do(func() {
		url := os.Getenv("PASSPORT_REDIS_URL")
		if url == "" {
			url = defaultRedisURL
		}
		opts, err := redis.ParseURL(url)
		if err != nil {
			sharedErr = fmt.Errorf("PASSPORT_REDIS_URL %q: %w", url, err)
			return
		}
		c := redis.NewClient(opts)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := c.Ping(ctx).Err(); err != nil {
			_ = c.Close()
			sharedErr = fmt.Errorf("redis at %s unreachable: %w", opts.Addr, err)
			return
		}
		sharedClient = c
	})
	if sharedErr != nil {
		if os.Getenv("PASSPORT_SKIP_REDIS") == "1" {
			tb.Skipf("PASSPORT_SKIP_REDIS=1: %v", sharedErr)
		}
		tb.Fatalf("%v (set PASSPORT_SKIP_REDIS=1 to skip Redis tests)", sharedErr)
	}
	return sharedClient
}

// testPrefix returns a random key prefix and deletes its keys when tb ends.
func testPrefix(tb testing.TB, c redis.UniversalClient) string {
	tb.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	prefix := "passport-test-" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		ctx := context.Background()
		keys, err := c.Keys(ctx, prefix+":*").Result()
		if err != nil {
			tb.Errorf("cleanup %s: %v", prefix, err)
			return
		}
		if len(keys) > 0 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				tb.Errorf("cleanup %s: %v", prefix, err)
			}
		}
	})
	return prefix
}

func TestConformance(t *testing.T) {
	c := requireRedis(t)
	refvaluestest.Run(t, func(t *testing.T) refvalues.Store { return New(c, testPrefix(t, c)) })
}

// TestReplicasShare checks that two stores on one Redis and prefix (two issuer replicas) see
// each other's changes, and that the version tells them so.
func TestReplicasShare(t *testing.T) {
	ctx := context.Background()
	c := requireRedis(t)
	p := testPrefix(t, c)
	a, b := New(c, p), New(c, p)
	vb, err := b.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Revoke(ctx, refvalues.Revocation{Digest: refvaluestest.D1, RevokedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if v, _ := b.Version(ctx); v == vb {
		t.Fatal("replica b did not see a's change in the version")
	}
	l, err := b.ListRevoked(ctx)
	if err != nil || len(l) != 1 || l[0].Digest != refvaluestest.D1 {
		t.Fatalf("b.ListRevoked = %+v, %v", l, err)
	}
	keys, _ := c.Keys(ctx, p+":*").Result()
	for _, k := range keys {
		if k != p+":{refvalues}:revoked" && k != p+":{refvalues}:version" {
			t.Errorf("unexpected key %s", k)
		}
	}
}

// TestMalformedRecordFailsClosed checks that a stored record that does not decode is an error.
func TestMalformedRecordFailsClosed(t *testing.T) {
	ctx := context.Background()
	c := requireRedis(t)
	p := testPrefix(t, c)
	s := New(c, p)
	if err := c.HSet(ctx, p+":{refvalues}:revoked", refvaluestest.D1, "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(ctx); !errors.Is(err, refvalues.ErrUnavailable) {
		t.Fatalf("Snapshot = %v, want ErrUnavailable", err)
	}
	if err := c.SAdd(ctx, p+":{refvalues}:set:k", "nothex").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.SAdd(ctx, p+":{refvalues}:sets", "k").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HDel(ctx, p+":{refvalues}:revoked", refvaluestest.D1).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(ctx); !errors.Is(err, refvalues.ErrUnavailable) {
		t.Fatalf("Snapshot with a bad digest = %v, want ErrUnavailable", err)
	}
}

// TestRedisDown starts a private server, stops it, and checks every operation fails closed.
func TestRedisDown(t *testing.T) {
	ctx := context.Background()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) }
	t.Cleanup(stop)
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	for i := 0; ; i++ {
		if c.Ping(ctx).Err() == nil {
			break
		}
		if i > 200 {
			t.Fatal("private redis-server did not answer")
		}
		time.Sleep(25 * time.Millisecond)
	}
	s := New(c, "p")
	if err := s.Add(ctx, "k", refvaluestest.D1); err != nil {
		t.Fatal(err)
	}
	stop()
	checks := map[string]error{}
	checks["Add"] = s.Add(ctx, "k", refvaluestest.D2)
	_, _, checks["Revoke"] = s.Revoke(ctx, refvalues.Revocation{Digest: refvaluestest.D2, RevokedAt: time.Now()})
	_, checks["Reinstate"] = s.Reinstate(ctx, refvaluestest.D2)
	_, checks["Snapshot"] = s.Snapshot(ctx)
	_, checks["Version"] = s.Version(ctx)
	_, checks["ListRevoked"] = s.ListRevoked(ctx)
	for op, err := range checks {
		if !errors.Is(err, refvalues.ErrUnavailable) {
			t.Errorf("%s with Redis down = %v, want ErrUnavailable", op, err)
		}
	}
}

// TestTwoEnginesShareRevocations: two issuer replicas' policy engines on one Redis: a
// revocation made through one is in force in the other after its next poll.
func TestTwoEnginesShareRevocations(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := requireRedis(t)
	prefix := testPrefix(t, c)
	st, err := evidence.FromEventLog(testenv.EventLog(t, testenv.DefaultLog))
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := policy.Learn(st, policy.LearnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	y, _ := f.Marshal()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, y, 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := policy.NewEngine(ctx, path, policy.EngineOptions{Store: New(c, prefix), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.NewEngine(ctx, path, policy.EngineOptions{Store: New(c, prefix), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); b.Watch(ctx, 20*time.Millisecond) }()
	if s := b.Appraise(st).Status; s != token.TierAffirming {
		t.Fatalf("replica b before: %v", s)
	}
	if _, _, err := a.RevokeReferenceValue(ctx, f.ReferenceValues["kernels"][0], "CVE"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Appraise(st).Status != token.TierContraindicated {
		if time.Now().After(deadline) {
			t.Fatal("replica b never refused the revoked kernel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b.Current().ID() != a.Current().ID() {
		t.Error("replicas disagree on the policy ID")
	}
	cancel()
	<-done
}
