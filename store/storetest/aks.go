package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/passport-attest/passport/store"
)

// RunAKStore runs the store.AKStore conformance cases as parallel subtests of t. newStore is
// called once per subtest and must return an empty, isolated store.
func RunAKStore(t *testing.T, newStore func(t *testing.T) store.AKStore) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, s store.AKStore)
	}{
		{"PutGet", testAKPutGet},
		{"Replace", testAKReplace},
		{"Unknown", testAKUnknown},
		{"Delete", testAKDelete},
		{"List", testAKList},
		{"CallerBuffers", testAKCallerBuffers},
		{"BadRecord", testAKBadRecord},
		{"Concurrent", testAKConcurrent},
		{"CanceledContext", testAKCanceledContext},
		{"ReplaceEnrolled", testAKReplaceEnrolled},
		{"ReplaceEnrolledBadArgs", testAKReplaceEnrolledBadArgs},
		{"ReplaceEnrolledConcurrent", testAKReplaceEnrolledConcurrent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newStore(t))
		})
	}
}

func mustPutAK(t *testing.T, s store.AKStore, id string, v []byte) {
	t.Helper()
	if err := s.PutAK(context.Background(), id, v); err != nil {
		t.Fatalf("PutAK(%q): %v", id, err)
	}
}

func wantAK(t *testing.T, s store.AKStore, id string, want []byte) {
	t.Helper()
	got, err := s.GetAK(context.Background(), id)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("GetAK(%q) = %q, %v; want %q", id, got, err, want)
	}
}

func testAKPutGet(t *testing.T, s store.AKStore) {
	mustPutAK(t, s, "ak1", []byte(`{"method":"allowlist"}`))
	wantAK(t, s, "ak1", []byte(`{"method":"allowlist"}`))
}

func testAKReplace(t *testing.T, s store.AKStore) {
	mustPutAK(t, s, "ak1", []byte("one"))
	mustPutAK(t, s, "ak1", []byte("two"))
	wantAK(t, s, "ak1", []byte("two"))
}

func testAKUnknown(t *testing.T, s store.AKStore) {
	if _, err := s.GetAK(context.Background(), "nobody"); !errors.Is(err, store.ErrAKUnknown) {
		t.Fatalf("GetAK of an unknown id: %v, want ErrAKUnknown", err)
	}
}

func testAKDelete(t *testing.T, s store.AKStore) {
	ctx := context.Background()
	mustPutAK(t, s, "ak1", []byte("x"))
	if err := s.DeleteAK(ctx, "ak1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAK(ctx, "ak1"); !errors.Is(err, store.ErrAKUnknown) {
		t.Fatalf("deleted AK still there: %v", err)
	}
	if err := s.DeleteAK(ctx, "ak1"); !errors.Is(err, store.ErrAKUnknown) {
		t.Fatalf("second delete: %v, want ErrAKUnknown", err)
	}
}

func testAKList(t *testing.T, s store.AKStore) {
	got, err := s.ListAKs(context.Background())
	if err != nil || len(got) != 0 {
		t.Fatalf("empty store lists %v, %v", got, err)
	}
	for i := 0; i < 3; i++ {
		mustPutAK(t, s, fmt.Sprint("ak", i), []byte(fmt.Sprint("v", i)))
	}
	got, err = s.ListAKs(context.Background())
	if err != nil || len(got) != 3 || string(got["ak2"]) != "v2" {
		t.Fatalf("ListAKs = %q, %v", got, err)
	}
}

func testAKCallerBuffers(t *testing.T, s store.AKStore) {
	v := []byte("value")
	mustPutAK(t, s, "ak1", v)
	v[0] = 'X'
	got, _ := s.GetAK(context.Background(), "ak1")
	got[1] = 'Y'
	wantAK(t, s, "ak1", []byte("value"))
}

func testAKBadRecord(t *testing.T, s store.AKStore) {
	ctx := context.Background()
	if err := s.PutAK(ctx, "ak1", nil); err == nil {
		t.Fatal("empty record stored")
	}
	if err := s.PutAK(ctx, "ak1", make([]byte, store.MaxAKRecord+1)); err == nil {
		t.Fatal("oversized record stored")
	}
	if _, err := s.GetAK(ctx, "ak1"); !errors.Is(err, store.ErrAKUnknown) {
		t.Fatalf("refused record left something: %v", err)
	}
}

func testAKConcurrent(t *testing.T, s store.AKStore) {
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.PutAK(context.Background(), fmt.Sprint("ak", i), []byte("v")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := s.ListAKs(context.Background())
	if err != nil || len(got) != 20 {
		t.Fatalf("%d records after 20 concurrent puts (%v)", len(got), err)
	}
}

func testAKCanceledContext(t *testing.T, s store.AKStore) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.PutAK(ctx, "ak1", []byte("v")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("PutAK with a canceled context: %v, want ErrUnavailable", err)
	}
	if _, err := s.GetAK(ctx, "ak1"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("GetAK with a canceled context: %v, want ErrUnavailable", err)
	}
}

// wantEnrolled checks that the only records of s are index, naming id, and id holding value.
func wantEnrolled(t *testing.T, s store.AKStore, index, id string, value []byte) {
	t.Helper()
	got, err := s.ListAKs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[index]) != id || !bytes.Equal(got[id], value) {
		t.Fatalf("records %q; want only %s -> %s and %s -> %q", got, index, id, id, value)
	}
}

func testAKReplaceEnrolled(t *testing.T, s store.AKStore) {
	ctx := context.Background()
	prev, err := s.ReplaceEnrolled(ctx, "ek:1", "ak1", []byte("one"))
	if err != nil || prev != "" {
		t.Fatalf("first ReplaceEnrolled = %q, %v; want \"\", nil", prev, err)
	}
	wantEnrolled(t, s, "ek:1", "ak1", []byte("one"))
	if prev, err = s.ReplaceEnrolled(ctx, "ek:1", "ak1", []byte("one again")); err != nil || prev != "ak1" {
		t.Fatalf("same AK again = %q, %v; want ak1, nil", prev, err)
	}
	wantEnrolled(t, s, "ek:1", "ak1", []byte("one again"))
	if prev, err = s.ReplaceEnrolled(ctx, "ek:1", "ak2", []byte("two")); err != nil || prev != "ak1" {
		t.Fatalf("another AK = %q, %v; want ak1, nil", prev, err)
	}
	wantEnrolled(t, s, "ek:1", "ak2", []byte("two"))
	// The previous record is gone even when it was unpinned meanwhile, and other records stay.
	mustPutAK(t, s, "other", []byte("x"))
	if err := s.DeleteAK(ctx, "ak2"); err != nil {
		t.Fatal(err)
	}
	if prev, err = s.ReplaceEnrolled(ctx, "ek:1", "ak3", []byte("three")); err != nil || prev != "ak2" {
		t.Fatalf("after an unpin = %q, %v; want ak2, nil", prev, err)
	}
	if err := s.DeleteAK(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	wantEnrolled(t, s, "ek:1", "ak3", []byte("three"))
}

func testAKReplaceEnrolledBadArgs(t *testing.T, s store.AKStore) {
	ctx := context.Background()
	for _, c := range []struct {
		index, id string
		value     []byte
	}{
		{"", "ak1", []byte("v")},
		{"ek:1", "", []byte("v")},
		{"ek:1", "ek:1", []byte("v")},
		{"ek:1", "ak1", nil},
		{"ek:1", "ak1", make([]byte, store.MaxAKRecord+1)},
	} {
		if _, err := s.ReplaceEnrolled(ctx, c.index, c.id, c.value); err == nil {
			t.Errorf("ReplaceEnrolled(%q, %q, %d bytes) accepted", c.index, c.id, len(c.value))
		}
	}
	got, err := s.ListAKs(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("refused calls left %q (%v)", got, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.ReplaceEnrolled(cctx, "ek:1", "ak1", []byte("v")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("ReplaceEnrolled with a canceled context: %v, want ErrUnavailable", err)
	}
}

// testAKReplaceEnrolledConcurrent: many enrollments of different AKs with one EK at once
// leave exactly one AK record, and the index names it (none stays trusted unindexed).
func testAKReplaceEnrolledConcurrent(t *testing.T, s store.AKStore) {
	const n = 20
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id := fmt.Sprint("ak", i)
			if _, err := s.ReplaceEnrolled(context.Background(), "ek:1", id, []byte("record of "+id)); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	got, err := s.ListAKs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	id := string(got["ek:1"])
	if len(got) != 2 || string(got[id]) != "record of "+id {
		t.Fatalf("%d records after %d concurrent enrollments with one EK (want the index and the AK it names): %q", len(got), n, got)
	}
}
