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
