package refvalues

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds the File backend's file (16 MiB: a million SHA-256 digests would not fit,
// a fleet's worth of kernels and boot loaders does).
const MaxFileSize = 16 << 20

// fileDoc is the YAML form of a File store:
//
//	sets:
//	  kernels:
//	    - 5f7c...   # lowercase hex digests
//	revoked:
//	  - digest: 5f7c...
//	    reason: CVE-2026-0001
//	    revoked_at: 2026-11-29T10:00:00Z
type fileDoc struct {
	Sets    map[string][]string `yaml:"sets"`
	Revoked []Revocation        `yaml:"revoked,omitempty"`
}

// File is a Store kept in one YAML file (format above), for a single issuer or for operators
// who manage reference values with their configuration tooling. Every change rewrites the file
// atomically (write to a temporary file in the same directory, fsync, rename), so a reader
// never sees half a file; Version is derived from the file's SHA-256, so edits made by hand are
// noticed by a polling policy engine. A missing file is an empty store and is created by the
// first change. Several processes writing one file may lose each other's changes: use the
// Redis backend for replicas.
type File struct {
	path string
	mu   sync.Mutex
}

var _ Store = (*File)(nil)

// NewFile returns a File store kept at path.
func NewFile(path string) *File { return &File{path: path} }

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// read loads the file into content; a missing file is empty.
func (f *File) read() (*content, []byte, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return newContent(), nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: refvalues: %w", ErrUnavailable, err)
	}
	if len(b) > MaxFileSize {
		return nil, nil, fmt.Errorf("%w: refvalues: %s is %d bytes, at most %d", ErrUnavailable, f.path, len(b), MaxFileSize)
	}
	c, err := parseFileDoc(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: refvalues: %s: %w", ErrUnavailable, f.path, err)
	}
	return c, b, nil
}

func parseFileDoc(b []byte) (*content, error) {
	var doc fileDoc
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	c := newContent()
	for name, vals := range doc.Sets {
		if _, err := c.add(name, vals); err != nil {
			return nil, err
		}
	}
	for _, r := range doc.Revoked {
		if _, _, err := c.revoke(r); err != nil {
			return nil, fmt.Errorf("revoked %q: %w", r.Digest, err)
		}
	}
	return c, nil
}

func (f *File) write(c *content) error {
	s := c.snapshot()
	doc := fileDoc{Sets: s.Sets, Revoked: s.RevokedList()}
	b, err := yaml.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("%w: refvalues: encode: %w", ErrUnavailable, err)
	}
	b = append([]byte("# passport reference values (refvalues.File); rewritten by the issuer on changes\n"), b...)
	tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".*")
	if err != nil {
		return fmt.Errorf("%w: refvalues: %w", ErrUnavailable, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: refvalues: %w", ErrUnavailable, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: refvalues: %w", ErrUnavailable, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%w: refvalues: %w", ErrUnavailable, err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("%w: refvalues: %w", ErrUnavailable, err)
	}
	return nil
}

// update reads the file, applies fn and writes the file back when fn reports a change.
func (f *File) update(fn func(*content) (bool, error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, _, err := f.read()
	if err != nil {
		return err
	}
	changed, err := fn(c)
	if err != nil || !changed {
		return err
	}
	return f.write(c)
}

// Snapshot implements Store.
func (f *File) Snapshot(context.Context) (*Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, _, err := f.read()
	if err != nil {
		return nil, err
	}
	return c.snapshot(), nil
}

// Version implements Store: the first 8 bytes of the file's SHA-256 (0 when it is missing).
func (f *File) Version(context.Context) (uint64, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%w: refvalues: %w", ErrUnavailable, err)
	}
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8]) | 1, nil
}

// Add implements Store.
func (f *File) Add(_ context.Context, set string, digests ...string) error {
	return f.update(func(c *content) (bool, error) { return c.add(set, digests) })
}

// Revoke implements Store.
func (f *File) Revoke(_ context.Context, r Revocation) (Revocation, bool, error) {
	var out Revocation
	var created bool
	err := f.update(func(c *content) (bool, error) {
		var err error
		out, created, err = c.revoke(r)
		return created, err
	})
	if err != nil {
		return Revocation{}, false, err
	}
	return out, created, nil
}

// Reinstate implements Store.
func (f *File) Reinstate(_ context.Context, digest string) (bool, error) {
	var ok bool
	err := f.update(func(c *content) (bool, error) {
		var err error
		ok, err = c.reinstate(digest)
		return ok, err
	})
	return ok, err
}

// ListRevoked implements Store.
func (f *File) ListRevoked(ctx context.Context) ([]Revocation, error) {
	s, err := f.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return s.RevokedList(), nil
}
