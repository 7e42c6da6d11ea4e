package issuer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/passport-attest/passport/api"
)

// Body caps of the HTTP API: evidence carries an event log (real ones are 10-100 KB).
const (
	MaxAttestBody    = 5 << 20 // base64 of evidence.MaxAttestationSize plus JSON
	MaxChallengeBody = 1 << 10
)

// Handler returns the issuer's public HTTP API (DESIGN.md section 3): discovery, JWKS,
// challenge and attest. Every error answers JSON {error, error_description}.
func (is *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathDiscovery, is.handleDiscovery)
	mux.HandleFunc("GET "+api.PathJWKS, is.handleJWKS)
	mux.HandleFunc("POST "+api.PathChallenge, is.handleChallenge)
	mux.HandleFunc("POST "+api.PathAttest, is.handleAttest)
	mux.HandleFunc("POST "+api.PathAppraise, is.handleAppraise)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	is.enrollRoutes(mux)
	is.statusRoutes(mux)
	return mux
}

func (is *Issuer) handleDiscovery(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, is.Discovery())
}

func (is *Issuer) handleJWKS(w http.ResponseWriter, r *http.Request) {
	body, etag := is.cfg.Keyring.JWKSJSON()
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "public, max-age=300")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(body)
}

func (is *Issuer) handleChallenge(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxChallengeBody)
	if _, err := io.Copy(io.Discard, r.Body); err != nil { // the body carries nothing, but is capped
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			is.writeError(w, r, fmt.Errorf("%w: limit %d bytes", errTooLarge, int64(MaxChallengeBody)))
			return
		}
		is.writeError(w, r, fmt.Errorf("%w: body: %w", ErrBadRequest, err))
		return
	}
	res, err := is.Challenge(r.Context())
	if err != nil {
		is.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, res)
}

func (is *Issuer) handleAttest(w http.ResponseWriter, r *http.Request) {
	var req api.AttestRequest
	if err := decode(w, r, MaxAttestBody, &req); err != nil {
		is.outcome(err) // refused before Attest, which counts every other outcome
		is.writeError(w, r, err)
		return
	}
	res, err := is.Attest(r.Context(), &req)
	if err != nil {
		is.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, res)
}

// outcome tells Config.Outcome, when set, the result err of an attestation request.
func (is *Issuer) outcome(err error) {
	if is.cfg.Outcome != nil {
		is.cfg.Outcome(outcomeCode(err))
	}
}

// errTooLarge marks a body over its cap (413).
var errTooLarge = errors.New("issuer: request body too large")

func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	return decodeJSON(r.Body, limit, v)
}

// decodeJSON decodes one JSON object from body into v, refusing unknown fields and anything
// after the object; a body over limit (a *http.MaxBytesError) is errTooLarge.
func decodeJSON(body io.Reader, limit int64, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: limit %d bytes", errTooLarge, limit)
		}
		return fmt.Errorf("%w: JSON body: %w", ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: JSON body: data after the object", ErrBadRequest)
	}
	return nil
}

// RetryAfterUnavailable is the Retry-After (seconds, RFC 9110 section 10.2.3) of every 503
// temporarily_unavailable answer: long enough not to hammer a store that is down, short
// enough that attesters come back soon after it returns.
const RetryAfterUnavailable = "2"

// writeError renders err; server-side failures (5xx) are logged with their cause, which the
// response does not carry.
func (is *Issuer) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errTooLarge) {
		writeJSON(w, http.StatusRequestEntityTooLarge, &api.Error{Code: "request_too_large", Description: err.Error()})
		return
	}
	status, body := StatusOf(err)
	if status >= 500 {
		is.cfg.Log.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "status", status, "error", err.Error())
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", RetryAfterUnavailable)
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
