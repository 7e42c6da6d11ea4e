package redisstore

import "context"

// Ping sends PING and returns nil when the server answers, or an error wrapping
// store.ErrUnavailable. Readiness probes call it with a short timeout in ctx.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}
