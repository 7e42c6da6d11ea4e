// Package testredis gives tests a real Redis: the shared server with a private key prefix, or a
// private redis-server process they can stop and start again. For tests only.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis returns a client of the shared test Redis (PASSPORT_REDIS_URL, default
// redis://127.0.0.1:6379/0) and a fresh random key prefix; the prefix's keys are deleted and
// the client closed when t ends. The test fails when Redis does not answer.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	url := os.Getenv("PASSPORT_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	if err := c.Ping(context.Background()).Err(); err != nil {
		c.Close()
		t.Fatalf("Redis at %s does not answer (start one, or set PASSPORT_REDIS_URL): %v", url, err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "passport-test-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			_ = c.Unlink(ctx, keys...).Err()
		}
		c.Close()
	})
	return c, prefix
}

// RedisProcess is a private redis-server child process on a loopback port, without
// persistence, that a test may stop and start again (on the same port) to simulate an outage.
// It is killed, by its pid, when the test ends.
type RedisProcess struct {
	// Addr is HOST:PORT and URL redis://HOST:PORT/0.
	Addr, URL string
	args      []string
	mu        sync.Mutex
	cmd       *exec.Cmd
}

// StartRedis starts a private redis-server with extra arguments and waits until it answers.
func StartRedis(t testing.TB, args ...string) *RedisProcess {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	p := &RedisProcess{
		Addr: "127.0.0.1:" + strconv.Itoa(port),
		args: append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", t.TempDir()}, args...),
	}
	p.URL = "redis://" + p.Addr + "/0"
	t.Cleanup(p.Stop)
	p.Start(t)
	return p
}

// Start starts the server (again) and waits, at most 5 s, until it answers PING.
func (p *RedisProcess) Start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	cmd := exec.Command("redis-server", p.args...)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		t.Fatalf("start redis-server: %v", err)
	}
	p.cmd = cmd
	p.mu.Unlock()
	probe := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1, DialerRetries: 1})
	defer probe.Close()
	var lastErr error
	for i := 0; i < 200; i++ {
		if lastErr = probe.Ping(context.Background()).Err(); lastErr == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("redis-server on %s did not answer: %v", p.Addr, lastErr)
}

// Stop kills the server (SIGKILL, by pid) and reaps it; stopping a stopped server does nothing.
func (p *RedisProcess) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}
