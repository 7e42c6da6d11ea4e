package issuer

import (
	"context"
	"errors"
	"fmt"
)

// outcomeCode is the Config.Outcome code of an Attest result: "" on success, otherwise the
// api.Error code of StatusOf.
func outcomeCode(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, errTooLarge) {
		return "request_too_large"
	}
	_, body := StatusOf(err)
	return body.Code
}

// Pinger is implemented by stores that can tell whether their backend answers and accepts
// writes (the Redis store writes a short-lived probe key and checks for a data loss); stores
// without it (memory) are always reachable.
type Pinger interface {
	Ping(ctx context.Context) error
}

// CheckStore reports whether the nonce store answers and accepts writes within ctx (Pinger):
// an issuer whose store is down, refuses writes (a full or read-only Redis) or lost its data
// is not ready (it refuses every challenge with 503).
func (is *Issuer) CheckStore(ctx context.Context) error {
	if p, ok := is.cfg.Nonces.(Pinger); ok {
		if err := p.Ping(ctx); err != nil {
			return fmt.Errorf("issuer: nonce store: %w", err)
		}
	}
	return nil
}

// readinessProbe is the payload CheckSigningKey signs: no claims a relying party would accept.
var readinessProbe = map[string]string{"probe": "passport readiness"}

// CheckSigningKey reports whether the keyring has an active key that signs: it signs a probe
// payload (about 30 µs with ES256) and discards the signature.
func (is *Issuer) CheckSigningKey(context.Context) error {
	if _, _, err := is.cfg.Keyring.Sign(readinessProbe); err != nil {
		return fmt.Errorf("issuer: signing key: %w", err)
	}
	return nil
}
