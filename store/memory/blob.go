package memory

import (
	"context"
	"fmt"

	"github.com/passport-attest/passport/store"
)

// blob is one document of the BlobStore part of a Store.
type blob struct {
	data    []byte
	version uint64
}

var _ store.BlobStore = (*Store)(nil)

// GetBlob implements store.BlobStore. It returns a copy of the document.
func (s *Store) GetBlob(ctx context.Context, name string) ([]byte, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("memory: get blob: %w: %w", store.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[name]
	if !ok {
		return nil, 0, nil
	}
	return append([]byte{}, b.data...), b.version, nil
}

// PutBlob implements store.BlobStore. It keeps a copy of data.
func (s *Store) PutBlob(ctx context.Context, name string, data []byte, version uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: put blob: %w: %w", store.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.blobs[name].version; cur != version {
		return 0, fmt.Errorf("memory: put blob %q: have version %d, writer expected %d: %w", name, cur, version, store.ErrConflict)
	}
	s.blobs[name] = blob{data: append([]byte{}, data...), version: version + 1}
	return version + 1, nil
}
