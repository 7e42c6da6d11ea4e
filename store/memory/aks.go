package memory

import (
	"context"
	"fmt"
	"maps"

	"github.com/passport-attest/passport/store"
)

var _ store.AKStore = (*Store)(nil)

// PutAK implements store.AKStore, keeping a copy of value. It fails with an error wrapping
// store.ErrUnavailable when ctx is done, and with a plain error for an empty or oversized value.
func (s *Store) PutAK(ctx context.Context, id string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: put AK: %w: %w", store.ErrUnavailable, err)
	}
	if len(value) == 0 || len(value) > store.MaxAKRecord {
		return fmt.Errorf("memory: put AK: record is %d bytes, want 1..%d", len(value), store.MaxAKRecord)
	}
	s.akMu.Lock()
	defer s.akMu.Unlock()
	if s.aks == nil {
		s.aks = map[string][]byte{}
	}
	s.aks[id] = append([]byte(nil), value...)
	return nil
}

// GetAK implements store.AKStore; it returns a copy.
func (s *Store) GetAK(ctx context.Context, id string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: get AK: %w: %w", store.ErrUnavailable, err)
	}
	s.akMu.Lock()
	defer s.akMu.Unlock()
	v, ok := s.aks[id]
	if !ok {
		return nil, fmt.Errorf("memory: get AK: %w", store.ErrAKUnknown)
	}
	return append([]byte(nil), v...), nil
}

// DeleteAK implements store.AKStore.
func (s *Store) DeleteAK(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: delete AK: %w: %w", store.ErrUnavailable, err)
	}
	s.akMu.Lock()
	defer s.akMu.Unlock()
	if _, ok := s.aks[id]; !ok {
		return fmt.Errorf("memory: delete AK: %w", store.ErrAKUnknown)
	}
	delete(s.aks, id)
	return nil
}

// ListAKs implements store.AKStore; the map and values are copies.
func (s *Store) ListAKs(ctx context.Context) (map[string][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: list AKs: %w: %w", store.ErrUnavailable, err)
	}
	s.akMu.Lock()
	defer s.akMu.Unlock()
	out := maps.Clone(s.aks)
	for k, v := range out {
		out[k] = append([]byte(nil), v...)
	}
	if out == nil {
		out = map[string][]byte{}
	}
	return out, nil
}

// ReplaceEnrolled implements store.AKStore under the store's AK mutex: the read of index, the
// writes of id and index and the removal of the previous record are one step for every other
// AK operation of s.
func (s *Store) ReplaceEnrolled(ctx context.Context, index, id string, value []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("memory: replace enrolled AK: %w: %w", store.ErrUnavailable, err)
	}
	if err := store.CheckReplaceEnrolled(index, id, value); err != nil {
		return "", fmt.Errorf("memory: %w", err)
	}
	s.akMu.Lock()
	defer s.akMu.Unlock()
	if s.aks == nil {
		s.aks = map[string][]byte{}
	}
	prev := string(s.aks[index])
	s.aks[id] = append([]byte(nil), value...)
	s.aks[index] = []byte(id)
	if prev != "" && prev != id && prev != index {
		delete(s.aks, prev)
	}
	return prev, nil
}
