package relyingparty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/token"
)

// maxDiscoverySize bounds the discovery document read: 256 KiB.
const maxDiscoverySize = 256 << 10

// Discover fetches the issuer's discovery document, GET issuerURL (without a trailing slash) +
// "/.well-known/openid-configuration" (OpenID Connect Discovery 1.0 section 4, RFC 8414 section
// 3), with client (nil means a client with a 10 s timeout). The document's issuer must equal
// issuerURL exactly (RFC 8414 section 3.3) and jwks_uri must be set. Errors match ErrDiscovery;
// an issuer mismatch also matches token.ErrIssuer.
func Discover(ctx context.Context, issuerURL string, client *http.Client) (jwks.Discovery, error) {
	if client == nil {
		client = &http.Client{Timeout: DefaultFetchTimeout}
	}
	u := strings.TrimSuffix(issuerURL, "/") + api.PathDiscovery
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return jwks.Discovery{}, fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return jwks.Discovery{}, fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return jwks.Discovery{}, fmt.Errorf("%w: %s: HTTP status %d", ErrDiscovery, u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoverySize+1))
	if err != nil {
		return jwks.Discovery{}, fmt.Errorf("%w: %s: %w", ErrDiscovery, u, err)
	}
	if len(b) > maxDiscoverySize {
		return jwks.Discovery{}, fmt.Errorf("%w: %s: document exceeds %d bytes", ErrDiscovery, u, maxDiscoverySize)
	}
	var d jwks.Discovery
	if err := json.Unmarshal(b, &d); err != nil {
		return jwks.Discovery{}, fmt.Errorf("%w: %s: %w", ErrDiscovery, u, err)
	}
	if d.Issuer != issuerURL {
		return jwks.Discovery{}, fmt.Errorf("%w: %w: document names %q, expected %q", ErrDiscovery, token.ErrIssuer, d.Issuer, issuerURL)
	}
	if d.JWKSURI == "" {
		return jwks.Discovery{}, fmt.Errorf("%w: %s: %w", ErrDiscovery, u, errors.New("no jwks_uri"))
	}
	return d, nil
}
