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
	// ErrPersistenceUnknown means CheckPersistence could not read appendonly or save although
	// the server answered (CONFIG not permitted, renamed or disabled). It wraps the server's
	// error, if any.
	ErrPersistenceUnknown = errors.New("redisstore: cannot read Redis persistence settings")
)

// CheckPersistence reads CONFIG GET appendonly and CONFIG GET save and describes the
// persistence ("appendonly yes", "save 3600 1 ...", or "none"). The error is nil when the
// server persists its data (AOF on, or at least one RDB save point); it wraps ErrVolatile
// when it does not, ErrPersistenceUnknown when CONFIG GET is refused, and store.ErrUnavailable
// on network failures. On a Cluster client every master is asked and the first failing one is
// reported.
func CheckPersistence(ctx context.Context, client redis.UniversalClient) (string, error) {
	cc, ok := client.(*redis.ClusterClient)
	if !ok {
		return readPersistence(ctx, client)
	}
	var (
		mu     sync.Mutex
		desc   string
		result error
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		d, err := readPersistence(ctx, c)
		mu.Lock()
		defer mu.Unlock()
		if err != nil && result == nil {
			desc, result = d, fmt.Errorf("redisstore: master %s: %w", c.Options().Addr, err)
		}
		if desc == "" {
			desc = d
		}
		return nil
	})
	if err != nil {
		return "", unavailable("check persistence", err)
	}
	return desc, result
}

// readPersistence asks one server.
func readPersistence(ctx context.Context, c redis.Cmdable) (string, error) {
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
	aof, err := get("appendonly")
	if err != nil {
		return "", err
	}
	if aof == "yes" {
		return "appendonly yes", nil
	}
	save, err := get("save")
	if err != nil {
		return "", err
	}
	if save != "" {
		return "save " + save, nil
	}
	return "none", fmt.Errorf("redisstore: appendonly is %q and save is empty: %w", aof, ErrVolatile)
}
