package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/store"
)

var _ store.BlobStore = (*Store)(nil)

// blobKey is <prefix>blob:{<name>}, a hash with fields v (version, decimal) and d (data).
func (s *Store) blobKey(name string) string { return s.prefix + "blob:{" + name + "}" }

// putBlobScript compares the stored version (0 when absent) with ARGV[1] and, when equal,
// stores ARGV[2] as the next version: an atomic compare-and-swap in one round trip (the Lua
// equivalent of WATCH, compare, MULTI/EXEC). Returns the new version, or -1 on a mismatch.
var putBlobScript = redis.NewScript(`
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return -1 end
redis.call('HSET', KEYS[1], 'v', string.format('%d', v + 1), 'd', ARGV[2])
return v + 1
`)

// GetBlob implements store.BlobStore with HMGET.
func (s *Store) GetBlob(ctx context.Context, name string) ([]byte, uint64, error) {
	if err := s.guard("get blob"); err != nil {
		return nil, 0, err
	}
	vals, err := s.client.HMGet(ctx, s.blobKey(name), "v", "d").Result()
	if err != nil {
		return nil, 0, unavailable("get blob", err)
	}
	if vals[0] == nil {
		return nil, 0, nil
	}
	vs, ok1 := vals[0].(string)
	ds, ok2 := vals[1].(string)
	v, err := strconv.ParseUint(vs, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return nil, 0, unavailable("get blob", errors.New("malformed blob record"))
	}
	return []byte(ds), v, nil
}

// PutBlob implements store.BlobStore with one Lua compare-and-swap.
func (s *Store) PutBlob(ctx context.Context, name string, data []byte, version uint64) (uint64, error) {
	if err := s.guard("put blob"); err != nil {
		return 0, err
	}
	if data == nil {
		data = []byte{}
	}
	v, err := putBlobScript.Run(ctx, s.client, []string{s.blobKey(name)}, strconv.FormatUint(version, 10), data).Int64()
	if err != nil {
		return 0, unavailable("put blob", err)
	}
	if v < 0 {
		return 0, fmt.Errorf("redisstore: put blob %q: version %d is not the stored one: %w", name, version, store.ErrConflict)
	}
	return uint64(v), nil
}
