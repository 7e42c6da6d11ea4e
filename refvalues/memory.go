package refvalues

import (
	"context"
	"maps"
	"slices"
	"sync"
)

// content is the state shared by the Memory and File backends.
type content struct {
	sets    map[string]map[string]struct{}
	revoked map[string]Revocation
}

func newContent() *content {
	return &content{sets: map[string]map[string]struct{}{}, revoked: map[string]Revocation{}}
}

func (c *content) snapshot() *Snapshot {
	s := &Snapshot{Sets: make(map[string][]string, len(c.sets)), Revoked: maps.Clone(c.revoked)}
	for name, vals := range c.sets {
		s.Sets[name] = slices.Sorted(maps.Keys(vals))
	}
	return s
}

// add validates and applies Add; it reports whether anything changed.
func (c *content) add(set string, digests []string) (bool, error) {
	if err := CheckSetName(set); err != nil {
		return false, err
	}
	norm, err := NormalizeAll(digests)
	if err != nil {
		return false, err
	}
	vals, ok := c.sets[set]
	changed := !ok
	if !ok {
		vals = map[string]struct{}{}
		c.sets[set] = vals
	}
	for _, d := range norm {
		if _, ok := vals[d]; !ok {
			vals[d] = struct{}{}
			changed = true
		}
	}
	return changed, nil
}

func (c *content) revoke(r Revocation) (Revocation, bool, error) {
	r, err := CheckRevocation(r)
	if err != nil {
		return Revocation{}, false, err
	}
	if old, ok := c.revoked[r.Digest]; ok {
		return old, false, nil
	}
	c.revoked[r.Digest] = r
	return r, true, nil
}

func (c *content) reinstate(digest string) (bool, error) {
	d, err := NormalizeDigest(digest)
	if err != nil {
		return false, err
	}
	_, ok := c.revoked[d]
	delete(c.revoked, d)
	return ok, nil
}

// Memory is the in-process Store: content is lost when the process ends. The zero value is not
// usable; build one with NewMemory.
type Memory struct {
	mu      sync.RWMutex
	c       *content
	version uint64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store.
func NewMemory() *Memory { return &Memory{c: newContent()} }

// Snapshot implements Store.
func (m *Memory) Snapshot(context.Context) (*Snapshot, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.c.snapshot(), nil
}

// Version implements Store: a counter incremented by every change.
func (m *Memory) Version(context.Context) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.version, nil
}

// Add implements Store.
func (m *Memory) Add(_ context.Context, set string, digests ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed, err := m.c.add(set, digests)
	if changed {
		m.version++
	}
	return err
}

// Revoke implements Store.
func (m *Memory) Revoke(_ context.Context, r Revocation) (Revocation, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out, created, err := m.c.revoke(r)
	if created {
		m.version++
	}
	return out, created, err
}

// Reinstate implements Store.
func (m *Memory) Reinstate(_ context.Context, digest string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ok, err := m.c.reinstate(digest)
	if ok {
		m.version++
	}
	return ok, err
}

// ListRevoked implements Store.
func (m *Memory) ListRevoked(ctx context.Context) ([]Revocation, error) {
	s, err := m.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return s.RevokedList(), nil
}
