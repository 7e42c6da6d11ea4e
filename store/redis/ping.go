package redisstore

import "context"

// Ping is the readiness check of the store, in one pipelined round trip bounded by ctx: it
// writes a short-lived key of this Store (SET PX 10 s) in each status shard's slot and in the
// AK records' slot, and checks the epoch markers and status counters (CheckEpoch). It returns
// nil when the server answers, accepts writes and has not lost data; an error wrapping
// store.ErrUnavailable otherwise: Redis down, a write refused (OOM under maxmemory with
// noeviction, a READONLY replica), or a data loss (then also ErrDataLoss). Readiness probes
// call it with a short timeout in ctx.
func (s *Store) Ping(ctx context.Context) error {
	return s.check(ctx, "ping", true)
}
