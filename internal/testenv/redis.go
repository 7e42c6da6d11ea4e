package testenv

import (
	"testing"

	"github.com/passport-attest/passport/internal/testredis"
	redisstore "github.com/passport-attest/passport/store/redis"
)

// Redis returns a Redis-backed store on PASSPORT_REDIS_URL (default redis://127.0.0.1:6379/0)
// under a fresh random key prefix, whose keys are deleted when the test ends. The test fails
// (never skips) when Redis does not answer (testredis.Redis).
func Redis(t testing.TB) *redisstore.Store {
	t.Helper()
	client, prefix := testredis.Redis(t)
	return redisstore.New(client, prefix)
}
