// Package dirstore is a store.BlobStore kept in a directory: one file per document, replaced
// atomically (write to a temporary file, fsync, rename) under an advisory lock (flock), so that
// several issuer processes sharing the directory (one host, or a shared file system whose
// locks work) update the signing-key set without losing each other's writes. It passes the
// store conformance suite (storetest.RunBlobStore).
//
// Files, where <name> is the document name ([A-Za-z0-9._-], at most 64 bytes):
//
//	<dir>/<name>.blob   "passport-blob <version>\n" followed by the data; mode 0600
//	<dir>/<name>.lock   empty lock file
package dirstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/passport-attest/passport/store"
)

// Store is a directory-backed store.BlobStore. It is safe for concurrent use by goroutines and
// by processes sharing the directory.
type Store struct {
	dir string
}

var _ store.BlobStore = (*Store)(nil)

// New returns a Store over dir, creating it (mode 0700) if needed.
func New(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dirstore: %w", err)
	}
	return &Store{dir: dir}, nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

const header = "passport-blob "

func (s *Store) paths(name string) (blob, lock string, err error) {
	if !validName.MatchString(name) || name[0] == '.' {
		return "", "", fmt.Errorf("dirstore: invalid document name %q", name)
	}
	return filepath.Join(s.dir, name+".blob"), filepath.Join(s.dir, name+".lock"), nil
}

// GetBlob implements store.BlobStore. Reading needs no lock: writers replace the file
// atomically. I/O errors and malformed files wrap store.ErrUnavailable.
func (s *Store) GetBlob(ctx context.Context, name string) ([]byte, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("dirstore: get blob: %w: %w", store.ErrUnavailable, err)
	}
	path, _, err := s.paths(name)
	if err != nil {
		return nil, 0, err
	}
	return read(path)
}

func read(path string) ([]byte, uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("dirstore: %w: %w", store.ErrUnavailable, err)
	}
	line, data, ok := bytes.Cut(b, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte(header)) {
		return nil, 0, fmt.Errorf("dirstore: %s: %w: not a passport blob", path, store.ErrUnavailable)
	}
	v, err := strconv.ParseUint(string(line[len(header):]), 10, 64)
	if err != nil || v == 0 {
		return nil, 0, fmt.Errorf("dirstore: %s: %w: bad version", path, store.ErrUnavailable)
	}
	return data, v, nil
}

// PutBlob implements store.BlobStore: under the document's lock it compares the version on
// disk with version and, when equal, replaces the file atomically.
func (s *Store) PutBlob(ctx context.Context, name string, data []byte, version uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("dirstore: put blob: %w: %w", store.ErrUnavailable, err)
	}
	path, lockPath, err := s.paths(name)
	if err != nil {
		return 0, err
	}
	unlock, err := lock(lockPath)
	if err != nil {
		return 0, fmt.Errorf("dirstore: lock %s: %w: %w", lockPath, store.ErrUnavailable, err)
	}
	defer unlock()
	_, cur, err := read(path)
	if err != nil {
		return 0, err
	}
	if cur != version {
		return 0, fmt.Errorf("dirstore: put blob %q: have version %d, writer expected %d: %w", name, cur, version, store.ErrConflict)
	}
	tmp, err := os.CreateTemp(s.dir, "."+name+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("dirstore: %w: %w", store.ErrUnavailable, err)
	}
	defer os.Remove(tmp.Name())
	body := append([]byte(header+strconv.FormatUint(version+1, 10)+"\n"), data...)
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("dirstore: %w: %w", store.ErrUnavailable, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("dirstore: %w: %w", store.ErrUnavailable, err)
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("dirstore: %w: %w", store.ErrUnavailable, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, fmt.Errorf("dirstore: %w: %w", store.ErrUnavailable, err)
	}
	return version + 1, nil
}
