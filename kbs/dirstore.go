package kbs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"github.com/passport-attest/passport/api"
)

// DirStore keeps each secret in a file DIR/repository/type/tag (mode 0600, directories 0700).
// Every access goes through an os.Root opened on DIR, so no name, link or race can reach a file
// outside DIR. Files written by hand are served as they are; a file larger than MaxSecretSize
// or that is not a regular file counts as absent (ErrTooLarge, ErrNotFound).
type DirStore struct {
	root *os.Root
}

// NewDirStore opens dir, which must exist and be a directory. Close releases it.
func NewDirStore(dir string) (*DirStore, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("kbs: secrets directory: %w", err)
	}
	return &DirStore{root: r}, nil
}

// Close releases the directory handle.
func (s *DirStore) Close() error { return s.root.Close() }

// Get implements Store.
func (s *DirStore) Get(_ context.Context, id api.ResourceID) ([]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	// Stat before opening: opening a FIFO or a device could block or have side effects.
	switch fi, err := s.root.Stat(id.String()); {
	case errors.Is(err, fs.ErrNotExist):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case !fi.Mode().IsRegular():
		return nil, ErrNotFound
	}
	f, err := s.root.Open(id.String())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, ErrNotFound
	}
	if fi.Size() > MaxSecretSize {
		return nil, fmt.Errorf("%w: %s holds %d bytes", ErrTooLarge, id, fi.Size())
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if len(b) > MaxSecretSize {
		return nil, fmt.Errorf("%w: %s grew past %d bytes", ErrTooLarge, id, MaxSecretSize)
	}
	return b, nil
}

// Put implements Store: it writes a temporary file in the same directory and renames it over
// the old one, so that readers see the old or the new secret.
func (s *DirStore) Put(_ context.Context, id api.ResourceID, secret []byte) error {
	if err := checkPut(id, secret); err != nil {
		return err
	}
	dir := path.Join(id.Repository, id.Type)
	if err := s.root.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	rnd := make([]byte, 8)
	if _, err := rand.Read(rnd); err != nil {
		return err
	}
	// The leading dot keeps the temporary name out of the ResourceID namespace.
	tmp := path.Join(dir, ".tmp-"+hex.EncodeToString(rnd))
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	_, werr := f.Write(secret)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = s.root.Rename(tmp, id.String())
	}
	if werr != nil {
		_ = s.root.Remove(tmp)
		return fmt.Errorf("%w: %w", ErrUnavailable, werr)
	}
	return nil
}

// Delete implements Store.
func (s *DirStore) Delete(_ context.Context, id api.ResourceID) error {
	if err := id.Validate(); err != nil {
		return err
	}
	fi, err := s.root.Lstat(id.String())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case fi.IsDir():
		return ErrNotFound
	}
	if err := s.root.Remove(id.String()); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}
