package attester

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/dpop"
)

// EvidenceTransport is an http.RoundTripper for relying parties that check evidence
// themselves (the background-check model, RFC 9334 section 5.2; docs/BACKGROUND_CHECK.md).
// When a response is 401 with a challenge nonce in the api.HeaderNonce header, it quotes over
// that nonce with Attester (Attester.EvidenceFor: extraData binds the nonce, the cnf key and
// the origin of the request's URL, so the relying party cannot have it appraised for another
// relying party) and repeats the request once, with the evidence in api.HeaderEvidence (base64url of the JSON
// api.AttestRequest) and a DPoP proof (RFC 9449) signed by the cnf key over the request, so
// the evidence cannot be presented by anyone else. Other responses pass through unchanged.
//
// A request with a body is repeated only if it has GetBody (http.NewRequest sets it for
// in-memory bodies); otherwise the 401 is returned. The nonce is checked for length only: it
// is the issuer's to judge.
type EvidenceTransport struct {
	// Base performs the requests (default http.DefaultTransport).
	Base http.RoundTripper
	// Attester quotes over the nonce and holds the cnf key; required.
	Attester *Attester
	// Now is the clock for the proofs' iat (default time.Now).
	Now func() time.Time
}

// RoundTrip sends req and answers an evidence challenge once.
func (t *EvidenceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Attester == nil {
		return nil, errors.New("attester: EvidenceTransport needs an Attester")
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(api.HeaderNonce) == "" {
		return resp, err
	}
	nonce, err := api.DecodeNonce(resp.Header.Get(api.HeaderNonce))
	if err != nil || len(nonce) != api.NonceSize {
		return resp, nil // not a challenge we can answer: let the caller see the 401
	}
	// The evidence binds the origin of the URL this transport reached (never one the relying
	// party names), so that relying party cannot have it appraised for another.
	origin, err := api.Origin(req.URL.String())
	if err != nil {
		return resp, nil
	}
	// A Host header naming another host (through a forward proxy or a Host-routed front end
	// the request goes there) would bind an origin other than the one answering.
	if req.Host != "" {
		if o, err := api.Origin(req.URL.Scheme + "://" + req.Host); err != nil || o != origin {
			return resp, nil
		}
	}
	var body io.ReadCloser
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return resp, nil
		}
		if body, err = req.GetBody(); err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("attester: rewind the request body: %w", err)
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()

	ev, err := t.Attester.EvidenceFor(nonce, origin)
	if err != nil {
		return nil, err
	}
	evJSON, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("attester: encode evidence: %w", err)
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	proof, err := dpop.NewProof(t.Attester.CNFPrivate(), req.Method, req.URL, "", now())
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	if body != nil {
		r.Body = body
	}
	r.Header.Set(api.HeaderEvidence, base64.RawURLEncoding.EncodeToString(evJSON))
	r.Header.Set(dpop.HeaderName, proof)
	return base.RoundTrip(r)
}
