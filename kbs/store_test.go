package kbs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/passport-attest/passport/internal/testredis"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/kbs"
)

// backends returns a constructor of every Store implementation.
func backends() map[string]func(t *testing.T) kbs.Store {
	return map[string]func(t *testing.T) kbs.Store{
		"dir": func(t *testing.T) kbs.Store {
			s, err := kbs.NewDirStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"redis": func(t *testing.T) kbs.Store {
			s, _, _ := redisStore(t)
			return s
		},
	}
}

// TestStoreConformance runs one suite against every backend.
func TestStoreConformance(t *testing.T) {
	for name, mk := range backends() {
		t.Run(name, func(t *testing.T) { storeSuite(t, mk) })
	}
}

func storeSuite(t *testing.T, mk func(t *testing.T) kbs.Store) {
	ctx := context.Background()
	id := api.ResourceID{Repository: "default", Type: "key", Tag: "disk"}
	t.Run("missing is ErrNotFound", func(t *testing.T) {
		s := mk(t)
		if _, err := s.Get(ctx, id); !errors.Is(err, kbs.ErrNotFound) {
			t.Fatalf("Get: %v", err)
		}
		if err := s.Delete(ctx, id); !errors.Is(err, kbs.ErrNotFound) {
			t.Fatalf("Delete: %v", err)
		}
	})
	t.Run("round trip of binary data", func(t *testing.T) {
		s := mk(t)
		secret := []byte{0, 1, 2, 0, 255, '\n', 0}
		if err := s.Put(ctx, id, secret); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, id)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Get: %x %v", got, err)
		}
		got[0] = 9 // the caller's copy
		if again, _ := s.Get(ctx, id); !bytes.Equal(again, secret) {
			t.Fatal("Get returned shared memory")
		}
	})
	t.Run("overwrite, then delete", func(t *testing.T) {
		s := mk(t)
		for _, v := range []string{"one", "two"} {
			if err := s.Put(ctx, id, []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := s.Get(ctx, id); string(got) != "two" {
			t.Fatalf("after overwrite: %q", got)
		}
		if err := s.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, kbs.ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
	})
	t.Run("names are distinct", func(t *testing.T) {
		s := mk(t)
		ids := []api.ResourceID{
			{Repository: "a", Type: "b", Tag: "c"}, {Repository: "a", Type: "b", Tag: "cd"},
			{Repository: "a", Type: "bc", Tag: "d"}, {Repository: "ab", Type: "c", Tag: "d"},
		}
		for _, x := range ids {
			if err := s.Put(ctx, x, []byte(x.String())); err != nil {
				t.Fatal(err)
			}
		}
		for _, x := range ids {
			if got, err := s.Get(ctx, x); err != nil || string(got) != x.String() {
				t.Fatalf("%s: %q %v", x, got, err)
			}
		}
	})
	t.Run("size limits", func(t *testing.T) {
		s := mk(t)
		max := bytes.Repeat([]byte{7}, kbs.MaxSecretSize)
		if err := s.Put(ctx, id, max); err != nil {
			t.Fatalf("MaxSecretSize bytes: %v", err)
		}
		if err := s.Put(ctx, id, append(max, 7)); !errors.Is(err, kbs.ErrTooLarge) {
			t.Fatalf("one byte more: %v", err)
		}
		if got, _ := s.Get(ctx, id); len(got) != kbs.MaxSecretSize {
			t.Fatal("a refused Put changed the stored secret")
		}
		other := api.ResourceID{Repository: "default", Type: "key", Tag: "empty"}
		if err := s.Put(ctx, other, nil); err == nil {
			t.Fatal("an empty secret was stored")
		}
		if _, err := s.Get(ctx, other); !errors.Is(err, kbs.ErrNotFound) {
			t.Fatalf("after a refused Put: %v", err)
		}
	})
	t.Run("invalid names refused before I/O", func(t *testing.T) {
		s := mk(t)
		for _, bad := range []api.ResourceID{{}, {Repository: "..", Type: "key", Tag: "disk"}, {Repository: "a/b", Type: "c", Tag: "d"}} {
			if err := s.Put(ctx, bad, []byte("x")); !errors.Is(err, api.ErrResourceName) {
				t.Errorf("Put %q: %v", bad, err)
			}
			if _, err := s.Get(ctx, bad); !errors.Is(err, api.ErrResourceName) {
				t.Errorf("Get %q: %v", bad, err)
			}
			if err := s.Delete(ctx, bad); !errors.Is(err, api.ErrResourceName) {
				t.Errorf("Delete %q: %v", bad, err)
			}
		}
	})
	t.Run("concurrent writers and readers see whole values", func(t *testing.T) {
		s := mk(t)
		a, b := bytes.Repeat([]byte{'a'}, 4096), bytes.Repeat([]byte{'b'}, 4096)
		if err := s.Put(ctx, id, a); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errc := make(chan error, 100)
		for i := range 50 {
			wg.Add(2)
			go func() {
				defer wg.Done()
				v := a
				if i%2 == 1 {
					v = b
				}
				if err := s.Put(ctx, id, v); err != nil {
					errc <- err
				}
			}()
			go func() {
				defer wg.Done()
				got, err := s.Get(ctx, id)
				if err != nil {
					errc <- err
					return
				}
				if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
					errc <- fmt.Errorf("torn read of %d bytes", len(got))
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
	})
}

// TestDirStoreFiles: files are 0600 in 0700 directories, hand-written files are served, and
// nothing outside the directory is reachable, not even through a symbolic link.
func TestDirStoreFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := kbs.NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := api.ResourceID{Repository: "default", Type: "key", Tag: "disk"}
	if err := s.Put(ctx, id, []byte("k")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "default", "key", "disk"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Join(dir, "default", "key")); di.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v", di.Mode())
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "default", "key"))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}

	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "passwd"), filepath.Join(dir, "default", "key", "link")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, api.ResourceID{Repository: "default", Type: "key", Tag: "link"}); err == nil {
		t.Fatalf("a link out of the directory was followed: %q", got)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, api.ResourceID{Repository: "escape", Type: "x", Tag: "y"}, []byte("z")); err == nil {
		t.Fatal("Put wrote through a link out of the directory")
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
		t.Fatal("a file was created outside the directory")
	}
	// A directory where a secret would be is not a secret.
	if err := os.MkdirAll(filepath.Join(dir, "default", "key", "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, api.ResourceID{Repository: "default", Type: "key", Tag: "adir"}); !errors.Is(err, kbs.ErrNotFound) {
		t.Fatalf("directory: %v", err)
	}
	// An oversized hand-written file is refused, not truncated.
	if err := os.WriteFile(filepath.Join(dir, "default", "key", "big"), make([]byte, kbs.MaxSecretSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, api.ResourceID{Repository: "default", Type: "key", Tag: "big"}); !errors.Is(err, kbs.ErrTooLarge) {
		t.Fatalf("oversized file: %v", err)
	}
	if _, err := kbs.NewDirStore(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("NewDirStore accepted a missing directory")
	}
}

// TestRedisStoreEncrypts: Redis never sees the plaintext; a value altered, moved to another
// name or read under another KEK is ErrCorrupt, never released.
func TestRedisStoreEncrypts(t *testing.T) {
	ctx := context.Background()
	s, client, prefix := redisStore(t)
	id := api.ResourceID{Repository: "default", Type: "key", Tag: "disk"}
	other := api.ResourceID{Repository: "default", Type: "key", Tag: "other"}
	secret := []byte("a very recognisable secret value")
	if err := s.Put(ctx, id, secret); err != nil {
		t.Fatal(err)
	}
	raw, err := client.Get(ctx, prefix+":secret:"+id.String()).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, secret) || bytes.Contains(raw, []byte("recognisable")) {
		t.Fatal("the secret is stored in plaintext")
	}

	// Moved to another name.
	if err := client.Set(ctx, prefix+":secret:"+other.String(), raw, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, other); !errors.Is(err, kbs.ErrCorrupt) {
		t.Fatalf("moved value: %v", err)
	}
	// Altered.
	for _, i := range []int{0, 5, len(raw) - 1} {
		bad := bytes.Clone(raw)
		bad[i] ^= 1
		if err := client.Set(ctx, prefix+":secret:"+other.String(), bad, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, other); !errors.Is(err, kbs.ErrCorrupt) {
			t.Fatalf("byte %d altered: %v", i, err)
		}
	}
	// Truncated.
	if err := client.Set(ctx, prefix+":secret:"+other.String(), raw[:10], 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, other); !errors.Is(err, kbs.ErrCorrupt) {
		t.Fatalf("truncated value: %v", err)
	}
	// Another KEK.
	kek2 := make([]byte, kbs.KEKSize)
	_, _ = rand.Read(kek2)
	s2, err := kbs.NewRedisStore(client, prefix, kek2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get(ctx, id); !errors.Is(err, kbs.ErrCorrupt) {
		t.Fatalf("another KEK: %v", err)
	}
	if got, err := s.Get(ctx, id); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the original is intact: %v", err)
	}
}

// TestRedisStoreUnavailable: a Redis that does not answer is ErrUnavailable, not "not found".
func TestRedisStoreUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer client.Close()
	s, err := kbs.NewRedisStore(client, "x", make([]byte, kbs.KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	id := api.ResourceID{Repository: "default", Type: "key", Tag: "disk"}
	if _, err := s.Get(context.Background(), id); !errors.Is(err, kbs.ErrUnavailable) {
		t.Fatalf("Get: %v", err)
	}
	if err := s.Put(context.Background(), id, []byte("x")); !errors.Is(err, kbs.ErrUnavailable) {
		t.Fatalf("Put: %v", err)
	}
}

// TestLoadKEK: raw, hex and base64 forms load; anything else is refused without echoing it.
func TestLoadKEK(t *testing.T) {
	dir := t.TempDir()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, b := range map[string][]byte{
		"raw": k, "hex": []byte(hex.EncodeToString(k) + "\n"),
		"base64": []byte(b64std(k) + "\n"),
	} {
		got, err := kbs.LoadKEK(write(name, b))
		if err != nil || !bytes.Equal(got, k) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, b := range map[string][]byte{
		"short": k[:16], "long": append(bytes.Clone(k), 1), "hex of 16": []byte(hex.EncodeToString(k[:16])),
		"text": []byte("correct horse battery staple, not a key"),
	} {
		_, err := kbs.LoadKEK(write(name, b))
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if bytes.Contains([]byte(err.Error()), []byte("horse")) {
			t.Errorf("%s: error echoes the file", name)
		}
	}
	if _, err := kbs.NewRedisStore(redis.NewClient(&redis.Options{}), "p", k[:16]); err == nil {
		t.Fatal("NewRedisStore accepted a 16-byte KEK")
	}
}

// redisStore is a kbs.RedisStore on the shared test Redis (testredis.Redis: a random key
// prefix deleted at the end; the test fails when Redis does not answer) with a random KEK.
func redisStore(t testing.TB) (*kbs.RedisStore, *redis.Client, string) {
	t.Helper()
	client, prefix := testredis.Redis(t)
	kek := make([]byte, kbs.KEKSize)
	_, _ = rand.Read(kek)
	s, err := kbs.NewRedisStore(client, prefix, kek)
	if err != nil {
		t.Fatal(err)
	}
	return s, client, prefix
}
