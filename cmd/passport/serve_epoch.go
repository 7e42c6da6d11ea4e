package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	redisstore "github.com/passport-attest/passport/store/redis"
)

// epochCheckInterval is how often serve compares Redis's epoch markers and status counters
// while idle (issuing a token and reading a status list compare their shard's on every call).
const epochCheckInterval = 2 * time.Second

// checkPersistence warns loudly about a Redis that does not write every acknowledged write to
// an append-only file (no persistence: a restart empties it; RDB snapshots only: a crash rolls
// it back to the last snapshot; either loses revocations, lets spent nonces be spent again and
// reuses status list indexes), or whose persistence cannot be read, and refuses it when require
// is set (--require-persistent-redis accepts appendonly yes only). With AOF it still warns when
// appendfsync is not always: a crash of the host, not of the Redis process, loses up to about a
// second of acknowledged writes. Warning is the default because the CLI contract runs serve on a
// Redis without persistence.
func checkPersistence(ctx context.Context, client redis.UniversalClient, require bool, log *slog.Logger) error {
	p, err := redisstore.CheckPersistence(ctx, client)
	switch {
	case err == nil:
		if !p.FsyncAlways() {
			log.Warn("Redis appendfsync is not always: a crash of the Redis host (not of the Redis process) loses the writes of up to the last second (everysec) or more (no): "+
				"spent nonces can be spent again, revocations and status list indexes lost. Set `appendfsync always` to close that window "+
				"(cost: passport loadtest --scenario redis-restart-always)",
				"persistence", p.String())
		}
		return nil
	case !require && errors.Is(err, redisstore.ErrVolatile):
		log.Warn("Redis has no persistence: if it restarts empty, revocations made before are lost; the issuer then detects the loss and refuses every request until it is restarted. "+
			"Enable appendonly yes (RDB save points alone also lose data: a crash rolls back to the last snapshot); --require-persistent-redis refuses to start instead",
			"persistence", p.String())
		return nil
	case !require && errors.Is(err, redisstore.ErrSnapshotOnly):
		log.Warn("Redis persists only RDB snapshots (appendonly no), which loses data: a crash or kill rolls it back to the last snapshot, undoing every write since: "+
			"revocations are undone, spent nonces are accepted again (a second token from the same evidence) and status list indexes are reused. "+
			"The epoch markers do not show such a rollback; a running issuer sees it only if its status counters go back. "+
			"Enable appendonly yes; --require-persistent-redis refuses to start instead",
			"persistence", p.String())
		return nil
	case !require && errors.Is(err, redisstore.ErrPersistenceUnknown):
		log.Warn("cannot read Redis persistence settings: if Redis keeps no append-only file, a restart or crash loses revocations and spent nonces. "+
			"Enable appendonly yes; --require-persistent-redis refuses to start instead",
			"err", err)
		return nil
	case errors.Is(err, redisstore.ErrVolatile):
		return fmt.Errorf("%w: a restart would empty it and silently un-revoke tokens; enable `appendonly yes` (--require-persistent-redis is set)", err)
	case errors.Is(err, redisstore.ErrSnapshotOnly):
		return fmt.Errorf("%w: a crash would undo revocations and let spent nonces be spent again; enable `appendonly yes` (--require-persistent-redis is set)", err)
	case errors.Is(err, redisstore.ErrPersistenceUnknown):
		return fmt.Errorf("%w: cannot tell whether Redis persists its data (--require-persistent-redis is set)", err)
	}
	return err
}

// armEpoch turns on the store's data-loss detection and watches it until ctx is done: on a
// loss the store fails every request (503, /readyz failing) and serve logs it at error level.
// When it had to create epoch markers it warns: that is a first start on this Redis, or a Redis
// that lost its data while no replica ran, and nothing the issuer stores tells the two apart.
func armEpoch(ctx context.Context, s *redisstore.Store, log *slog.Logger) error {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	armed, err := s.ArmEpoch(actx)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if armed.Created > 0 {
		log.Warn("created Redis epoch markers: this is either the FIRST START of an issuer on this Redis (expected once per deployment), "+
			"or Redis lost its data while no issuer replica was running (emptied by a restart without persistence, FLUSHALL, a lost volume or an old backup), "+
			"which would have undone revocations and let spent nonces and status list indexes be used again. "+
			"If issuers ran on this Redis before, check its logs and INFO persistence (rdb/aof loaded at start, uptime), "+
			"then restore it from a backup taken after the last revocation or re-issue the revocations (docs/DEPLOY.md, Redis)",
			"created", armed.Created, "markers", armed.Markers)
	}
	go s.WatchEpoch(ctx, epochCheckInterval, func(err error) { logDataLoss(log, err) })
	return nil
}

// logDataLoss is the operator's alarm: what happened and the two ways out.
func logDataLoss(log *slog.Logger, err error) {
	log.Error("REDIS LOST ITS DATA (emptied, or gone back in time to an older snapshot, AOF or replica): revocations (revoked tokens, reference values, pinned AKs) may have been lost, spent nonces revived and status list indexes would be reused; "+
		"the issuer refuses every challenge and attestation (503) and /readyz fails. Restore Redis from a backup taken after the last revocation, "+
		"or accept the loss and re-issue the revocations; then restart every issuer replica to acknowledge.",
		"err", err)
}
