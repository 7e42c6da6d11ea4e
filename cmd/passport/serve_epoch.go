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

// epochCheckInterval is how often serve compares Redis's epoch markers while idle (issuing a
// token and reading a status list compare their shard's marker on every call).
const epochCheckInterval = 2 * time.Second

// checkPersistence warns loudly about a Redis that keeps its data only in memory, or whose
// persistence cannot be read (a restart of such a server would silently un-revoke tokens; the
// run-time epoch check then fails every request closed), and refuses it when require is set
// (--require-persistent-redis). Warning is the default because the CLI contract runs serve on
// a Redis without persistence.
func checkPersistence(ctx context.Context, client redis.UniversalClient, require bool, log *slog.Logger) error {
	desc, err := redisstore.CheckPersistence(ctx, client)
	switch {
	case err == nil:
		return nil
	case !require && (errors.Is(err, redisstore.ErrVolatile) || errors.Is(err, redisstore.ErrPersistenceUnknown)):
		log.Warn("Redis has no persistence: if it restarts empty, revocations made before are lost; the issuer then detects the loss and refuses every request until it is restarted. Enable appendonly yes (or save points); --require-persistent-redis refuses to start instead",
			"persistence", desc)
		return nil
	case errors.Is(err, redisstore.ErrVolatile):
		return fmt.Errorf("%w: a restart would empty it and silently un-revoke tokens; enable `appendonly yes` (--require-persistent-redis is set)", err)
	case errors.Is(err, redisstore.ErrPersistenceUnknown):
		return fmt.Errorf("%w: cannot tell whether Redis persists its data (--require-persistent-redis is set)", err)
	}
	return err
}

// armEpoch turns on the store's data-loss detection and watches it until ctx is done: on a
// loss the store fails every request (503, /readyz failing) and serve logs it at error level.
func armEpoch(ctx context.Context, s *redisstore.Store, log *slog.Logger) error {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.ArmEpoch(actx); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	go s.WatchEpoch(ctx, epochCheckInterval, func(err error) { logDataLoss(log, err) })
	return nil
}

// logDataLoss is the operator's alarm: what happened and the two ways out.
func logDataLoss(log *slog.Logger, err error) {
	log.Error("REDIS LOST ITS DATA: revocations (revoked tokens, reference values, pinned AKs) may have been lost and status list indexes would be reused; "+
		"the issuer refuses every challenge and attestation (503) and /readyz fails. Restore Redis from a backup taken after the last revocation, "+
		"or accept the loss and re-issue the revocations; then restart every issuer replica to acknowledge.",
		"err", err)
}
