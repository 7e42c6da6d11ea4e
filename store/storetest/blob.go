package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/passport-attest/passport/store"
)

// RunBlobStore runs the store.BlobStore conformance cases as parallel subtests of t. newStore
// is called once per subtest and must return an empty store.
func RunBlobStore(t *testing.T, newStore func(t *testing.T) store.BlobStore) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, s store.BlobStore)
	}{
		{"Absent", testBlobAbsent},
		{"CreateUpdate", testBlobCreateUpdate},
		{"Conflict", testBlobConflict},
		{"Concurrent", testBlobConcurrent},
		{"Isolation", testBlobIsolation},
		{"CallerBuffers", testBlobCallerBuffers},
		{"CanceledContext", testBlobCanceledContext},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newStore(t))
		})
	}
}

func mustGetBlob(t *testing.T, s store.BlobStore, name string, want string, wantVersion uint64) {
	t.Helper()
	b, v, err := s.GetBlob(context.Background(), name)
	if err != nil {
		t.Fatalf("GetBlob(%q): %v", name, err)
	}
	if string(b) != want || v != wantVersion {
		t.Fatalf("GetBlob(%q) = %q version %d, want %q version %d", name, b, v, want, wantVersion)
	}
}

func mustPutBlob(t *testing.T, s store.BlobStore, name, data string, version uint64) {
	t.Helper()
	v, err := s.PutBlob(context.Background(), name, []byte(data), version)
	if err != nil {
		t.Fatalf("PutBlob(%q, version %d): %v", name, version, err)
	}
	if v != version+1 {
		t.Fatalf("PutBlob(%q, version %d) = version %d, want %d", name, version, v, version+1)
	}
}

func testBlobAbsent(t *testing.T, s store.BlobStore) {
	b, v, err := s.GetBlob(context.Background(), "keys")
	if err != nil || b != nil || v != 0 {
		t.Fatalf("GetBlob of a missing blob = %q, %d, %v; want nil, 0, nil", b, v, err)
	}
}

func testBlobCreateUpdate(t *testing.T, s store.BlobStore) {
	mustPutBlob(t, s, "keys", "one", 0)
	mustGetBlob(t, s, "keys", "one", 1)
	mustPutBlob(t, s, "keys", "two", 1)
	mustGetBlob(t, s, "keys", "two", 2)
	mustPutBlob(t, s, "keys", "", 2)
	mustGetBlob(t, s, "keys", "", 3)
}

func testBlobConflict(t *testing.T, s store.BlobStore) {
	mustPutBlob(t, s, "keys", "one", 0)
	for _, v := range []uint64{0, 2, 7} {
		if _, err := s.PutBlob(context.Background(), "keys", []byte("stale"), v); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("PutBlob with version %d = %v, want ErrConflict", v, err)
		}
	}
	mustGetBlob(t, s, "keys", "one", 1)
}

func testBlobConcurrent(t *testing.T, s store.BlobStore) {
	mustPutBlob(t, s, "keys", "base", 0)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []string
		start   = make(chan struct{})
	)
	const writers = 50
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := string(rune('A'+i%26)) + string(rune('a'+i/26))
			<-start
			_, err := s.PutBlob(context.Background(), "keys", []byte(data), 1)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, data)
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("PutBlob: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d of %d concurrent writers succeeded, want exactly 1", len(winners), writers)
	}
	mustGetBlob(t, s, "keys", winners[0], 2)
}

func testBlobIsolation(t *testing.T, s store.BlobStore) {
	mustPutBlob(t, s, "a", "1", 0)
	mustPutBlob(t, s, "b", "2", 0)
	mustPutBlob(t, s, "a", "3", 1)
	mustGetBlob(t, s, "a", "3", 2)
	mustGetBlob(t, s, "b", "2", 1)
}

func testBlobCallerBuffers(t *testing.T, s store.BlobStore) {
	data := []byte("original")
	if _, err := s.PutBlob(context.Background(), "keys", data, 0); err != nil {
		t.Fatal(err)
	}
	copy(data, "mutated!")
	b, _, err := s.GetBlob(context.Background(), "keys")
	if err != nil {
		t.Fatal(err)
	}
	copy(b, "scribble")
	mustGetBlob(t, s, "keys", "original", 1)
}

func testBlobCanceledContext(t *testing.T, s store.BlobStore) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.PutBlob(ctx, "keys", []byte("x"), 0); err == nil {
		t.Error("PutBlob with a canceled context succeeded")
	}
	if _, _, err := s.GetBlob(ctx, "keys"); err == nil {
		t.Error("GetBlob with a canceled context succeeded")
	}
	testBlobAbsent(t, s)
}
