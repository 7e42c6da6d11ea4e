package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

var (
	// ErrVolatile means the server keeps its data only in memory (appendonly no and no save
	// points): a restart empties it, which silently un-revokes every revoked token and reuses
	// status list indexes. Returned, wrapped, by CheckPersistence.
	ErrVolatile = errors.New("redisstore: Redis has no persistence (appendonly no, save \"\")")
	// ErrSnapshotOnly means the server persists only RDB snapshots (save points, appendonly
	// no; Redis 7's default): a crash or a kill rolls it back to the last snapshot, minutes
	// old, which undoes every write acknowledged since (revocations are lost, spent nonces are
	// accepted again, status list indexes are handed out twice). The epoch markers, written
	// once at start, are in every later snapshot, so they do not show such a rollback.
	// Returned, wrapped, by CheckPersistence.
	ErrSnapshotOnly = errors.New("redisstore: Redis persists only RDB snapshots (appendonly no): a crash rolls it back to the last snapshot")
	// ErrPersistenceUnknown means CheckPersistence could not read appendonly, appendfsync or
	// save although the server answered (CONFIG not permitted, renamed or disabled). It wraps
	// the server's error, if any.
	ErrPersistenceUnknown = errors.New("redisstore: cannot read Redis persistence settings")
)

// Persistence is what CheckPersistence read from one server (CONFIG GET appendonly,
// appendfsync and save).
type Persistence struct {
	// AOF is appendonly yes: every write is appended to the AOF before it is acknowledged, so
	// a crash of the Redis process loses nothing acknowledged.
	AOF bool
	// Fsync is appendfsync ("always", "everysec" or "no"): how often the AOF reaches the disk.
	// Anything but "always" loses up to about a second of acknowledged writes on a crash of the
	// host (the operating system), not of the Redis process.
	Fsync string
	// Save is the RDB save points ("3600 1 300 100 ...", "" for none).
	Save string
}

// String describes p, e.g. "appendonly yes, appendfsync everysec, save \"\"".
func (p Persistence) String() string {
	aof := "no"
	if p.AOF {
		aof = "yes"
	}
	return fmt.Sprintf("appendonly %s, appendfsync %s, save %q", aof, p.Fsync, p.Save)
}

// FsyncAlways reports whether an acknowledged write survives a crash of the host too (AOF
// with appendfsync always).
func (p Persistence) FsyncAlways() bool { return p.AOF && p.Fsync == "always" }

// CheckPersistence reads CONFIG GET appendonly, appendfsync and save. The error is nil only
// when the server writes every acknowledged write to its AOF (appendonly yes; see
// Persistence.FsyncAlways for host crashes); it wraps ErrSnapshotOnly when the server has RDB
// save points but no AOF, ErrVolatile when it has neither, ErrPersistenceUnknown when CONFIG
// GET is refused, and store.ErrUnavailable on network failures. On a Cluster client every
// master is asked: the first failing one is reported, else one without appendfsync always,
// else any.
func CheckPersistence(ctx context.Context, client redis.UniversalClient) (Persistence, error) {
	cc, ok := client.(*redis.ClusterClient)
	if !ok {
		return readPersistence(ctx, client)
	}
	var (
		mu     sync.Mutex
		got    Persistence
		seen   bool
		result error
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		p, err := readPersistence(ctx, c)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case result != nil:
		case err != nil:
			got, result = p, fmt.Errorf("redisstore: master %s: %w", c.Options().Addr, err)
		case !seen || (got.FsyncAlways() && !p.FsyncAlways()):
			got = p
		}
		seen = true
		return nil
	})
	if err != nil {
		return Persistence{}, unavailable("check persistence", err)
	}
	return got, result
}

// readPersistence asks one server.
func readPersistence(ctx context.Context, c redis.Cmdable) (Persistence, error) {
	get := func(param string) (string, error) {
		m, err := c.ConfigGet(ctx, param).Result()
		if err != nil {
			var rerr redis.Error
			if errors.As(err, &rerr) {
				return "", fmt.Errorf("redisstore: CONFIG GET %s refused (CONFIG not permitted or renamed?): %w: %w",
					param, ErrPersistenceUnknown, err)
			}
			return "", unavailable("CONFIG GET "+param, err)
		}
		v, ok := m[param]
		if !ok {
			return "", fmt.Errorf("redisstore: CONFIG GET %s returned no value: %w", param, ErrPersistenceUnknown)
		}
		return v, nil
	}
	var p Persistence
	aof, err := get("appendonly")
	if err != nil {
		return p, err
	}
	p.AOF = aof == "yes"
	if p.Fsync, err = get("appendfsync"); err != nil {
		return p, err
	}
	if p.Save, err = get("save"); err != nil {
		return p, err
	}
	switch {
	case p.AOF:
		return p, nil
	case p.Save != "":
		return p, fmt.Errorf("redisstore: %s: %w", p, ErrSnapshotOnly)
	}
	return p, fmt.Errorf("redisstore: %s: %w", p, ErrVolatile)
}
