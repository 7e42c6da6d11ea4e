package main

import (
	"context"
	"errors"
	"github.com/passport-attest/passport/config"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/internal/testredis"
	redisstore "github.com/passport-attest/passport/store/redis"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func baseFlags() serveFlags {
	f := serveFlags{Serve: config.DefaultServe()}
	f.Addr, f.TrustAnyAK = "127.0.0.1:0", true
	f.scale = scaleFlags{statusShards: 1, statusTTL: time.Minute, statusListValidity: time.Hour, rotationPeriod: 24 * time.Hour}
	return f
}

// TestServeRefusesEvictingRedis: serve reads maxmemory-policy at start and refuses a Redis
// that may evict keys, unless --allow-evicting-redis.
func TestServeRefusesEvictingRedis(t *testing.T) {
	srv := testredis.StartRedis(t, "--maxmemory-policy", "allkeys-lru")
	f := baseFlags()
	f.Redis = srv.URL
	err := runServe(context.Background(), f)
	if !errors.Is(err, redisstore.ErrEvictingPolicy) || !strings.Contains(err.Error(), "--allow-evicting-redis") {
		t.Fatalf("serve on an evicting Redis = %v, want a refusal naming --allow-evicting-redis", err)
	}
	client, err := openRedis(context.Background(), srv.URL, time.Second, true, quiet)
	if err != nil {
		t.Fatalf("with --allow-evicting-redis: %v", err)
	}
	client.Close()

	ok := testredis.StartRedis(t)
	client, err = openRedis(context.Background(), ok.URL, time.Second, false, quiet)
	if err != nil {
		t.Fatalf("noeviction Redis refused: %v", err)
	}
	client.Close()
}

// TestServeServesWithRedis starts serve on a noeviction Redis and stops it with its context.
func TestServeServesWithRedis(t *testing.T) {
	srv := testredis.StartRedis(t, "--appendonly", "yes")
	f := baseFlags()
	f.Redis = srv.URL
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := runServe(ctx, f); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestBuildKeys checks the key flags: forbidden combinations, and two replicas sharing a key
// directory sign with one key.
func TestBuildKeys(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	kek := filepath.Join(dir, "kek")
	if err := os.WriteFile(kek, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "signing.pem")
	for name, mod := range map[string]func(*serveFlags){
		"signing key and kek":      func(f *serveFlags) { f.SigningKey = keyFile; f.scale.kek = kek },
		"signing key and rotation": func(f *serveFlags) { f.SigningKey = keyFile; f.scale.rotationPeriodSet = true },
		"key dir without kek":      func(f *serveFlags) { f.scale.keyDir = dir },
		"kek without storage":      func(f *serveFlags) { f.scale.kek = kek },
	} {
		f := baseFlags()
		mod(&f)
		if _, _, err := buildKeys(ctx, f, nil, quiet); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	f := baseFlags()
	f.scale.kek, f.scale.keyDir = kek, filepath.Join(dir, "keys")
	r1, k1, err := buildKeys(ctx, f, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	r2, _, err := buildKeys(ctx, f, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := r1.Active()
	a2, _ := r2.Active()
	if a1.KeyID == "" || a1.KeyID != a2.KeyID || len(k1.Keys()) != 2 {
		t.Fatalf("replicas on one key directory sign with %q and %q", a1.KeyID, a2.KeyID)
	}
}
