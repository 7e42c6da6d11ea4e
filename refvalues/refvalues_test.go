package refvalues_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/refvalues/refvaluestest"
)

func TestMemoryConformance(t *testing.T) {
	refvaluestest.Run(t, func(*testing.T) refvalues.Store { return refvalues.NewMemory() })
}

func TestFileConformance(t *testing.T) {
	refvaluestest.Run(t, func(t *testing.T) refvalues.Store {
		return refvalues.NewFile(filepath.Join(t.TempDir(), "refs.yaml"))
	})
}

// TestFilePersistsAndNoticesEdits checks that a File store survives a restart (a new File on
// the same path), that a hand edit moves the version, and that a malformed file fails closed.
func TestFilePersistsAndNoticesEdits(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "refs.yaml")
	f := refvalues.NewFile(path)
	if err := f.Add(ctx, "kernels", refvaluestest.D1); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, _, err := f.Revoke(ctx, refvalues.Revocation{Digest: refvaluestest.D2, Reason: "CVE-1", RevokedAt: at}); err != nil {
		t.Fatal(err)
	}
	g := refvalues.NewFile(path)
	snap, err := g.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Sets["kernels"]) != 1 || snap.Revoked[refvaluestest.D2].Reason != "CVE-1" || !snap.Revoked[refvaluestest.D2].RevokedAt.Equal(at) {
		t.Fatalf("reopened snapshot = %+v", snap)
	}
	v0, _ := g.Version(ctx)
	b, _ := os.ReadFile(path)
	edited := strings.Replace(string(b), "kernels:", "kernels:\n        - "+refvaluestest.D3, 1)
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if v1, _ := g.Version(ctx); v1 == v0 {
		t.Fatal("a hand edit did not move the version")
	}
	if snap, err := g.Snapshot(ctx); err != nil || len(snap.Sets["kernels"]) != 2 {
		t.Fatalf("after edit: %+v, %v", snap, err)
	}
	if err := os.WriteFile(path, []byte("sets: {kernels: [nothex]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Snapshot(ctx); !errors.Is(err, refvalues.ErrUnavailable) {
		t.Fatalf("malformed file: %v, want ErrUnavailable", err)
	}
	if err := g.Add(ctx, "kernels", refvaluestest.D1); !errors.Is(err, refvalues.ErrUnavailable) {
		t.Fatalf("Add over a malformed file: %v, want ErrUnavailable", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "sets: {kernels: [nothex]}\n" {
		t.Fatal("a refused Add rewrote the malformed file")
	}
}
