package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	redisstore "github.com/passport-attest/passport/store/redis"
)

// Redis returns a Redis-backed store on PASSPORT_REDIS_URL (default redis://127.0.0.1:6379/0)
// under a fresh random key prefix, whose keys are deleted when the test ends. The test fails
// (never skips) when Redis does not answer.
func Redis(t testing.TB) *redisstore.Store {
	t.Helper()
	url := os.Getenv("PASSPORT_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opt)
	if err := client.Ping(context.Background()).Err(); err != nil {
		client.Close()
		t.Fatalf("Redis at %s does not answer (start one, or set PASSPORT_REDIS_URL): %v", url, err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "passport-test-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := client.Keys(ctx, prefix+":*").Result()
		if len(keys) > 0 {
			client.Del(ctx, keys...)
		}
		client.Close()
	})
	return redisstore.New(client, prefix)
}
