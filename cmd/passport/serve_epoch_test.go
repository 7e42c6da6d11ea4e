package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/internal/redisproc"
	"github.com/passport-attest/passport/internal/testredis"
	redisstore "github.com/passport-attest/passport/store/redis"
)

// TestServeRefusesVolatileRedis: serve reads appendonly and save at start and refuses a Redis
// without persistence with --require-persistent-redis (and only warns without it); a Redis with
// AOF or a save point passes.
func TestServeRefusesVolatileRedis(t *testing.T) {
	srv := testredis.StartRedis(t)
	f := baseFlags()
	f.Redis = srv.URL
	f.scale.requirePersistent = true
	err := runServe(context.Background(), f)
	if !errors.Is(err, redisstore.ErrVolatile) || !strings.Contains(err.Error(), "--require-persistent-redis") {
		t.Fatalf("serve on a Redis without persistence = %v, want a refusal naming --require-persistent-redis", err)
	}
	client, err := openRedis(context.Background(), srv.URL, time.Second, false, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := checkPersistence(context.Background(), client, false, quiet); err != nil {
		t.Errorf("without --require-persistent-redis: %v", err)
	}
	for _, args := range [][]string{{"--appendonly", "yes"}, {"--save", "60 1"}} {
		ok := testredis.StartRedis(t, args...)
		c, err := openRedis(context.Background(), ok.URL, time.Second, false, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkPersistence(context.Background(), c, false, quiet); err != nil {
			t.Errorf("Redis %v refused: %v", args, err)
		}
		c.Close()
	}
}

// TestServeDetectsRedisDataLoss: the issuer's Redis (no persistence, allowed) is killed and
// restarts empty. The issuer must not carry on as if nothing happened: /readyz fails naming
// the store, challenges answer 503, and an error line tells the operator revocations may have
// been lost. It stays so after Redis answers again (only a restart acknowledges).
func TestServeDetectsRedisDataLoss(t *testing.T) {
	rs := &redisproc.Server{}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	srv := startServe(t, "--trust-any-ak", "--redis", rs.URL(), "--redis-timeout", "300ms")
	if status, body, _ := get(t, srv.url+"/readyz"); status != http.StatusOK {
		t.Fatalf("readyz before: %d %s", status, body)
	}
	if !strings.Contains(srv.logs.String(), "Redis has no persistence") {
		t.Errorf("no warning about a Redis without persistence in the log:\n%s", srv.logs)
	}
	rs.Stop()
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // not a transient failure: it stays refused
		status, body, _ := get(t, srv.url+"/readyz")
		if status != http.StatusServiceUnavailable || !strings.Contains(body, `"store":"failed"`) {
			t.Fatalf("readyz after Redis restarted empty: %d %s, want 503 naming the store", status, body)
		}
		status, body, h := post(t, srv.url+api.PathChallenge, nil)
		if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Fatalf("challenge after Redis restarted empty: %d %s Retry-After %q, want 503 with Retry-After", status, body, h.Get("Retry-After"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	deadline := time.Now().Add(3 * epochCheckInterval)
	for !strings.Contains(srv.logs.String(), "REDIS LOST ITS DATA") {
		if time.Now().After(deadline) {
			t.Fatalf("no data-loss alarm in the log:\n%s", srv.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
