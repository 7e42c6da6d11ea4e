package redisstore

import "context"

// Ping sends PING and then checks the epoch markers (CheckEpoch), returning nil when the
// server answers and has not lost data, an error wrapping store.ErrUnavailable otherwise (and
// ErrDataLoss when the markers show a loss). Readiness probes call it with a short timeout in
// ctx.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.guard("ping"); err != nil {
		return err
	}
	if err := s.client.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return s.CheckEpoch(ctx)
}
