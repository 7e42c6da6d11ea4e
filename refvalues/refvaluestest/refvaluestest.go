// Package refvaluestest is the conformance suite of refvalues.Store: every backend (memory,
// file, Redis) runs Run and must pass all of it.
package refvaluestest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passport-attest/passport/refvalues"
)

// Digests used by the suite (SHA-256 and SHA-1 sized).
var (
	D1 = strings.Repeat("a1", 32)
	D2 = strings.Repeat("b2", 32)
	D3 = strings.Repeat("c3", 32)
	S1 = strings.Repeat("d4", 20) // a SHA-1 sized digest
)

// Run runs the suite; newStore returns a fresh, empty store for each subtest.
func Run(t *testing.T, newStore func(t *testing.T) refvalues.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

	t.Run("Empty", func(t *testing.T) {
		s := newStore(t)
		snap := mustSnapshot(t, s)
		if len(snap.Sets) != 0 || len(snap.Revoked) != 0 {
			t.Fatalf("empty store snapshot = %+v", snap)
		}
		if l, err := s.ListRevoked(ctx); err != nil || len(l) != 0 {
			t.Fatalf("ListRevoked = %v, %v", l, err)
		}
	})

	t.Run("AddNormalizesSortsDeduplicates", func(t *testing.T) {
		s := newStore(t)
		if err := s.Add(ctx, "kernels", strings.ToUpper(D2), D1, D2); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(ctx, "kernels", D1, S1); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(ctx, "empty_set"); err != nil {
			t.Fatal(err)
		}
		snap := mustSnapshot(t, s)
		if got := fmt.Sprint(snap.Sets["kernels"]); got != fmt.Sprint([]string{D1, D2, S1}) {
			t.Errorf("kernels = %v", got)
		}
		if v, ok := snap.Sets["empty_set"]; !ok || len(v) != 0 {
			t.Errorf("empty_set = %v, %v; want present and empty", v, ok)
		}
	})

	t.Run("BadInputChangesNothing", func(t *testing.T) {
		s := newStore(t)
		if err := s.Add(ctx, "ok", D1); err != nil {
			t.Fatal(err)
		}
		v0 := mustVersion(t, s)
		d0 := mustSnapshot(t, s).Digest()
		for _, tc := range []struct {
			set     string
			digests []string
			want    error
		}{
			{"ok", []string{D2, "zz" + D1[2:]}, refvalues.ErrBadDigest},
			{"ok", []string{D2[:63]}, refvalues.ErrBadDigest},
			{"ok", []string{""}, refvalues.ErrBadDigest},
			{"Bad", []string{D2}, refvalues.ErrBadSet},
			{"9x", []string{D2}, refvalues.ErrBadSet},
			{"a-b", []string{D2}, refvalues.ErrBadSet},
			{"", []string{D2}, refvalues.ErrBadSet},
			{strings.Repeat("a", 65), []string{D2}, refvalues.ErrBadSet},
		} {
			if err := s.Add(ctx, tc.set, tc.digests...); !errors.Is(err, tc.want) {
				t.Errorf("Add(%q, %q) = %v, want %v", tc.set, tc.digests, err, tc.want)
			}
		}
		if _, _, err := s.Revoke(ctx, refvalues.Revocation{Digest: "nothex", RevokedAt: at}); !errors.Is(err, refvalues.ErrBadDigest) {
			t.Errorf("Revoke(bad digest) = %v", err)
		}
		if _, _, err := s.Revoke(ctx, refvalues.Revocation{Digest: D1}); !errors.Is(err, refvalues.ErrBadRevocation) {
			t.Errorf("Revoke(no time) = %v", err)
		}
		if _, _, err := s.Revoke(ctx, refvalues.Revocation{Digest: D1, RevokedAt: at, Reason: strings.Repeat("x", refvalues.MaxReasonSize+1)}); !errors.Is(err, refvalues.ErrBadRevocation) {
			t.Errorf("Revoke(long reason) = %v", err)
		}
		if _, err := s.Reinstate(ctx, "nothex"); !errors.Is(err, refvalues.ErrBadDigest) {
			t.Errorf("Reinstate(bad digest) = %v", err)
		}
		if v := mustVersion(t, s); v != v0 {
			t.Errorf("version moved from %d to %d on refused input", v0, v)
		}
		if d := mustSnapshot(t, s).Digest(); d != d0 {
			t.Errorf("content changed on refused input")
		}
	})

	t.Run("VersionMovesOnChangesOnly", func(t *testing.T) {
		s := newStore(t)
		v0 := mustVersion(t, s)
		if err := s.Add(ctx, "k", D1); err != nil {
			t.Fatal(err)
		}
		v1 := mustVersion(t, s)
		if v1 == v0 {
			t.Fatal("version did not move on Add")
		}
		mustSnapshot(t, s)
		if _, err := s.ListRevoked(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(ctx, "k", D1); err != nil { // no change
			t.Fatal(err)
		}
		if v := mustVersion(t, s); v != v1 {
			t.Errorf("version moved on reads or a no-op Add: %d -> %d", v1, v)
		}
		if _, _, err := s.Revoke(ctx, refvalues.Revocation{Digest: D1, RevokedAt: at}); err != nil {
			t.Fatal(err)
		}
		v2 := mustVersion(t, s)
		if v2 == v1 {
			t.Error("version did not move on Revoke")
		}
		if _, _, err := s.Revoke(ctx, refvalues.Revocation{Digest: D1, RevokedAt: at.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if v := mustVersion(t, s); v != v2 {
			t.Error("version moved on a repeated Revoke")
		}
		if ok, err := s.Reinstate(ctx, D1); err != nil || !ok {
			t.Fatalf("Reinstate = %v, %v", ok, err)
		}
		if v := mustVersion(t, s); v == v2 {
			t.Error("version did not move on Reinstate")
		}
	})

	t.Run("RevokeKeepsFirstAndLists", func(t *testing.T) {
		s := newStore(t)
		if err := s.Add(ctx, "kernels", D1, D2); err != nil {
			t.Fatal(err)
		}
		r, created, err := s.Revoke(ctx, refvalues.Revocation{Digest: strings.ToUpper(D2), Reason: "CVE-2026-0001", RevokedAt: at})
		if err != nil || !created || r.Digest != D2 || r.Reason != "CVE-2026-0001" || !r.RevokedAt.Equal(at) {
			t.Fatalf("Revoke = %+v, %v, %v", r, created, err)
		}
		r2, created, err := s.Revoke(ctx, refvalues.Revocation{Digest: D2, Reason: "again", RevokedAt: at.Add(time.Hour)})
		if err != nil || created || r2.Reason != "CVE-2026-0001" || !r2.RevokedAt.Equal(at) {
			t.Fatalf("second Revoke = %+v, %v, %v; want the first kept", r2, created, err)
		}
		// A digest no set holds can be revoked too.
		if _, created, err := s.Revoke(ctx, refvalues.Revocation{Digest: D3, RevokedAt: at}); err != nil || !created {
			t.Fatalf("Revoke(unlisted) = %v, %v", created, err)
		}
		l, err := s.ListRevoked(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(l) != 2 || l[0].Digest != D2 || l[1].Digest != D3 {
			t.Fatalf("ListRevoked = %+v, want D2 then D3", l)
		}
		snap := mustSnapshot(t, s)
		if _, ok := snap.Revoked[D2]; !ok || len(snap.Revoked) != 2 {
			t.Errorf("snapshot revoked = %v", snap.Revoked)
		}
		if fmt.Sprint(snap.Sets["kernels"]) != fmt.Sprint([]string{D1, D2}) {
			t.Errorf("revoking removed values from the set: %v", snap.Sets["kernels"])
		}
		if ok, err := s.Reinstate(ctx, D2); err != nil || !ok {
			t.Fatalf("Reinstate = %v, %v", ok, err)
		}
		if ok, err := s.Reinstate(ctx, D2); err != nil || ok {
			t.Fatalf("second Reinstate = %v, %v; want false", ok, err)
		}
		if l, _ := s.ListRevoked(ctx); len(l) != 1 || l[0].Digest != D3 {
			t.Fatalf("ListRevoked after reinstate = %+v", l)
		}
	})

	t.Run("SnapshotDigest", func(t *testing.T) {
		a, b := newStore(t), newStore(t)
		if err := a.Add(ctx, "x", D1, D2); err != nil {
			t.Fatal(err)
		}
		if err := b.Add(ctx, "x", D2); err != nil {
			t.Fatal(err)
		}
		if mustSnapshot(t, a).Digest() == mustSnapshot(t, b).Digest() {
			t.Fatal("different content, same digest")
		}
		if err := b.Add(ctx, "x", D1); err != nil {
			t.Fatal(err)
		}
		if mustSnapshot(t, a).Digest() != mustSnapshot(t, b).Digest() {
			t.Fatal("same content, different digests")
		}
		if _, _, err := a.Revoke(ctx, refvalues.Revocation{Digest: D1, RevokedAt: at}); err != nil {
			t.Fatal(err)
		}
		if mustSnapshot(t, a).Digest() == mustSnapshot(t, b).Digest() {
			t.Fatal("a revocation did not change the digest")
		}
	})

	t.Run("ConcurrentRevokeOneWinner", func(t *testing.T) {
		s := newStore(t)
		const n = 32
		var wins atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, created, err := s.Revoke(ctx, refvalues.Revocation{Digest: D3, Reason: fmt.Sprint(i), RevokedAt: at})
				if err != nil {
					errs <- err
				}
				if created {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if wins.Load() != 1 {
			t.Fatalf("%d concurrent revokes created a revocation, want exactly 1", wins.Load())
		}
	})

	t.Run("ConcurrentAddsAllKept", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		digests := []string{D1, D2, D3, S1}
		for _, d := range digests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Add(ctx, "k", d); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if got := mustSnapshot(t, s).Sets["k"]; len(got) != len(digests) {
			t.Fatalf("after concurrent adds k = %v, want %d values", got, len(digests))
		}
	})
}

func mustSnapshot(t *testing.T, s refvalues.Store) *refvalues.Snapshot {
	t.Helper()
	snap, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func mustVersion(t *testing.T, s refvalues.Store) uint64 {
	t.Helper()
	v, err := s.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}
