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
