package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/storetest"
)

// The shared test server: PASSPORT_REDIS_URL, default redis://127.0.0.1:6379/0. If it does
// not answer, tests fail, unless PASSPORT_SKIP_REDIS=1.
const defaultRedisURL = "redis://127.0.0.1:6379/0"

var (
	sharedOnce   sync.Once
	sharedClient *redis.Client
	sharedErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedClient != nil {
		_ = sharedClient.Close()
	}
	os.Exit(code)
}

// requireRedis returns a client of the shared server, or fails (skips with
// PASSPORT_SKIP_REDIS=1) if it is unreachable.
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

// testPrefix returns a unique random key prefix and deletes every key under it when tb ends.
func testPrefix(tb testing.TB, c redis.UniversalClient) string {
	tb.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	prefix := "passport-test-" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			tb.Errorf("cleanup scan %s: %v", prefix, err)
			return
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			if err := c.Unlink(ctx, keys[:n]...).Err(); err != nil {
				tb.Errorf("cleanup unlink %s: %v", prefix, err)
				return
			}
			keys = keys[n:]
		}
	})
	return prefix
}

func TestNonceStore(t *testing.T) {
	c := requireRedis(t)
	storetest.RunNonceStore(t, func(t *testing.T) (store.NonceStore, storetest.Clock) {
		return New(c, testPrefix(t, c)), storetest.RealClock{}
	})
}

func TestClockStore(t *testing.T) {
	c := requireRedis(t)
	storetest.RunClockStore(t, func(t *testing.T) (store.ClockStore, storetest.Clock) {
		return New(c, testPrefix(t, c)), storetest.RealClock{}
	})
}

// TestKeyLayout pins the documented key names, hash tags and TTLs.
func TestKeyLayout(t *testing.T) {
	ctx := context.Background()
	c := requireRedis(t)
	prefix := testPrefix(t, c)
	s := New(c, prefix)

	nonce := []byte("nonce")
	if err := s.PutNonce(ctx, nonce, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nonce)
	key := prefix + ":nonce:{" + hex.EncodeToString(sum[:]) + "}"
	if v, err := c.Get(ctx, key).Result(); err != nil || v != "v" {
		t.Fatalf("GET %s = %q, %v; want \"v\"", key, v, err)
	}
	if ttl, err := c.PTTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL %s = %v, %v; want in (0, 1m]", key, ttl, err)
	}

	ci := store.ClockInfo{ResetCount: 3, RestartCount: 4, Clock: 1<<40 + 5}
	if err := s.AdvanceClock(ctx, "ak", ci, time.Hour); err != nil {
		t.Fatal(err)
	}
	sum = sha256.Sum256([]byte("ak"))
	key = prefix + ":clock:{" + hex.EncodeToString(sum[:]) + "}"
	h, err := c.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"r": "3", "s": "4", "h": strconv.Itoa(1 << 8), "l": "5"}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Fatalf("HGETALL %s = %v, want %v", key, h, want)
	}
	if ttl, err := c.PTTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > time.Hour {
		t.Fatalf("PTTL %s = %v, %v; want in (0, 1h]", key, ttl, err)
	}
}

// TestMalformedRecords checks that keys of the wrong type or shape fail closed.
func TestMalformedRecords(t *testing.T) {
	ctx := context.Background()
	c := requireRedis(t)
	prefix := testPrefix(t, c)
	s := New(c, prefix)

	if err := c.RPush(ctx, s.key("nonce", []byte("n")), "x").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeNonce(ctx, []byte("n")); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ConsumeNonce on a list = %v, want ErrUnavailable", err)
	}
	if err := c.Set(ctx, s.key("clock", []byte("ak1")), "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.AdvanceClock(ctx, "ak1", store.ClockInfo{}, time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("AdvanceClock on a string = %v, want ErrUnavailable", err)
	}
	if err := c.HSet(ctx, s.key("clock", []byte("ak2")), "r", "1", "s", "junk", "h", "0", "l", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.AdvanceClock(ctx, "ak2", store.ClockInfo{ResetCount: 1, RestartCount: 1}, time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("AdvanceClock on a malformed hash = %v, want ErrUnavailable", err)
	}
	if err := c.HSet(ctx, s.key("clock", []byte("ak3")), "r", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.AdvanceClock(ctx, "ak3", store.ClockInfo{ResetCount: 2}, time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("AdvanceClock on a partial hash = %v, want ErrUnavailable", err)
	}
}

// TestScriptCacheFlushed checks the EVALSHA -> EVAL fallback after SCRIPT FLUSH. It flushes
// only the script cache of the server it creates.
func TestScriptCacheFlushed(t *testing.T) {
	ctx := context.Background()
	c := startRedis(t)
	s := New(c, "p")
	if err := s.AdvanceClock(ctx, "ak", store.ClockInfo{Clock: 2}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.AdvanceClock(ctx, "ak", store.ClockInfo{Clock: 1}, time.Minute); !errors.Is(err, store.ErrClockRollback) {
		t.Fatalf("AdvanceClock after SCRIPT FLUSH = %v, want ErrClockRollback", err)
	}
}

// deadClient returns a client of a closed port that fails fast.
func deadClient(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:          "127.0.0.1:1",
		DialTimeout:   time.Second,
		MaxRetries:    -1,
		DialerRetries: 1,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestFailClosed checks that an unreachable server yields ErrUnavailable from every
// operation, never a nonce or clock answer.
func TestFailClosed(t *testing.T) {
	ctx := context.Background()
	s := New(deadClient(t), "p")
	if err := s.PutNonce(ctx, []byte("n"), []byte("v"), time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("PutNonce = %v, want ErrUnavailable", err)
	}
	if v, err := s.ConsumeNonce(ctx, []byte("n")); !errors.Is(err, store.ErrUnavailable) || v != nil {
		t.Errorf("ConsumeNonce = %q, %v; want nil, ErrUnavailable", v, err)
	}
	err := s.AdvanceClock(ctx, "ak", store.ClockInfo{}, time.Minute)
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrClockRollback) {
		t.Errorf("AdvanceClock = %v, want ErrUnavailable", err)
	}
	if _, err := CheckEvictionPolicy(ctx, deadClient(t)); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("CheckEvictionPolicy = %v, want ErrUnavailable", err)
	}
}

// TestFailClosedAfterStop checks a server that goes away between put and consume.
func TestFailClosedAfterStop(t *testing.T) {
	ctx := context.Background()
	srv := startRedisServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.addr, DialTimeout: time.Second, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	s := New(c, "p")
	if err := s.PutNonce(ctx, []byte("n"), []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.stop()
	if v, err := s.ConsumeNonce(ctx, []byte("n")); !errors.Is(err, store.ErrUnavailable) || v != nil {
		t.Errorf("ConsumeNonce after stop = %q, %v; want nil, ErrUnavailable", v, err)
	}
	if err := s.AdvanceClock(ctx, "ak", store.ClockInfo{}, time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("AdvanceClock after stop = %v, want ErrUnavailable", err)
	}
}

func TestCanceledContextIsUnavailable(t *testing.T) {
	c := requireRedis(t)
	s := New(c, testPrefix(t, c))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.PutNonce(ctx, []byte("n"), nil, time.Minute)
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("PutNonce = %v, want ErrUnavailable and context.Canceled", err)
	}
	if _, err := s.ConsumeNonce(ctx, []byte("n")); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ConsumeNonce = %v, want ErrUnavailable", err)
	}
	if err := s.AdvanceClock(ctx, "ak", store.ClockInfo{}, time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("AdvanceClock = %v, want ErrUnavailable", err)
	}
}

func TestCheckEvictionPolicyShared(t *testing.T) {
	ctx := context.Background()
	c := requireRedis(t)
	want, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		t.Fatalf("CONFIG GET: %v", err)
	}
	policy, err := CheckEvictionPolicy(ctx, c)
	if policy != want["maxmemory-policy"] {
		t.Errorf("policy = %q, want %q", policy, want["maxmemory-policy"])
	}
	if policy == "noeviction" {
		if err != nil {
			t.Errorf("CheckEvictionPolicy = %v, want nil for noeviction", err)
		}
	} else if !errors.Is(err, ErrEvictingPolicy) {
		t.Errorf("CheckEvictionPolicy = %v, want ErrEvictingPolicy for %q", err, policy)
	}
}

func TestCheckEvictionPolicyRefusesEvicting(t *testing.T) {
	ctx := context.Background()
	c := startRedis(t, "--maxmemory-policy", "allkeys-lru")
	policy, err := CheckEvictionPolicy(ctx, c)
	if policy != "allkeys-lru" || !errors.Is(err, ErrEvictingPolicy) {
		t.Fatalf("CheckEvictionPolicy = %q, %v; want allkeys-lru, ErrEvictingPolicy", policy, err)
	}
	if errors.Is(err, store.ErrUnavailable) {
		t.Errorf("error %v also wraps ErrUnavailable", err)
	}

	// Switching the same server to noeviction makes the check pass.
	if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if policy, err := CheckEvictionPolicy(ctx, c); policy != "noeviction" || err != nil {
		t.Fatalf("CheckEvictionPolicy = %q, %v; want noeviction, nil", policy, err)
	}
}

func TestCheckEvictionPolicyConfigNotPermitted(t *testing.T) {
	ctx := context.Background()
	srv := startRedisServer(t)
	admin := srv.client(t, "", "")
	if err := admin.Do(ctx, "ACL", "SETUSER", "limited", "on", ">secret", "~*", "+@all", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	limited := srv.client(t, "limited", "secret")
	policy, err := CheckEvictionPolicy(ctx, limited)
	if !errors.Is(err, ErrPolicyUnknown) || !redis.IsPermissionError(err) {
		t.Fatalf("CheckEvictionPolicy = %q, %v; want ErrPolicyUnknown wrapping NOPERM", policy, err)
	}
	if errors.Is(err, ErrEvictingPolicy) || errors.Is(err, store.ErrUnavailable) || policy != "" {
		t.Errorf("CheckEvictionPolicy = %q, %v; want only ErrPolicyUnknown", policy, err)
	}
	// The store itself still works for that user.
	s := New(limited, "p")
	if err := s.PutNonce(ctx, []byte("n"), nil, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// redisServer is a redis-server child process on a free loopback port, owned by one test.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	once sync.Once
}

// startRedisServer starts a private redis-server (no persistence) with extra arguments and
// stops it when t ends. It never touches the shared server. Without the redis-server binary
// the test fails, unless PASSPORT_SKIP_REDIS=1.
func startRedisServer(t *testing.T, args ...string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("PASSPORT_SKIP_REDIS") == "1" {
			t.Skipf("PASSPORT_SKIP_REDIS=1: %v", err)
		}
		t.Fatalf("redis-server not found (set PASSPORT_SKIP_REDIS=1 to skip): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()

	argv := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(),
	}, args...)
	cmd := exec.Command(bin, argv...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	srv := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd}
	t.Cleanup(srv.stop)

	probe := redis.NewClient(&redis.Options{Addr: srv.addr, MaxRetries: -1, DialerRetries: 1})
	defer probe.Close()
	var lastErr error
	for i := 0; i < 200; i++ {
		if lastErr = probe.Ping(context.Background()).Err(); lastErr == nil {
			return srv
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("redis-server on %s did not answer: %v", srv.addr, lastErr)
	return nil
}

// stop kills the server process (only this one, by its pid) and reaps it.
func (s *redisServer) stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	})
}

// restart stops the server and starts a new one with the same arguments on the same port
// (its data is gone: the tests run without persistence).
func (s *redisServer) restart(t *testing.T) {
	t.Helper()
	s.stop()
	cmd := exec.Command(s.cmd.Path, s.cmd.Args[1:]...)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("restart redis-server: %v", err)
	}
	s.cmd, s.once = cmd, sync.Once{}
	waitPing(t, s.addr)
}

// waitPing waits (at most 5 s) until the server at addr answers PING.
func waitPing(t *testing.T, addr string) {
	t.Helper()
	probe := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	defer probe.Close()
	var lastErr error
	for i := 0; i < 200; i++ {
		if lastErr = probe.Ping(context.Background()).Err(); lastErr == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("redis-server on %s did not answer: %v", addr, lastErr)
}

// client returns a client of s, closed when t ends.
func (s *redisServer) client(t *testing.T, user, password string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr, Username: user, Password: password})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startRedis starts a private server and returns a client of it.
func startRedis(t *testing.T, args ...string) *redis.Client {
	t.Helper()
	return startRedisServer(t, args...).client(t, "", "")
}

func BenchmarkNonceRoundTrip(b *testing.B) {
	ctx := context.Background()
	c := requireRedis(b)
	s := New(c, testPrefix(b, c))
	nonce := make([]byte, 32)
	value := []byte("binding-data")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(nonce, uint64(i))
		if err := s.PutNonce(ctx, nonce, value, time.Minute); err != nil {
			b.Fatal(err)
		}
		if _, err := s.ConsumeNonce(ctx, nonce); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAKStore(t *testing.T) {
	c := requireRedis(t)
	storetest.RunAKStore(t, func(t *testing.T) store.AKStore { return New(c, testPrefix(t, c)) })
}
