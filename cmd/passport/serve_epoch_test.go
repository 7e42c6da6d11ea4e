package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/internal/redisproc"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/internal/testredis"
	redisstore "github.com/passport-attest/passport/store/redis"
)

// TestServeRefusesVolatileRedis: serve reads appendonly, appendfsync and save at start.
// --require-persistent-redis accepts an append-only file only: a Redis without persistence and
// one with RDB save points only (a crash rolls it back to its last snapshot) are refused. Without
// the flag both are warned about, the snapshot-only one as losing data. An AOF without
// appendfsync always is accepted with a warning (a host crash loses the last second).
func TestServeRefusesVolatileRedis(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		args []string
		want error // with --require-persistent-redis
		warn string
	}{
		{nil, redisstore.ErrVolatile, "Redis has no persistence"},
		{[]string{"--save", "60 1"}, redisstore.ErrSnapshotOnly, "persists only RDB snapshots (appendonly no), which loses data"},
		{[]string{"--appendonly", "yes", "--appendfsync", "everysec"}, nil, "appendfsync is not always"},
		{[]string{"--appendonly", "yes", "--appendfsync", "always"}, nil, ""},
	} {
		srv := testredis.StartRedis(t, c.args...)
		f := baseFlags()
		f.Redis = srv.URL
		f.scale.requirePersistent = true
		if c.want != nil {
			// A refusal returns at once; the deadline only stops a serve that wrongly started.
			sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err := runServe(sctx, f)
			cancel()
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "--require-persistent-redis") {
				t.Errorf("serve --require-persistent-redis on Redis %v = %v, want %v naming the flag", c.args, err, c.want)
			}
		}
		client, err := openRedis(ctx, srv.URL, time.Second, false, quiet)
		if err != nil {
			t.Fatal(err)
		}
		for _, require := range []bool{false, true} {
			var logs bytes.Buffer
			err := checkPersistence(ctx, client, require, slog.New(slog.NewTextHandler(&logs, nil)))
			switch {
			case (c.want == nil || !require) && err != nil:
				t.Errorf("Redis %v, require %v: refused: %v", c.args, require, err)
			case c.want != nil && require && !errors.Is(err, c.want):
				t.Errorf("Redis %v, require %v: %v, want %v", c.args, require, err, c.want)
			case err == nil && c.warn == "" && logs.Len() > 0:
				t.Errorf("Redis %v, require %v: unexpected warning %s", c.args, require, logs.String())
			case err == nil && c.warn != "" && !strings.Contains(logs.String(), c.warn):
				t.Errorf("Redis %v, require %v: no warning %q in %q", c.args, require, c.warn, logs.String())
			}
		}
		client.Close()
	}
}

// TestServeRefusesReplayAfterSnapshotRollback reproduces a crash of a Redis that persists only
// snapshots: a challenge is answered and snapshotted, the attestation for it succeeds, then
// Redis is killed and restarted from the snapshot, which revives the spent nonce and rewinds the
// status counter (the epoch markers, older than the snapshot, are intact). The same evidence
// submitted again must not yield a second token: the running issuer sees its status counter
// go back, refuses (503), fails /readyz and raises the data-loss alarm.
func TestServeRefusesReplayAfterSnapshotRollback(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	rs := &redisproc.Server{}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	srv := startServe(t, "--trust-any-ak", "--redis", rs.URL(), "--redis-timeout", "300ms")
	ctx := context.Background()
	c := &attester.Client{IssuerURL: srv.url}
	ch, err := c.Challenge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, err := a.Evidence(ch.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	req.Audience = "rollback-test"
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rc.Close()
	if err := rc.Save(ctx).Err(); err != nil { // the snapshot holds the outstanding nonce
		t.Fatal(err)
	}
	if status, b, _ := post(t, srv.url+api.PathAttest, body); status != http.StatusOK {
		t.Fatalf("first attestation: %d %s", status, b)
	}
	rs.Stop() // SIGKILL
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	status, b, _ := post(t, srv.url+api.PathAttest, body)
	if status == http.StatusOK {
		t.Fatal("the same evidence yielded a second token after Redis rolled back to its snapshot")
	}
	if status != http.StatusServiceUnavailable {
		t.Fatalf("replay after the rollback: %d %s, want 503", status, b)
	}
	if status, b, _ := get(t, srv.url+"/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(b, `"store":"failed"`) {
		t.Fatalf("readyz after the rollback: %d %s, want 503 naming the store", status, b)
	}
	deadline := time.Now().Add(3 * epochCheckInterval)
	for !strings.Contains(srv.logs.String(), "REDIS LOST ITS DATA") {
		if time.Now().After(deadline) {
			t.Fatalf("no data-loss alarm in the log:\n%s", srv.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(srv.logs.String(), "went back") {
		t.Errorf("the alarm does not say the status counter went back:\n%s", grep(srv.logs.String(), "LOST"))
	}
}

// TestServeWarnsWhenCreatingEpoch: the replica that creates the epoch markers warns that this
// is a first start or a Redis that lost its data while no replica ran; a replica started on
// the same Redis later does not.
func TestServeWarnsWhenCreatingEpoch(t *testing.T) {
	rs := &redisproc.Server{}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	const warning = "created Redis epoch markers: this is either the FIRST START"
	first := startServe(t, "--trust-any-ak", "--redis", rs.URL())
	if !strings.Contains(first.logs.String(), warning) || !strings.Contains(first.logs.String(), "lost its data while no issuer replica was running") {
		t.Errorf("the first replica on an empty Redis did not warn:\n%s", first.logs)
	}
	second := startServe(t, "--trust-any-ak", "--redis", rs.URL())
	if strings.Contains(second.logs.String(), warning) {
		t.Errorf("a second replica warned although the markers existed:\n%s", grep(second.logs.String(), "epoch"))
	}
}

// TestReadyzWhenRedisRefusesWrites: /readyz fails while Redis answers reads but refuses writes
// (here a READONLY replica; maxmemory with noeviction is covered in store/redis), and recovers
// when it accepts them again (not a data loss).
func TestReadyzWhenRedisRefusesWrites(t *testing.T) {
	rs := &redisproc.Server{}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	srv := startServe(t, "--trust-any-ak", "--redis", rs.URL(), "--redis-timeout", "300ms")
	if status, b, _ := get(t, srv.url+"/readyz"); status != http.StatusOK {
		t.Fatalf("readyz before: %d %s", status, b)
	}
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rc.Close()
	ctx := context.Background()
	if err := rc.ReplicaOf(ctx, "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if status, b, _ := get(t, srv.url+"/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(b, `"store":"failed"`) {
		t.Fatalf("readyz on a read-only Redis: %d %s, want 503 naming the store", status, b)
	}
	if err := rc.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if status, b, _ := get(t, srv.url+"/readyz"); status != http.StatusOK {
		t.Fatalf("readyz once Redis accepts writes again: %d %s", status, b)
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
