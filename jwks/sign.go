package jwks

import (
	"encoding/json"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// SignTyped is Sign with another JOSE typ header (RFC 7515 section 4.1.9), for the other JWTs
// the issuer signs with the same keys, such as Status List Tokens ("statuslist+jwt",
// draft-ietf-oauth-status-list section 5.1). The header holds alg, kid and typ only. It returns
// the compact JWS and the kid that signed it, or ErrNoKey.
func (r *Keyring) SignTyped(typ string, payload any) (string, string, error) {
	r.mu.RLock()
	k := r.active
	r.mu.RUnlock()
	if k == nil {
		return "", "", ErrNoKey
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader(jose.HeaderKey("kid"), k.kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.private}, opts)
	if err != nil {
		return "", "", fmt.Errorf("jwks: signer: %w", err)
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return "", "", fmt.Errorf("jwks: marshal claims: %w", err)
	}
	jws, err := signer.Sign(b)
	if err != nil {
		return "", "", fmt.Errorf("jwks: sign: %w", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		return "", "", fmt.Errorf("jwks: serialize: %w", err)
	}
	return s, k.kid, nil
}
