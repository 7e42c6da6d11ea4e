package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/store"
)

var _ store.AKStore = (*Store)(nil)

// aksKey is the one hash holding every AK record: <prefix>:aks, field = AK id, value = record.
// One key keeps ListAKs a single HGETALL and the whole set in one Cluster slot.
func (s *Store) aksKey() string { return s.prefix + "aks" }

// PutAK implements store.AKStore with HSET. Redis failures wrap store.ErrUnavailable.
func (s *Store) PutAK(ctx context.Context, id string, value []byte) error {
	if len(value) == 0 || len(value) > store.MaxAKRecord {
		return fmt.Errorf("redisstore: put AK: record is %d bytes, want 1..%d", len(value), store.MaxAKRecord)
	}
	if err := s.guard("put AK"); err != nil {
		return err
	}
	if err := s.client.HSet(ctx, s.aksKey(), id, value).Err(); err != nil {
		return unavailable("put AK", err)
	}
	return nil
}

// GetAK implements store.AKStore with HGET.
func (s *Store) GetAK(ctx context.Context, id string) ([]byte, error) {
	if err := s.guard("get AK"); err != nil {
		return nil, err
	}
	v, err := s.client.HGet(ctx, s.aksKey(), id).Bytes()
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("redisstore: get AK: %w", store.ErrAKUnknown)
	default:
		return nil, unavailable("get AK", err)
	}
}

// DeleteAK implements store.AKStore with HDEL.
func (s *Store) DeleteAK(ctx context.Context, id string) error {
	if err := s.guard("delete AK"); err != nil {
		return err
	}
	n, err := s.client.HDel(ctx, s.aksKey(), id).Result()
	if err != nil {
		return unavailable("delete AK", err)
	}
	if n == 0 {
		return fmt.Errorf("redisstore: delete AK: %w", store.ErrAKUnknown)
	}
	return nil
}

// ListAKs implements store.AKStore with HGETALL.
func (s *Store) ListAKs(ctx context.Context) (map[string][]byte, error) {
	if err := s.guard("list AKs"); err != nil {
		return nil, err
	}
	m, err := s.client.HGetAll(ctx, s.aksKey()).Result()
	if err != nil {
		return nil, unavailable("list AKs", err)
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out, nil
}

// replaceEnrolledScript is AKStore.ReplaceEnrolled in one step: Redis runs a script without
// interleaving any other command.
//
// KEYS: the AK hash, its epoch marker (same slot: the marker's hash tag is the hash's key).
// ARGV: index field, id field, record, epoch id ("" before ArmEpoch).
// Returns the previous id ("" for none), or {-3} when the epoch marker shows a data loss
// (nothing written).
var replaceEnrolledScript = redis.NewScript(`
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[4] then return {-3} end
local prev = redis.call('HGET', KEYS[1], ARGV[1]) or ''
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3], ARGV[1], ARGV[2])
if prev ~= '' and prev ~= ARGV[2] and prev ~= ARGV[1] then redis.call('HDEL', KEYS[1], prev) end
return prev
`)

// ReplaceEnrolled implements store.AKStore with one Lua script (EVALSHA, falling back to
// EVAL) on the AK hash. With ArmEpoch the script also compares the AK slot's epoch marker
// first: a missing or different marker writes nothing and latches ErrDataLoss. Redis failures
// wrap store.ErrUnavailable.
func (s *Store) ReplaceEnrolled(ctx context.Context, index, id string, value []byte) (string, error) {
	if err := store.CheckReplaceEnrolled(index, id, value); err != nil {
		return "", fmt.Errorf("redisstore: %w", err)
	}
	if err := s.guard("replace enrolled AK"); err != nil {
		return "", err
	}
	ek := s.aksEpochKey()
	res, err := replaceEnrolledScript.Run(ctx, s.client, []string{s.aksKey(), ek}, index, id, value, s.expected(ek)).Result()
	if err != nil {
		return "", unavailable("replace enrolled AK", err)
	}
	switch v := res.(type) {
	case string:
		return v, nil
	case []any:
		if len(v) == 1 && v[0] == int64(-3) {
			return "", s.markerLost("replace enrolled AK", ek)
		}
	}
	return "", unavailable("replace enrolled AK", fmt.Errorf("unexpected script result %v", res))
}
