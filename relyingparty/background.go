package relyingparty

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/dpop"
)

// MaxEvidenceHeader bounds the Attestation-Evidence request header Middleware reads: 1 MiB of
// base64url, enough for an event log of several hundred KiB. The server's
// http.Server.MaxHeaderBytes (1 MiB by default) must allow it, and so must any proxy.
const MaxEvidenceHeader = 1 << 20

// maxIssuerResponse caps the issuer answers the background check reads: 1 MiB.
const maxIssuerResponse = 1 << 20

// Errors of the background-check fallback.
var (
	// ErrEvidenceRequired: the route needs fresh evidence and the request brought none; the
	// answer is a 401 carrying a challenge nonce (see BackgroundCheck).
	ErrEvidenceRequired = errors.New("relyingparty: fresh evidence required")
	// ErrEvidence: the Attestation-Evidence header is not one base64url JSON AttestRequest
	// with a nonce, an attestation and a public cnf key. Answered 400 invalid_request.
	ErrEvidence = errors.New("relyingparty: malformed evidence")
	// ErrEvidenceOrigin: the evidence does not bind this relying party's origin (the origin of
	// WithExternalURL; api.AttestRequest's Origin and api.ExtraDataFor), so the issuer would not
	// appraise it for this relying party. Middleware answers 400 invalid_request.
	ErrEvidenceOrigin = errors.New("relyingparty: evidence not made for this relying party's origin")
	// ErrIssuerUnavailable: the issuer could not be reached or answered 5xx. Answered 503.
	ErrIssuerUnavailable = errors.New("relyingparty: issuer unavailable for the background check")
	// ErrResultMismatch: the issuer's result does not answer the forwarded evidence: another
	// eat_nonce or another cnf key. Answered 502; never accepted.
	ErrResultMismatch = errors.New("relyingparty: attestation result does not match the evidence")
)

// IssuerError is the issuer's refusal of a background-check request (a 4xx answer).
type IssuerError struct {
	// Status is the issuer's HTTP status: 403 evidence refused, 409 nonce reused or expired,
	// 400 malformed evidence or an audience the issuer does not serve.
	Status int
	// Err is the issuer's error body.
	Err api.Error
}

// Error reports the issuer's status and error code.
func (e *IssuerError) Error() string {
	return fmt.Sprintf("relyingparty: issuer refused the evidence: %d %s", e.Status, e.Err.Code)
}

// BackgroundCheck is a relying party's client of the issuer for the background-check model
// (RFC 9334 section 5.2), used by Middleware when a request brings no token
// (WithBackgroundCheck) or when a route demands fresh evidence (RequireFreshEvidence).
//
// The exchange (docs/BACKGROUND_CHECK.md):
//
//  1. a request that needs evidence is answered 401 with a fresh nonce from the issuer's
//     POST /v1/challenge, in the api.HeaderNonce header and in a WWW-Authenticate challenge
//     `Attestation realm="passport", nonce="..."`;
//  2. the attester quotes over that nonce, its cnf key and the origin of the URL it called
//     (attester.Attester.EvidenceFor, api.ExtraDataFor) and repeats the request with the evidence in api.HeaderEvidence and a DPoP proof signed by
//     the evidence's cnf key over the request (no ath) — or over TLS with a client
//     certificate for that key (attester.EvidenceTransport does this);
//  3. Middleware checks the proof against its own public URL (WithExternalURL, required),
//     refuses evidence bound to another origin than that URL's (ErrEvidenceOrigin), forwards
//     the evidence to the issuer's POST /v1/appraise naming the Verifier's
//     audience, verifies the returned attestation result with the Verifier (signature, iss,
//     aud, exp, status, claim requirements), requires its eat_nonce to be the evidence's
//     nonce and its cnf to be the evidence's key, only then remembers the proof's jti, and
//     serves the request with the result's claims. The result is not cached and not returned
//     to the attester.
type BackgroundCheck struct {
	// IssuerURL is the issuer's base URL (no trailing slash); the challenge and appraisal
	// endpoints are api.PathChallenge and api.PathAppraise under it.
	IssuerURL string
	// HTTP sends the requests; nil means a client with DefaultFetchTimeout.
	HTTP *http.Client
}

// WithBackgroundCheck makes a request without a token fall back to the background check with
// bc instead of being refused. The middleware must also have WithExternalURL, the URL the
// evidence's DPoP proof must name, and the Verifier's audience must be a URL of that URL's
// origin (api.Origin), the origin attesters bind into their evidence and the only one the
// issuer mints results for; otherwise every request is refused with 500 (fail closed,
// ErrNoExternalURL or ErrConfig, logged).
func WithBackgroundCheck(bc *BackgroundCheck) MiddlewareOption {
	return func(m *middleware) { m.bg = bc }
}

// RequireFreshEvidence makes the route demand fresh evidence on every request, checked with
// bc: tokens are not accepted, however valid. Like WithBackgroundCheck, it needs
// WithExternalURL.
func RequireFreshEvidence(bc *BackgroundCheck) MiddlewareOption {
	return func(m *middleware) { m.bg, m.fresh = bc, true }
}

// bringsEvidence reports whether the request goes straight to the background check: the
// route demands fresh evidence, or the request carries evidence.
func (m *middleware) bringsEvidence(r *http.Request) bool {
	return m.bg != nil && (m.fresh || len(r.Header.Values(api.HeaderEvidence)) > 0)
}

// serveEvidence answers with a challenge, or checks the evidence the request carries and
// serves it with the attestation result's claims.
func (m *middleware) serveEvidence(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if len(r.Header.Values(api.HeaderEvidence)) == 0 {
		m.challenge(w, r)
		return
	}
	ev, err := parseEvidence(r.Header.Values(api.HeaderEvidence))
	if err != nil {
		m.onError(w, r, err)
		return
	}
	proof, err := m.evidencePoP(r, ev)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	if ev.Origin != m.origin { // the issuer would refuse it for our audience anyway
		m.onError(w, r, fmt.Errorf("%w: %s", ErrEvidenceOrigin, m.origin))
		return
	}
	res, err := m.bg.appraise(r.Context(), ev, m.v.expect.Audience)
	var ie *IssuerError
	if errors.As(err, &ie) && ie.Status == http.StatusConflict { // nonce used or expired: retry
		m.challenge(w, r)
		return
	}
	if err != nil {
		m.onError(w, r, err)
		return
	}
	c, err := m.v.Verify(r.Context(), res.Result)
	if err != nil {
		m.onError(w, r, err)
		return
	}
	m.v.Forget(c.ID) // a result answers one request: keep the cache for tokens
	want := api.EncodeNonce(ev.Nonce)
	if subtle.ConstantTimeCompare([]byte(c.EATNonce), []byte(want)) != 1 {
		m.onError(w, r, fmt.Errorf("%w: eat_nonce", ErrResultMismatch))
		return
	}
	if SameKey(ev.CNF.Key, cnfKey(c)) != nil {
		m.onError(w, r, fmt.Errorf("%w: cnf", ErrResultMismatch))
		return
	}
	// The issuer vouched for the evidence's key: only now may its proof take room in the
	// replay cache, in the share of the attester the result names.
	if err := m.rememberProof(proof, c.Subject); err != nil {
		m.onError(w, r, err)
		return
	}
	ctx := context.WithValue(r.Context(), ctxKey{}, ctxVal{claims: c, raw: res.Result})
	next.ServeHTTP(w, r.WithContext(ctx))
}

// challenge answers 401 with a fresh issuer nonce.
func (m *middleware) challenge(w http.ResponseWriter, r *http.Request) {
	ch, err := m.bg.challenge(r.Context())
	if err != nil {
		m.onError(w, r, err)
		return
	}
	nonce := api.EncodeNonce(ch.Nonce)
	h := w.Header()
	if !m.fresh { // a token would do as well
		c := schemeBearer + ` realm="` + quoteEscape(m.realm) + `"`
		if m.pop == PoPDPoP {
			c = schemeDPoP + ` realm="` + quoteEscape(m.realm) + `", algs="` + dpopAlgs + `"`
		}
		h.Add("WWW-Authenticate", c)
	}
	h.Add("WWW-Authenticate", api.EvidenceScheme+` realm="`+quoteEscape(m.realm)+`", nonce="`+nonce+`"`)
	h.Set(api.HeaderNonce, nonce)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(api.Error{Code: "evidence_required",
		Description: "answer the nonce in " + api.HeaderNonce + " with evidence in " + api.HeaderEvidence + " and a DPoP proof"})
}

// parseEvidence decodes the single Attestation-Evidence header.
func parseEvidence(vals []string) (*api.AttestRequest, error) {
	if len(vals) != 1 {
		return nil, fmt.Errorf("%w: want one %s header, got %d", ErrEvidence, api.HeaderEvidence, len(vals))
	}
	if len(vals[0]) > MaxEvidenceHeader {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrEvidence, len(vals[0]), MaxEvidenceHeader)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(vals[0]))
	if err != nil {
		return nil, fmt.Errorf("%w: base64url: %w", ErrEvidence, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ev api.AttestRequest
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("%w: JSON: %w", ErrEvidence, err)
	}
	switch {
	case len(ev.Nonce) != api.NonceSize:
		return nil, fmt.Errorf("%w: nonce is %d bytes, want %d", ErrEvidence, len(ev.Nonce), api.NonceSize)
	case len(ev.Attestation) == 0:
		return nil, fmt.Errorf("%w: no attestation", ErrEvidence)
	case ev.CNF == nil || ev.CNF.Key == nil || !ev.CNF.IsPublic() || !ev.CNF.Valid():
		return nil, fmt.Errorf("%w: cnf must be a valid public JWK", ErrEvidence)
	}
	return &ev, nil
}

// evidencePoP requires the presenter to hold the evidence's cnf key: a TLS client certificate
// for it, or a DPoP proof by it over this request. Without this, a party that relays another
// relying party's challenge to the attester could present the attester's evidence here. The
// proof must name this relying party's configured URL (WithExternalURL), never one built from
// the request's Host header: a relaying party sets that to its own host.
//
// A DPoP proof is returned checked but NOT remembered: the evidence, and so the key the proof
// is checked against, is the request's own and is not authenticated yet. Remembering its jti
// now would let anyone fill the replay cache (shared, through WithDPoPVerifier, with the token
// routes) with proofs by throw-away keys. serveEvidence remembers it once the issuer's result
// has authenticated the key (rememberProof). Replay stays refused meanwhile: the evidence
// quotes the issuer's nonce, which the issuer consumes atomically when it appraises it, so a
// replayed evidence+proof never yields a second result (the relying party answers a new
// challenge); a proof is worthless without evidence for its key, which takes a trusted TPM's
// quote over a fresh nonce; and the jti of a proof whose evidence was accepted is remembered,
// so the same proof is refused outright afterwards.
func (m *middleware) evidencePoP(r *http.Request, ev *api.AttestRequest) (*dpop.Proof, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && SameKey(r.TLS.PeerCertificates[0].PublicKey, ev.CNF) == nil {
		return nil, nil
	}
	proofs := r.Header.Values(dpop.HeaderName)
	switch len(proofs) {
	case 0:
		return nil, fmt.Errorf("%w: %w", ErrDPoPProof, dpop.ErrMissing)
	case 1:
	default:
		return nil, fmt.Errorf("%w: more than one DPoP header", ErrDPoPProof)
	}
	target, err := m.requestURL(r)
	if err != nil {
		return nil, err
	}
	p, err := m.dpop.Check(proofs[0], r.Method, target, "", ev.CNF)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDPoPProof, err)
	}
	return p, nil
}

// rememberProof records the jti of an evidence's proof (nil: mTLS, nothing to record) once the
// evidence is authenticated, counted against holder's share of the replay cache: the sub of the
// issuer's result, the attester's attestation-key thumbprint, which the issuer authenticated
// with the evidence. The evidence's cnf key is the attester's choice, new at each attestation
// if it likes, as a token's is; counted per attester, evidence and tokens of one machine share
// one bound (dpop.Verifier.RememberHolder). An empty sub counts against the key.
func (m *middleware) rememberProof(p *dpop.Proof, holder string) error {
	if p == nil {
		return nil
	}
	if err := m.dpop.RememberHolder(p, holder); err != nil {
		return fmt.Errorf("%w: %w", ErrDPoPProof, err)
	}
	return nil
}

// challenge asks the issuer for a nonce (POST api.PathChallenge).
func (bc *BackgroundCheck) challenge(ctx context.Context) (*api.ChallengeResponse, error) {
	var ch api.ChallengeResponse
	if err := bc.post(ctx, api.PathChallenge, struct{}{}, &ch); err != nil {
		return nil, err
	}
	if len(ch.Nonce) != api.NonceSize {
		return nil, fmt.Errorf("%w: challenge nonce is %d bytes", ErrIssuerUnavailable, len(ch.Nonce))
	}
	return &ch, nil
}

// appraise forwards ev for audience (POST api.PathAppraise).
func (bc *BackgroundCheck) appraise(ctx context.Context, ev *api.AttestRequest, audience string) (*api.AppraiseResponse, error) {
	var res api.AppraiseResponse
	if err := bc.post(ctx, api.PathAppraise, api.AppraiseRequest{Evidence: ev, Audience: audience}, &res); err != nil {
		return nil, err
	}
	if res.Result == "" {
		return nil, fmt.Errorf("%w: no result in the appraisal", ErrIssuerUnavailable)
	}
	return &res, nil
}

func (bc *BackgroundCheck) post(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(bc.IssuerURL, "/")+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrIssuerUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	client := bc.HTTP
	if client == nil {
		client = &http.Client{Timeout: DefaultFetchTimeout}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrIssuerUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxIssuerResponse+1))
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", ErrIssuerUnavailable, err)
	case len(data) > maxIssuerResponse:
		return fmt.Errorf("%w: answer exceeds %d bytes", ErrIssuerUnavailable, maxIssuerResponse)
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		ie := &IssuerError{Status: resp.StatusCode}
		if json.Unmarshal(data, &ie.Err) != nil || ie.Err.Code == "" {
			ie.Err = api.Error{Code: fmt.Sprintf("http_%d", resp.StatusCode)}
		}
		return ie
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%w: %s answered %d", ErrIssuerUnavailable, path, resp.StatusCode)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrIssuerUnavailable, path, err)
	}
	return nil
}

// classifyBackground maps background-check errors to a status, an error code and a fixed
// description; ok is false for other errors.
func classifyBackground(err error) (status int, code, desc string, ok bool) {
	var ie *IssuerError
	switch {
	case errors.As(err, &ie):
		switch ie.Status {
		case http.StatusForbidden:
			return http.StatusForbidden, "evidence_rejected", "the issuer refused the evidence: " + safeCode(ie.Err.Code), true
		case http.StatusRequestEntityTooLarge:
			return http.StatusRequestEntityTooLarge, "invalid_request", "evidence too large for the issuer", true
		case http.StatusTooManyRequests:
			return http.StatusServiceUnavailable, "temporarily_unavailable", "issuer busy", true
		}
		return http.StatusBadRequest, "invalid_request", "the issuer refused the evidence: " + safeCode(ie.Err.Code), true
	case errors.Is(err, ErrEvidence):
		return http.StatusBadRequest, "invalid_request", "malformed " + api.HeaderEvidence + " header", true
	case errors.Is(err, ErrEvidenceOrigin):
		return http.StatusBadRequest, "invalid_request", "the evidence does not bind this relying party's origin", true
	case errors.Is(err, ErrIssuerUnavailable):
		return http.StatusServiceUnavailable, "temporarily_unavailable", "issuer unavailable", true
	case errors.Is(err, ErrResultMismatch):
		return http.StatusBadGateway, "server_error", "attestation result does not match the evidence", true
	}
	return 0, "", "", false
}

// safeCode keeps an issuer error code printable inside a quoted challenge parameter.
func safeCode(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '?'
	}, s)
}
