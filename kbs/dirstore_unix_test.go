//go:build unix

package kbs_test

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/kbs"
)

// TestDirStoreSpecialFiles: a FIFO where a secret would be is absent, and reading it does not
// block (it is never opened).
func TestDirStoreSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := kbs.NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := api.ResourceID{Repository: "default", Type: "key", Tag: "fifo"}
	if err := s.Put(context.Background(), api.ResourceID{Repository: "default", Type: "key", Tag: "disk"}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "default", "key", "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Get(context.Background(), id); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, kbs.ErrNotFound) {
			t.Fatalf("FIFO: %v, want ErrNotFound", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get blocked on a FIFO")
	}
}
