package memory

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/passport-attest/passport/store"
)

// WithStatusListSize sets the number of entries per status list (default
// store.DefaultStatusListSize). n is rounded up to a multiple of 8; n <= 0 keeps the default.
func WithStatusListSize(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.status.size = (n + 7) &^ 7
		}
	}
}

// watchBuffer is how many revocation events a slow watcher may lag behind before it is sent a
// Resync instead of the events it missed.
const watchBuffer = 256

// statusState is the status-list part of a Store. Every field is guarded by Store.mu.
type statusState struct {
	size     int
	next     uint64                // entries allocated so far, over all lists
	lists    map[uint64][]byte     // lists with at least one bit set
	listExp  map[uint64]time.Time  // latest Expires of any entry allocated into each list
	ids      map[digest]idEntry    // by SHA-256(ID)
	subjects map[digest]refSet     // by SHA-256(Subject)
	labels   map[digest]refSet     // by SHA-256(Label)
	revoked  map[digest]bool       // labels RevokeStatus revoked, until ReinstateLabel
	watchers map[*watcher]struct{} // RevocationFeed consumers
}

type idEntry struct {
	ref     store.StatusRef
	expires time.Time
}

// refSet maps each live entry of a subject or label to its expiry.
type refSet map[store.StatusRef]time.Time

type watcher struct {
	ch       chan store.RevocationEvent
	overflow bool
}

func newStatusState() statusState {
	return statusState{
		size:     store.DefaultStatusListSize,
		lists:    make(map[uint64][]byte),
		listExp:  make(map[uint64]time.Time),
		ids:      make(map[digest]idEntry),
		subjects: make(map[digest]refSet),
		labels:   make(map[digest]refSet),
		revoked:  make(map[digest]bool),
		watchers: make(map[*watcher]struct{}),
	}
}

var (
	_ store.StatusStore    = (*Store)(nil)
	_ store.RevocationFeed = (*Store)(nil)
)

// StatusListSize implements store.StatusStore.
func (s *Store) StatusListSize() int { return s.status.size }

// AllocateStatus implements store.StatusStore: the next index of the current list (a new list
// once the current one is full), recorded under e.ID, e.Subject and each of e.Labels until
// e.Expires by the store's clock. With e.Clock set the clock check of AdvanceClock runs first,
// under the same lock, and a rollback allocates nothing.
func (s *Store) AllocateStatus(ctx context.Context, e store.StatusEntry) (store.StatusRef, error) {
	if err := ctx.Err(); err != nil {
		return store.StatusRef{}, fmt.Errorf("memory: allocate status: %w: %w", store.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if err := e.Check(now); err != nil {
		return store.StatusRef{}, fmt.Errorf("memory: allocate status: %w", err)
	}
	s.maybeSweep(now)
	st := &s.status
	idk := digest(sha256.Sum256([]byte(e.ID)))
	if old, ok := st.ids[idk]; ok && now.Before(old.expires) {
		return store.StatusRef{}, fmt.Errorf("memory: allocate status: %w", store.ErrEntryExists)
	}
	for _, l := range e.Labels {
		if st.revoked[digest(sha256.Sum256([]byte(l)))] {
			return store.StatusRef{}, fmt.Errorf("memory: allocate status: %w", store.ErrLabelRevoked)
		}
	}
	var clockKey digest
	if e.Clock != nil {
		clockKey = digest(sha256.Sum256([]byte(e.Clock.AK)))
		if err := s.checkClockLocked(now, clockKey, e.Clock.Info); err != nil {
			return store.StatusRef{}, err
		}
	}
	n := st.next
	st.next++
	ref := store.StatusRef{List: n / uint64(st.size), Index: n % uint64(st.size)}
	if e.Expires.After(st.listExp[ref.List]) {
		st.listExp[ref.List] = e.Expires
	}
	st.ids[idk] = idEntry{ref: ref, expires: e.Expires}
	addRef(st.subjects, digest(sha256.Sum256([]byte(e.Subject))), ref, e.Expires, now)
	for _, l := range e.Labels {
		addRef(st.labels, digest(sha256.Sum256([]byte(l))), ref, e.Expires, now)
	}
	if e.Clock != nil {
		s.clocks[clockKey] = clockEntry{info: e.Clock.Info, expires: now.Add(e.Clock.TTL)}
	}
	return ref, nil
}

// ReinstateLabel implements store.StatusStore.
func (s *Store) ReinstateLabel(ctx context.Context, label string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: reinstate label: %w: %w", store.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.status.revoked, digest(sha256.Sum256([]byte(label))))
	return nil
}

// addRef records ref in the set under k, dropping the set's expired members.
func addRef(m map[digest]refSet, k digest, ref store.StatusRef, exp, now time.Time) {
	set := m[k]
	if set == nil {
		set = refSet{}
		m[k] = set
	}
	for r, e := range set {
		if !now.Before(e) {
			delete(set, r)
		}
	}
	set[ref] = exp
}

// RevokeStatus implements store.StatusStore.
func (s *Store) RevokeStatus(ctx context.Context, sel store.Selector) ([]store.Revocation, error) {
	if err := sel.Check(); err != nil {
		return nil, fmt.Errorf("memory: revoke status: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: revoke status: %w: %w", store.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st := &s.status
	var refs []store.StatusRef
	switch {
	case sel.ID != "":
		if e, ok := st.ids[digest(sha256.Sum256([]byte(sel.ID)))]; ok && now.Before(e.expires) {
			refs = append(refs, e.ref)
		}
	case sel.Subject != "":
		refs = liveRefs(st.subjects[digest(sha256.Sum256([]byte(sel.Subject)))], now)
	default:
		lk := digest(sha256.Sum256([]byte(sel.Label)))
		st.revoked[lk] = true // under the same lock: no entry with it is allocated after this
		refs = liveRefs(st.labels[lk], now)
	}
	byList := map[uint64][]uint64{}
	var order []uint64
	for _, r := range refs {
		b := st.lists[r.List]
		if b == nil {
			b = make([]byte, st.size/8)
			st.lists[r.List] = b
		}
		b[r.Index/8] |= 1 << (r.Index % 8)
		if _, ok := byList[r.List]; !ok {
			order = append(order, r.List)
		}
		byList[r.List] = append(byList[r.List], r.Index)
	}
	out := make([]store.Revocation, 0, len(order))
	for _, l := range order {
		rev := store.Revocation{List: l, Indexes: byList[l]}
		out = append(out, rev)
		st.publishLocked(store.RevocationEvent{Revocation: rev})
	}
	return out, nil
}

// liveRefs returns the members of set that expire after now, in index order.
func liveRefs(set refSet, now time.Time) []store.StatusRef {
	var out []store.StatusRef
	for r, e := range set {
		if now.Before(e) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b store.StatusRef) int {
		if c := cmp.Compare(a.List, b.List); c != 0 {
			return c
		}
		return cmp.Compare(a.Index, b.Index)
	})
	return out
}

// ReadStatusList implements store.StatusStore. It returns a fresh slice of StatusListSize()/8
// bytes.
func (s *Store) ReadStatusList(ctx context.Context, list uint64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: read status list: %w: %w", store.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.status
	if list >= (st.next+uint64(st.size)-1)/uint64(st.size) {
		return nil, fmt.Errorf("memory: read status list %d: %w", list, store.ErrStatusListUnknown)
	}
	out := make([]byte, st.size/8)
	copy(out, st.lists[list])
	return out, nil
}

// WatchRevocations implements store.RevocationFeed for revocations made through this Store.
func (s *Store) WatchRevocations(ctx context.Context, fn func(store.RevocationEvent)) error {
	w := &watcher{ch: make(chan store.RevocationEvent, watchBuffer)}
	s.mu.Lock()
	s.status.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.status.watchers, w)
		s.mu.Unlock()
	}()
	fn(store.RevocationEvent{Resync: true})
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-w.ch:
			fn(ev)
		}
		s.mu.Lock()
		lost := w.overflow
		w.overflow = false
		s.mu.Unlock()
		if lost {
			fn(store.RevocationEvent{Resync: true})
		}
	}
}

// publishLocked hands ev to every watcher without blocking; a watcher whose buffer is full is
// marked to receive a Resync. Store.mu must be held.
func (st *statusState) publishLocked(ev store.RevocationEvent) {
	for w := range st.watchers {
		select {
		case w.ch <- ev:
		default:
			w.overflow = true
		}
	}
}

// sweep drops expired ID, subject and label records, and the bits of lists whose entries have
// all expired. Store.mu must be held.
func (st *statusState) sweep(now time.Time) {
	for k, e := range st.ids {
		if !now.Before(e.expires) {
			delete(st.ids, k)
		}
	}
	for _, m := range []map[digest]refSet{st.subjects, st.labels} {
		for k, set := range m {
			for r, e := range set {
				if !now.Before(e) {
					delete(set, r)
				}
			}
			if len(set) == 0 {
				delete(m, k)
			}
		}
	}
	for l, e := range st.listExp {
		if !now.Before(e) {
			delete(st.listExp, l)
			delete(st.lists, l)
		}
	}
}
