package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/passport-attest/passport/store"
)

// MaxStatusListSize is the largest StatusListSize the status suite accepts: it fills whole
// lists to check the rollover, so constructors configure small lists (16 entries is enough).
const MaxStatusListSize = 1024

// RunStatusStore runs the store.StatusStore conformance cases as parallel subtests of t.
// newStore is called once per subtest and must return an empty store whose StatusListSize is
// a multiple of 8 and at most MaxStatusListSize, and the Clock that advances its time.
func RunStatusStore(t *testing.T, newStore func(t *testing.T) (store.StatusStore, Clock)) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, s store.StatusStore, clk Clock)
	}{
		{"Sequential", testStatusSequential},
		{"Rollover", testStatusRollover},
		{"UnknownList", testStatusUnknownList},
		{"BitOrder", testStatusBitOrder},
		{"DraftExample", testStatusDraftExample},
		{"RevokeByID", testRevokeByID},
		{"RevokeBySubject", testRevokeBySubject},
		{"RevokeByLabel", testRevokeByLabel},
		{"RevokedLabelRefused", testRevokedLabelRefused},
		{"RevokeLabelRace", testRevokeLabelRace},
		{"RevokeNothing", testRevokeNothing},
		{"Expiry", testStatusExpiry},
		{"DuplicateID", testStatusDuplicateID},
		{"InvalidInput", testStatusInvalidInput},
		{"FoldedClock", testStatusFoldedClock},
		{"Concurrent", testStatusConcurrent},
		{"CanceledContext", testStatusCanceledContext},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, clk := newStore(t)
			if n := s.StatusListSize(); n <= 0 || n%8 != 0 || n > MaxStatusListSize {
				t.Fatalf("StatusListSize = %d, want a positive multiple of 8 up to %d", n, MaxStatusListSize)
			}
			c.run(t, s, clk)
		})
	}
}

var entrySeq struct {
	mu sync.Mutex
	n  int
}

// entry returns an entry with a fresh ID for subject, live for longTTL by clk.
func entry(clk Clock, subject string, labels ...string) store.StatusEntry {
	entrySeq.mu.Lock()
	entrySeq.n++
	n := entrySeq.n
	entrySeq.mu.Unlock()
	return withExpiry(store.StatusEntry{ID: fmt.Sprintf("jti-%d", n), Subject: subject, Labels: labels}, clk, longTTL)
}

// withExpiry returns e with Expires set to now+d by the store's notion of time. Stores with
// an injected clock (FakeClock) read it; the others use the wall clock.
func withExpiry(e store.StatusEntry, clk Clock, d time.Duration) store.StatusEntry {
	now := time.Now()
	if f, ok := clk.(*FakeClock); ok {
		now = f.Now()
	}
	e.Expires = now.Add(d)
	return e
}

func mustAllocate(t *testing.T, s store.StatusStore, e store.StatusEntry) store.StatusRef {
	t.Helper()
	ref, err := s.AllocateStatus(context.Background(), e)
	if err != nil {
		t.Fatalf("AllocateStatus(%s): %v", e.ID, err)
	}
	if ref.Index >= uint64(s.StatusListSize()) {
		t.Fatalf("AllocateStatus(%s) = %+v: index beyond the list size %d", e.ID, ref, s.StatusListSize())
	}
	return ref
}

func mustRead(t *testing.T, s store.StatusStore, list uint64) []byte {
	t.Helper()
	b, err := s.ReadStatusList(context.Background(), list)
	if err != nil {
		t.Fatalf("ReadStatusList(%d): %v", list, err)
	}
	if len(b) != s.StatusListSize()/8 {
		t.Fatalf("ReadStatusList(%d) = %d bytes, want %d", list, len(b), s.StatusListSize()/8)
	}
	return b
}

func mustRevoke(t *testing.T, s store.StatusStore, sel store.Selector) []store.Revocation {
	t.Helper()
	r, err := s.RevokeStatus(context.Background(), sel)
	if err != nil {
		t.Fatalf("RevokeStatus(%+v): %v", sel, err)
	}
	return r
}

// setBits returns the indexes whose bit is set in b, in order.
func setBits(b []byte) []uint64 {
	var out []uint64
	for i := uint64(0); i < uint64(len(b))*8; i++ {
		if v, _ := store.StatusBit(b, i); v == 1 {
			out = append(out, i)
		}
	}
	return out
}

// wantBits checks that exactly the indexes want are set in list.
func wantBits(t *testing.T, s store.StatusStore, list uint64, want ...uint64) {
	t.Helper()
	got := setBits(mustRead(t, s, list))
	if want == nil {
		want = []uint64{}
	}
	if got == nil {
		got = []uint64{}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("list %d has bits %v set, want %v", list, got, want)
	}
}

// flatten returns the revoked refs of rs, sorted.
func flatten(rs []store.Revocation) []store.StatusRef {
	var out []store.StatusRef
	for _, r := range rs {
		for _, i := range r.Indexes {
			out = append(out, store.StatusRef{List: r.List, Index: i})
		}
	}
	slices.SortFunc(out, cmpRef)
	return out
}

func cmpRef(a, b store.StatusRef) int {
	switch {
	case a.List != b.List:
		if a.List < b.List {
			return -1
		}
		return 1
	case a.Index < b.Index:
		return -1
	case a.Index > b.Index:
		return 1
	}
	return 0
}

func wantRevoked(t *testing.T, got []store.Revocation, want ...store.StatusRef) {
	t.Helper()
	g := flatten(got)
	slices.SortFunc(want, cmpRef)
	if len(g) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(g, want) {
		t.Fatalf("revoked %v, want %v", g, want)
	}
}

func testStatusSequential(t *testing.T, s store.StatusStore, clk Clock) {
	// One subject's entries are consecutive in one list; a fresh store starts at index 0.
	first := mustAllocate(t, s, entry(clk, "sub-a"))
	if first.Index != 0 {
		t.Fatalf("first entry of a fresh store = %+v, want index 0", first)
	}
	for i := uint64(1); i < 5; i++ {
		ref := mustAllocate(t, s, entry(clk, "sub-a"))
		if ref != (store.StatusRef{List: first.List, Index: i}) {
			t.Fatalf("entry %d = %+v, want list %d index %d", i, ref, first.List, i)
		}
	}
	// A new list reads as all valid.
	wantBits(t, s, first.List)
}

func testStatusRollover(t *testing.T, s store.StatusStore, clk Clock) {
	size := uint64(s.StatusListSize())
	var refs []store.StatusRef
	for i := uint64(0); i < size+3; i++ {
		refs = append(refs, mustAllocate(t, s, entry(clk, "sub-roll")))
	}
	a, b := refs[0].List, refs[size].List
	if a == b {
		t.Fatalf("entry %d is still in list %d: no rollover", size, a)
	}
	for i, r := range refs {
		want := store.StatusRef{List: a, Index: uint64(i)}
		if uint64(i) >= size {
			want = store.StatusRef{List: b, Index: uint64(i) - size}
		}
		if r != want {
			t.Fatalf("entry %d = %+v, want %+v", i, r, want)
		}
	}
	// Both lists exist and read as all valid.
	wantBits(t, s, a)
	wantBits(t, s, b)
}

func testStatusUnknownList(t *testing.T, s store.StatusStore, clk Clock) {
	for _, l := range []uint64{1 << 40, 1<<63 + 5} {
		if b, err := s.ReadStatusList(context.Background(), l); !errors.Is(err, store.ErrStatusListUnknown) {
			t.Fatalf("ReadStatusList(%d) = %d bytes, %v; want ErrStatusListUnknown", l, len(b), err)
		}
	}
	ref := mustAllocate(t, s, entry(clk, "sub-u"))
	mustRead(t, s, ref.List)
}

func testStatusBitOrder(t *testing.T, s store.StatusStore, clk Clock) {
	// Entry i is bit i%8 of byte i/8 counting from the least significant bit: index 0 is
	// 0x01 in byte 0, index 9 is 0x02 in byte 1 (draft-ietf-oauth-status-list section 4.1).
	var es []store.StatusEntry
	var list uint64
	for i := 0; i < 16; i++ {
		e := entry(clk, "sub-order")
		es = append(es, e)
		list = mustAllocate(t, s, e).List
	}
	mustRevoke(t, s, store.Selector{ID: es[0].ID})
	b := mustRead(t, s, list)
	if b[0] != 0x01 || b[1] != 0 {
		t.Fatalf("after revoking index 0: bytes % x, want 01 00", b[:2])
	}
	mustRevoke(t, s, store.Selector{ID: es[9].ID})
	b = mustRead(t, s, list)
	if b[0] != 0x01 || b[1] != 0x02 {
		t.Fatalf("after revoking indexes 0 and 9: bytes % x, want 01 02", b[:2])
	}
	mustRevoke(t, s, store.Selector{ID: es[7].ID})
	b = mustRead(t, s, list)
	if b[0] != 0x81 {
		t.Fatalf("after revoking index 7: byte 0 = %02x, want 81", b[0])
	}
}

func testStatusDraftExample(t *testing.T, s store.StatusStore, clk Clock) {
	// The example of draft-ietf-oauth-status-list section 4.1: statuses 1,0,0,1,1,1,0,1 and
	// 1,1,0,0,0,1,0,1 make the bytes b9 a3.
	var es []store.StatusEntry
	var list uint64
	for i := 0; i < 16; i++ {
		e := entry(clk, "sub-draft")
		es = append(es, e)
		list = mustAllocate(t, s, e).List
	}
	for _, i := range []int{0, 3, 4, 5, 7, 8, 9, 13, 15} {
		mustRevoke(t, s, store.Selector{ID: es[i].ID})
	}
	b := mustRead(t, s, list)
	if b[0] != 0xb9 || b[1] != 0xa3 {
		t.Fatalf("bytes % x, want b9 a3", b[:2])
	}
}

func testRevokeByID(t *testing.T, s store.StatusStore, clk Clock) {
	var refs []store.StatusRef
	var es []store.StatusEntry
	for i := 0; i < 3; i++ {
		e := entry(clk, "sub-id")
		es = append(es, e)
		refs = append(refs, mustAllocate(t, s, e))
	}
	wantRevoked(t, mustRevoke(t, s, store.Selector{ID: es[1].ID}), refs[1])
	wantBits(t, s, refs[0].List, refs[1].Index)
	// Revoking again is harmless and changes nothing else.
	mustRevoke(t, s, store.Selector{ID: es[1].ID})
	wantBits(t, s, refs[0].List, refs[1].Index)
	// Entries allocated after a revocation start valid.
	ref := mustAllocate(t, s, entry(clk, "sub-id"))
	wantBits(t, s, ref.List, refs[1].Index)
}

func testRevokeBySubject(t *testing.T, s store.StatusStore, clk Clock) {
	var a, b []store.StatusRef
	for i := 0; i < 4; i++ {
		a = append(a, mustAllocate(t, s, entry(clk, "sub-A")))
		b = append(b, mustAllocate(t, s, entry(clk, "sub-B")))
	}
	wantRevoked(t, mustRevoke(t, s, store.Selector{Subject: "sub-A"}), a...)
	perList := map[uint64][]uint64{}
	for _, r := range a {
		perList[r.List] = append(perList[r.List], r.Index)
	}
	for _, r := range b {
		if _, ok := perList[r.List]; !ok {
			perList[r.List] = nil
		}
	}
	for l, idx := range perList {
		wantBits(t, s, l, idx...)
	}
	// Similar subjects are distinct.
	wantRevoked(t, mustRevoke(t, s, store.Selector{Subject: "sub-"}))
	wantRevoked(t, mustRevoke(t, s, store.Selector{Subject: "sub-a"}))
}

func testRevokeByLabel(t *testing.T, s store.StatusStore, clk Clock) {
	r1 := mustAllocate(t, s, entry(clk, "sub-1", "rv-bad", "rv-good"))
	r2 := mustAllocate(t, s, entry(clk, "sub-2", "rv-bad"))
	r3 := mustAllocate(t, s, entry(clk, "sub-3", "rv-good"))
	r4 := mustAllocate(t, s, entry(clk, "sub-4"))
	wantRevoked(t, mustRevoke(t, s, store.Selector{Label: "rv-bad"}), r1, r2)
	perList := map[uint64][]uint64{}
	for _, r := range []store.StatusRef{r1, r2} {
		perList[r.List] = append(perList[r.List], r.Index)
	}
	for _, r := range []store.StatusRef{r3, r4} {
		if _, ok := perList[r.List]; !ok {
			perList[r.List] = nil
		}
	}
	for l, idx := range perList {
		wantBits(t, s, l, idx...)
	}
	// A label is not a subject, nor an ID.
	wantRevoked(t, mustRevoke(t, s, store.Selector{Subject: "rv-good"}))
	wantRevoked(t, mustRevoke(t, s, store.Selector{ID: "rv-good"}))
}

// testRevokedLabelRefused: a label revoked by RevokeStatus stays revoked: an entry carrying it
// is refused (ErrLabelRevoked) and allocates nothing, until ReinstateLabel.
func testRevokedLabelRefused(t *testing.T, s store.StatusStore, clk Clock) {
	ctx := context.Background()
	before := mustAllocate(t, s, entry(clk, "sub-r", "rv-revoked"))
	wantRevoked(t, mustRevoke(t, s, store.Selector{Label: "rv-revoked"}), before)
	for i := range 16 { // subjects spread over every shard of a sharded backend
		if ref, err := s.AllocateStatus(ctx, entry(clk, fmt.Sprintf("sub-r-%d", i), "rv-fine", "rv-revoked")); !errors.Is(err, store.ErrLabelRevoked) {
			t.Fatalf("allocation for sub-r-%d with a revoked label = %+v, %v; want ErrLabelRevoked", i, ref, err)
		}
	}
	next := mustAllocate(t, s, entry(clk, "sub-r", "rv-fine"))
	if next.List != before.List || next.Index != before.Index+1 {
		t.Fatalf("after a refused allocation the next entry is %+v, want %+v: the refusal allocated", next, store.StatusRef{List: before.List, Index: before.Index + 1})
	}
	if err := s.ReinstateLabel(ctx, "rv-revoked"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReinstateLabel(ctx, "never-revoked"); err != nil {
		t.Fatalf("reinstating a label never revoked: %v", err)
	}
	for i := range 16 {
		mustAllocate(t, s, entry(clk, fmt.Sprintf("sub-r-%d", i), "rv-revoked"))
	}
	again := mustAllocate(t, s, entry(clk, "sub-r", "rv-revoked"))
	wantBits(t, s, before.List, before.Index) // the entry revoked before stays revoked, the new one is valid
	if again.List != before.List {
		wantBits(t, s, again.List)
	}
}

// testRevokeLabelRace: entries carrying a label are allocated while the label is revoked;
// each is either revoked by the revocation or refused: none stays valid.
func testRevokeLabelRace(t *testing.T, s store.StatusStore, clk Clock) {
	ctx := context.Background()
	const workers, each = 8, 25
	var mu sync.Mutex
	var got []store.StatusRef
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range each {
				ref, err := s.AllocateStatus(ctx, entry(clk, fmt.Sprintf("sub-race-%d", w), "rv-race")) // every shard
				switch {
				case errors.Is(err, store.ErrLabelRevoked):
					return
				case err != nil:
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, ref)
				mu.Unlock()
			}
		}()
	}
	close(start)
	if _, err := s.RevokeStatus(ctx, store.Selector{Label: "rv-race"}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, r := range got {
		b, ok := store.StatusBit(mustRead(t, s, r.List), r.Index)
		if !ok || b != 1 {
			t.Fatalf("entry %+v carrying the revoked label is valid: allocated concurrently and missed", r)
		}
	}
}

func testRevokeNothing(t *testing.T, s store.StatusStore, clk Clock) {
	ref := mustAllocate(t, s, entry(clk, "sub-n", "label"))
	for _, sel := range []store.Selector{{ID: "unknown"}, {Subject: "unknown"}, {Label: "unknown"}} {
		if got := mustRevoke(t, s, sel); len(flatten(got)) != 0 {
			t.Fatalf("RevokeStatus(%+v) = %v, want nothing", sel, got)
		}
	}
	wantBits(t, s, ref.List)
}

func testStatusExpiry(t *testing.T, s store.StatusStore, clk Clock) {
	short := withExpiry(entry(clk, "sub-exp", "label-exp"), clk, shortTTL)
	long := entry(clk, "sub-exp", "label-exp")
	rs := mustAllocate(t, s, short)
	rl := mustAllocate(t, s, long)
	clk.Advance(shortTTL)
	// Only the live entry is revoked, by every selector.
	wantRevoked(t, mustRevoke(t, s, store.Selector{ID: short.ID}))
	wantRevoked(t, mustRevoke(t, s, store.Selector{Subject: "sub-exp"}), rl)
	wantRevoked(t, mustRevoke(t, s, store.Selector{Label: "label-exp"}), rl)
	b := mustRead(t, s, rl.List)
	if v, _ := store.StatusBit(b, rl.Index); v != 1 {
		t.Fatalf("live entry %+v not revoked", rl)
	}
	if rs.List == rl.List {
		if v, _ := store.StatusBit(b, rs.Index); v != 0 {
			t.Fatalf("expired entry %+v was revoked", rs)
		}
	}
	// The expired ID may be used again (without the label, now revoked).
	again := withExpiry(short, clk, longTTL)
	again.Labels = nil
	mustAllocate(t, s, again)
}

func testStatusDuplicateID(t *testing.T, s store.StatusStore, clk Clock) {
	e := entry(clk, "sub-dup")
	first := mustAllocate(t, s, e)
	if _, err := s.AllocateStatus(context.Background(), e); !errors.Is(err, store.ErrEntryExists) {
		t.Fatalf("second AllocateStatus with ID %s = %v, want ErrEntryExists", e.ID, err)
	}
	// The refused call allocated nothing.
	next := mustAllocate(t, s, entry(clk, "sub-dup"))
	if next != (store.StatusRef{List: first.List, Index: first.Index + 1}) {
		t.Fatalf("after a refused allocation the next entry is %+v, want index %d", next, first.Index+1)
	}
}

func testStatusInvalidInput(t *testing.T, s store.StatusStore, clk Clock) {
	ctx := context.Background()
	first := mustAllocate(t, s, entry(clk, "sub-inv"))
	bad := []store.StatusEntry{
		withExpiry(store.StatusEntry{Subject: "sub-inv"}, clk, longTTL),
		withExpiry(store.StatusEntry{ID: "x-1"}, clk, longTTL),
		withExpiry(store.StatusEntry{ID: "x-2", Subject: "sub-inv"}, clk, -time.Second),
		withExpiry(store.StatusEntry{ID: "x-3", Subject: "sub-inv", Labels: []string{""}}, clk, longTTL),
		withExpiry(store.StatusEntry{ID: "x-4", Subject: "sub-inv", Clock: &store.ClockAdvance{AK: "ak"}}, clk, longTTL),
	}
	for i, e := range bad {
		if ref, err := s.AllocateStatus(ctx, e); err == nil {
			t.Errorf("invalid entry %d allocated %+v", i, ref)
		}
	}
	for _, sel := range []store.Selector{{}, {ID: "a", Subject: "b"}, {Subject: "a", Label: "b"}} {
		if _, err := s.RevokeStatus(ctx, sel); err == nil {
			t.Errorf("RevokeStatus(%+v) succeeded, want an error", sel)
		}
	}
	next := mustAllocate(t, s, entry(clk, "sub-inv"))
	if next.Index != first.Index+1 {
		t.Fatalf("invalid input consumed indexes: next entry %+v after %+v", next, first)
	}
}

func testStatusFoldedClock(t *testing.T, s store.StatusStore, clk Clock) {
	withClock := func(ak string, c store.ClockInfo) store.StatusEntry {
		e := entry(clk, "sub-clock")
		e.Clock = &store.ClockAdvance{AK: ak, Info: c, TTL: longTTL}
		return e
	}
	first := mustAllocate(t, s, withClock("ak-1", base))
	mustAllocate(t, s, withClock("ak-1", base)) // equal is fine
	if _, err := s.AllocateStatus(context.Background(), withClock("ak-1", pred(base))); !errors.Is(err, store.ErrClockRollback) {
		t.Fatalf("AllocateStatus with a clock rollback = %v, want ErrClockRollback", err)
	}
	// Nothing was allocated by the refused call; another AK is independent.
	next := mustAllocate(t, s, withClock("ak-2", store.ClockInfo{}))
	if next.Index != first.Index+2 {
		t.Fatalf("next entry %+v, want index %d", next, first.Index+2)
	}
	fwd := base
	fwd.Clock++
	mustAllocate(t, s, withClock("ak-1", fwd))
	if _, err := s.AllocateStatus(context.Background(), withClock("ak-1", base)); !errors.Is(err, store.ErrClockRollback) {
		t.Fatalf("AllocateStatus after the clock advanced = %v, want ErrClockRollback", err)
	}
}

func testStatusConcurrent(t *testing.T, s store.StatusStore, clk Clock) {
	size := uint64(s.StatusListSize())
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		refs  []store.StatusRef
		start = make(chan struct{})
	)
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ref, err := s.AllocateStatus(context.Background(), entry(clk, "sub-race"))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("AllocateStatus: %v", err)
				return
			}
			refs = append(refs, ref)
		}()
	}
	close(start)
	wg.Wait()
	// The racers got exactly the first `racers` positions of the subject's sequence.
	slices.SortFunc(refs, cmpRef)
	lists := map[uint64]bool{}
	for _, r := range refs {
		lists[r.List] = true
	}
	if want := int((racers + size - 1) / size); len(lists) != want {
		t.Fatalf("%d racers filled %d lists, want %d", racers, len(lists), want)
	}
	for i := 1; i < len(refs); i++ {
		if refs[i] == refs[i-1] {
			t.Fatalf("index %+v handed out twice", refs[i])
		}
	}
	for i, r := range refs {
		if r.Index != uint64(i)%size {
			t.Fatalf("racer positions %v are not the first %d of the sequence", refs, racers)
		}
	}
}

func testStatusCanceledContext(t *testing.T, s store.StatusStore, clk Clock) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.AllocateStatus(ctx, entry(clk, "sub-c")); err == nil {
		t.Error("AllocateStatus with a canceled context succeeded")
	}
	ref := mustAllocate(t, s, entry(clk, "sub-c"))
	if ref.Index != 0 {
		t.Errorf("the canceled call consumed an index: first entry %+v", ref)
	}
	if _, err := s.RevokeStatus(ctx, store.Selector{ID: "x"}); err == nil {
		t.Error("RevokeStatus with a canceled context succeeded")
	}
	if _, err := s.ReadStatusList(ctx, ref.List); err == nil {
		t.Error("ReadStatusList with a canceled context succeeded")
	}
}

// RunRevocationFeed checks that revocations made through a StatusStore reach its
// RevocationFeed watchers. newStores returns an empty StatusStore and a feed over the same
// state (for Redis: a second connection, as another issuer replica would have).
func RunRevocationFeed(t *testing.T, newStores func(t *testing.T) (store.StatusStore, store.RevocationFeed)) {
	t.Helper()
	t.Run("Delivery", func(t *testing.T) {
		s, feed := newStores(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		const watchers = 2
		chans := make([]chan store.RevocationEvent, watchers)
		done := make(chan error, watchers)
		for i := range chans {
			ch := make(chan store.RevocationEvent, 16)
			chans[i] = ch
			go func() { done <- feed.WatchRevocations(ctx, func(ev store.RevocationEvent) { ch <- ev }) }()
		}
		for i, ch := range chans {
			if ev := recvEvent(t, ch); !ev.Resync {
				t.Fatalf("watcher %d: first event %+v, want Resync", i, ev)
			}
		}
		clk := RealClock{}
		e1, e2 := entry(clk, "sub-feed"), entry(clk, "sub-feed")
		r1 := mustAllocate(t, s, e1)
		r2 := mustAllocate(t, s, e2)
		mustRevoke(t, s, store.Selector{Subject: "sub-feed"})
		for i, ch := range chans {
			ev := recvEvent(t, ch)
			got := flatten([]store.Revocation{ev.Revocation})
			want := []store.StatusRef{r1, r2}
			slices.SortFunc(want, cmpRef)
			if ev.Resync || !slices.Equal(got, want) {
				t.Fatalf("watcher %d: event %+v, want revocation of %v", i, ev, want)
			}
		}
		cancel()
		for i := 0; i < watchers; i++ {
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("WatchRevocations returned %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("WatchRevocations did not return after its context was canceled")
			}
		}
	})
}

// recvEvent waits (bounded) for the next event.
func recvEvent(t *testing.T, ch chan store.RevocationEvent) store.RevocationEvent {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no revocation event within 10 s")
	}
	return store.RevocationEvent{}
}
