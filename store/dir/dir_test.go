package dirstore

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/storetest"
)

func TestBlobStore(t *testing.T) {
	storetest.RunBlobStore(t, func(t *testing.T) store.BlobStore {
		s, err := New(filepath.Join(t.TempDir(), "keys"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestTwoStoresOneDirectory checks that two Stores on one directory (two issuer processes)
// see each other's writes and conflict on a stale version.
func TestTwoStoresOneDirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, _ := New(dir)
	b, _ := New(dir)
	if _, err := a.PutBlob(ctx, "jwks", []byte("from a"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutBlob(ctx, "jwks", []byte("from b"), 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale write = %v, want ErrConflict", err)
	}
	data, v, err := b.GetBlob(ctx, "jwks")
	if err != nil || string(data) != "from a" || v != 1 {
		t.Fatalf("GetBlob = %q, %d, %v", data, v, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "jwks.blob"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("blob file mode %v, %v; want 0600", fi.Mode(), err)
	}
}

// TestProcessesRace runs the race across real processes: this test binary re-executed as
// writers that each try to move version 1 to 2. Exactly one succeeds.
func TestProcessesRace(t *testing.T) {
	if dir := os.Getenv("DIRSTORE_WRITER_DIR"); dir != "" {
		s, _ := New(dir)
		_, err := s.PutBlob(context.Background(), "jwks", []byte(os.Getenv("DIRSTORE_WRITER_ID")), 1)
		switch {
		case err == nil:
			os.Exit(0)
		case errors.Is(err, store.ErrConflict):
			os.Exit(3)
		}
		os.Exit(1)
	}
	dir := t.TempDir()
	s, _ := New(dir)
	if _, err := s.PutBlob(context.Background(), "jwks", []byte("base"), 0); err != nil {
		t.Fatal(err)
	}
	const n = 6
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		c := exec.Command(os.Args[0], "-test.run=^TestProcessesRace$")
		c.Env = append(os.Environ(), "DIRSTORE_WRITER_DIR="+dir, "DIRSTORE_WRITER_ID="+strconv.Itoa(i))
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = c
	}
	wins := 0
	for i, c := range cmds {
		err := c.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			wins++
		case errors.As(err, &ee) && ee.ExitCode() == 3:
		default:
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d writer processes succeeded, want 1", wins, n)
	}
	if _, v, _ := s.GetBlob(context.Background(), "jwks"); v != 2 {
		t.Fatalf("version %d, want 2", v)
	}
}

func TestInvalidName(t *testing.T) {
	s, _ := New(t.TempDir())
	for _, name := range []string{"", "../x", "a/b", ".hidden", "x y"} {
		if _, err := s.PutBlob(context.Background(), name, nil, 0); err == nil {
			t.Errorf("PutBlob(%q) succeeded", name)
		}
	}
}

func TestMalformedFile(t *testing.T) {
	dir := t.TempDir()
	s, _ := New(dir)
	if err := os.WriteFile(filepath.Join(dir, "jwks.blob"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.GetBlob(context.Background(), "jwks"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("GetBlob of a malformed file = %v, want ErrUnavailable", err)
	}
}
