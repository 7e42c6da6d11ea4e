// Package redisrefs is the Redis backend of refvalues.Store, on a go-redis v9
// UniversalClient (one server, Sentinel or Cluster), so that every issuer replica sharing one
// Redis deployment accepts the same reference values and refuses the same revoked ones. It
// passes the same conformance suite (refvaluestest) as the memory and file backends.
//
// Keys, where <prefix> is the string given to New:
//
//	<prefix>:{refvalues}:sets         set: the names of the reference-value sets
//	<prefix>:{refvalues}:set:<name>   set: the lowercase hex digests of one set
//	<prefix>:{refvalues}:revoked      hash: digest -> JSON refvalues.Revocation
//	<prefix>:{refvalues}:version      integer incremented by every change (INCR)
//
// The {refvalues} hash tag keeps every key in one Cluster slot, so each change is one Lua
// script that updates the data and the version atomically. Keys have no TTL: reference values
// and revocations are configuration, kept until an operator removes them (the server must run
// with maxmemory-policy noeviction). Every Redis or network failure, and every malformed stored
// record, is returned wrapping refvalues.ErrUnavailable (fail closed).
package redisrefs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/refvalues"
)

// Store is the Redis refvalues.Store. It holds only the client and prefix and is safe for
// concurrent use.
type Store struct {
	client redis.UniversalClient
	prefix string
}

var _ refvalues.Store = (*Store)(nil)

// New returns a Store keeping its keys under prefix (see the package documentation). Closing
// the client is the caller's job.
func New(client redis.UniversalClient, prefix string) *Store {
	if prefix != "" {
		prefix += ":"
	}
	return &Store{client: client, prefix: prefix + "{refvalues}:"}
}

func (s *Store) key(k string) string { return s.prefix + k }

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: redisrefs: %s: %w", refvalues.ErrUnavailable, op, err)
}

// addScript: KEYS = sets, set:<name>, version; ARGV = name, digests... Returns the number of
// new members (name and digests); the version moves only when something changed.
var addScript = redis.NewScript(`
local n = redis.call('SADD', KEYS[1], ARGV[1])
for i = 2, #ARGV do n = n + redis.call('SADD', KEYS[2], ARGV[i]) end
if n > 0 then redis.call('INCR', KEYS[3]) end
return n`)

// revokeScript: KEYS = revoked, version; ARGV = digest, JSON revocation. Returns {created,
// stored JSON}.
var revokeScript = redis.NewScript(`
local c = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if c == 1 then redis.call('INCR', KEYS[2]) end
return {c, redis.call('HGET', KEYS[1], ARGV[1])}`)

// reinstateScript: KEYS = revoked, version; ARGV = digest. Returns 1 when a revocation was
// removed.
var reinstateScript = redis.NewScript(`
local c = redis.call('HDEL', KEYS[1], ARGV[1])
if c == 1 then redis.call('INCR', KEYS[2]) end
return c`)

// Version implements refvalues.Store: the INCR counter (0 before the first change).
func (s *Store) Version(ctx context.Context) (uint64, error) {
	v, err := s.client.Get(ctx, s.key("version")).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable("version", err)
	}
	return v, nil
}

// Add implements refvalues.Store.
func (s *Store) Add(ctx context.Context, set string, digests ...string) error {
	if err := refvalues.CheckSetName(set); err != nil {
		return err
	}
	norm, err := refvalues.NormalizeAll(digests)
	if err != nil {
		return err
	}
	args := make([]any, 0, len(norm)+1)
	args = append(args, set)
	for _, d := range norm {
		args = append(args, d)
	}
	keys := []string{s.key("sets"), s.key("set:" + set), s.key("version")}
	if err := addScript.Run(ctx, s.client, keys, args...).Err(); err != nil {
		return unavailable("add", err)
	}
	return nil
}

// Revoke implements refvalues.Store.
func (s *Store) Revoke(ctx context.Context, r refvalues.Revocation) (refvalues.Revocation, bool, error) {
	r, err := refvalues.CheckRevocation(r)
	if err != nil {
		return refvalues.Revocation{}, false, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return refvalues.Revocation{}, false, fmt.Errorf("redisrefs: encode: %w", err)
	}
	res, err := revokeScript.Run(ctx, s.client, []string{s.key("revoked"), s.key("version")}, r.Digest, string(b)).Slice()
	if err != nil {
		return refvalues.Revocation{}, false, unavailable("revoke", err)
	}
	if len(res) != 2 {
		return refvalues.Revocation{}, false, unavailable("revoke", fmt.Errorf("script returned %d values", len(res)))
	}
	created, _ := res[0].(int64)
	raw, _ := res[1].(string)
	stored, err := decodeRevocation(r.Digest, raw)
	if err != nil {
		return refvalues.Revocation{}, false, err
	}
	return stored, created == 1, nil
}

// Reinstate implements refvalues.Store.
func (s *Store) Reinstate(ctx context.Context, digest string) (bool, error) {
	d, err := refvalues.NormalizeDigest(digest)
	if err != nil {
		return false, err
	}
	n, err := reinstateScript.Run(ctx, s.client, []string{s.key("revoked"), s.key("version")}, d).Int()
	if err != nil {
		return false, unavailable("reinstate", err)
	}
	return n == 1, nil
}

// ListRevoked implements refvalues.Store.
func (s *Store) ListRevoked(ctx context.Context) ([]refvalues.Revocation, error) {
	m, err := s.revoked(ctx)
	if err != nil {
		return nil, err
	}
	snap := refvalues.Snapshot{Revoked: m}
	return snap.RevokedList(), nil
}

func (s *Store) revoked(ctx context.Context) (map[string]refvalues.Revocation, error) {
	h, err := s.client.HGetAll(ctx, s.key("revoked")).Result()
	if err != nil {
		return nil, unavailable("list revoked", err)
	}
	out := make(map[string]refvalues.Revocation, len(h))
	for d, raw := range h {
		r, err := decodeRevocation(d, raw)
		if err != nil {
			return nil, err
		}
		out[r.Digest] = r
	}
	return out, nil
}

func decodeRevocation(digest, raw string) (refvalues.Revocation, error) {
	var r refvalues.Revocation
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return refvalues.Revocation{}, unavailable("decode revocation", err)
	}
	r, err := refvalues.CheckRevocation(r)
	if err != nil || r.Digest != digest {
		return refvalues.Revocation{}, unavailable("decode revocation", fmt.Errorf("malformed record for %q: %v", digest, err))
	}
	return r, nil
}

// maxSnapshotTries bounds the retries of Snapshot when changes race with it.
const maxSnapshotTries = 5

// Snapshot implements refvalues.Store. It reads the version before and after the data and
// retries (up to 5 times) when a change raced with the read, so the snapshot is consistent.
func (s *Store) Snapshot(ctx context.Context) (*refvalues.Snapshot, error) {
	for range maxSnapshotTries {
		v0, err := s.Version(ctx)
		if err != nil {
			return nil, err
		}
		snap, err := s.read(ctx)
		if err != nil {
			return nil, err
		}
		v1, err := s.Version(ctx)
		if err != nil {
			return nil, err
		}
		if v0 == v1 {
			return snap, nil
		}
	}
	return nil, unavailable("snapshot", errors.New("reference values kept changing during "+strconv.Itoa(maxSnapshotTries)+" reads"))
}

func (s *Store) read(ctx context.Context) (*refvalues.Snapshot, error) {
	names, err := s.client.SMembers(ctx, s.key("sets")).Result()
	if err != nil {
		return nil, unavailable("list sets", err)
	}
	slices.Sort(names)
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(names))
	for i, n := range names {
		if err := refvalues.CheckSetName(n); err != nil {
			return nil, unavailable("list sets", err)
		}
		cmds[i] = pipe.SMembers(ctx, s.key("set:"+n))
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, unavailable("read sets", err)
		}
	}
	snap := &refvalues.Snapshot{Sets: make(map[string][]string, len(names))}
	for i, n := range names {
		vals, err := refvalues.NormalizeAll(cmds[i].Val())
		if err != nil {
			return nil, unavailable("read set "+n, err)
		}
		slices.Sort(vals)
		snap.Sets[n] = vals
	}
	if snap.Revoked, err = s.revoked(ctx); err != nil {
		return nil, err
	}
	return snap, nil
}
