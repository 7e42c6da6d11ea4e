package attester

import (
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/passport-attest/passport/dpop"
)

// DPoPTransport is an http.RoundTripper that presents a passport token with proof of
// possession: every request gets "Authorization: DPoP <token>" and a fresh DPoP proof (RFC 9449
// sections 4 and 7.1) signed with the token's cnf key, so the token is useless to anyone who
// captures it without the key.
type DPoPTransport struct {
	// Base performs the requests (default http.DefaultTransport).
	Base http.RoundTripper
	// Token returns the current token (it may refresh it); required.
	Token func() (string, error)
	// Key is the private half of the token's cnf key; required.
	Key crypto.Signer
	// Now is the clock for the proofs' iat (default time.Now).
	Now func() time.Time
}

// RoundTrip clones req, adds the token and a proof over its method and URL, and sends it.
func (t *DPoPTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Token == nil || t.Key == nil {
		return nil, errors.New("attester: DPoPTransport needs Token and Key")
	}
	tok, err := t.Token()
	if err != nil {
		return nil, fmt.Errorf("attester: token: %w", err)
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	proof, err := dpop.NewProof(t.Key, req.Method, req.URL, tok, now())
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", dpop.Scheme+" "+tok)
	r.Header.Set(dpop.HeaderName, proof)
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// StaticToken returns a Token func for a fixed token.
func StaticToken(tok string) func() (string, error) {
	return func() (string, error) { return tok, nil }
}
