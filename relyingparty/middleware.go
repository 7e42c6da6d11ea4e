package relyingparty

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/token"
)

// DefaultRealm is the realm of Middleware's WWW-Authenticate challenges.
const DefaultRealm = "passport"

// MiddlewareOption configures Middleware.
type MiddlewareOption func(*middleware)

// WithRealm sets the realm of the WWW-Authenticate challenge (RFC 6750 section 3); default
// DefaultRealm.
func WithRealm(realm string) MiddlewareOption { return func(m *middleware) { m.realm = realm } }

// WithTokenExtractor replaces the default extraction (an "Authorization: Bearer" or "DPoP"
// header, RFC 6750 section 2.1, RFC 9449 section 7.1). fn returns "" when the request carries
// no token. A token found this way counts as a bearer presentation: PoPDPoP routes refuse it,
// PoPMTLS routes still check the client certificate.
func WithTokenExtractor(fn func(*http.Request) (string, error)) MiddlewareOption {
	return func(m *middleware) { m.extract = fn }
}

// WithErrorHandler replaces the refusal response. err is ErrNoToken, a malformed-request error
// or a Verify error. The default is WriteError with the middleware's realm.
func WithErrorHandler(fn func(w http.ResponseWriter, r *http.Request, err error)) MiddlewareOption {
	return func(m *middleware) { m.onError = fn }
}

// ErrNoToken: the request carries no bearer token.
var ErrNoToken = errors.New("relyingparty: no bearer token")

// errBadRequest: the Authorization header is not a single well-formed Bearer credential.
var errBadRequest = errors.New("relyingparty: malformed Authorization header")

type middleware struct {
	v       *Verifier
	realm   string
	extract func(*http.Request) (string, error) // nil: Authorization Bearer or DPoP
	onError func(http.ResponseWriter, *http.Request, error)

	pop      PoP              // proof-of-possession policy (pop.go)
	dpop     *dpop.Verifier   // DPoP proofs and their replay cache
	external *url.URL         // public base URL for htu (origin.go), nil: none, DPoP fails closed
	origin   string           // api.Origin of external, with a background check (checkConfig)
	bg       *BackgroundCheck // background-check fallback (background.go), nil: none
	fresh    bool             // the route demands fresh evidence

	externalErr error        // an invalid WithExternalURL
	confErr     error        // set by checkConfig: every request fails closed with it
	log         *slog.Logger // misconfigurations (origin.go)
}

// Middleware returns HTTP middleware that verifies the request's token with v and calls next
// with the claims and the raw token in the request context (ClaimsFromContext,
// TokenFromContext). The token comes in "Authorization: Bearer" (RFC 6750) or, with a DPoP
// proof, "Authorization: DPoP" (RFC 9449 section 7.1); RequirePoP sets the route's
// proof-of-possession policy (bearer allowed, DPoP required, mTLS required). Token verification
// is cached by v; the proof is checked on every request. Refusals follow RFC 6750 section 3
// (see WriteError), with the DPoP scheme and error="invalid_dpop_proof" where RFC 9449 asks:
// 401 with `WWW-Authenticate: Bearer realm="passport"` when no token is present, 401 with
// error="invalid_token" and an error_description when it is invalid, 403 with
// error="insufficient_scope" when it is valid but its EAR status or claim requirements fall
// short, 400 invalid_request for a malformed Authorization header, and 503 when the issuer's
// keys could never be fetched. Tokens are never logged or echoed.
//
// Routes that check DPoP proofs or background-check evidence need WithExternalURL: without it
// (or with an invalid one) they answer 500 "server_error" (ErrNoExternalURL, ErrConfig) and log
// the misconfiguration, at construction and on every refused request.
func Middleware(v *Verifier, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	m := &middleware{v: v, realm: DefaultRealm}
	for _, o := range opts {
		o(m)
	}
	if m.onError == nil {
		m.onError = m.writeError
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.confErr = m.checkConfig()
	if m.dpop == nil {
		m.dpop = v.dpopVerifier()
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(w, r, next) })
	}
}

// BearerToken extracts the token of the request's single "Authorization: Bearer <token>" header
// (RFC 6750 section 2.1; the scheme is case-insensitive, RFC 9110 section 11.1). It returns ""
// and no error when there is no Authorization header, and an error when there are several or
// the scheme is not Bearer.
func BearerToken(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", errBadRequest
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errBadRequest
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", errBadRequest
	}
	return tok, nil
}

type ctxKey struct{}

type ctxVal struct {
	claims *token.Claims
	raw    string
}

// ClaimsFromContext returns the verified claims Middleware placed in ctx. They are read-only.
func ClaimsFromContext(ctx context.Context) (*token.Claims, bool) {
	v, ok := ctx.Value(ctxKey{}).(ctxVal)
	return v.claims, ok && v.claims != nil
}

// TokenFromContext returns the raw verified token Middleware placed in ctx, for handlers that
// forward it (to a key broker, say). Never log it.
func TokenFromContext(ctx context.Context) (string, bool) {
	v, ok := ctx.Value(ctxKey{}).(ctxVal)
	return v.raw, ok && v.raw != ""
}

// WriteError writes the refusal of a request whose token failed: the status, an RFC 6750
// section 3 WWW-Authenticate challenge for realm, and a JSON api.Error body with the same error
// code and a fixed description (never the token, never claim values).
func WriteError(w http.ResponseWriter, realm string, err error) {
	writeChallenge(w, schemeBearer, realm, "", err)
}

// writeChallenge is WriteError for an authentication scheme (Bearer or DPoP) and, for DPoP, the
// algs parameter of RFC 9449 section 7.1.
func writeChallenge(w http.ResponseWriter, scheme, realm, algs string, err error) {
	status, code, desc := classify(err)
	h := w.Header()
	if status != http.StatusServiceUnavailable && status != http.StatusInternalServerError {
		challenge := scheme + ` realm="` + quoteEscape(realm) + `"`
		if code != "" {
			challenge += `, error="` + code + `", error_description="` + desc + `"`
		}
		if algs != "" {
			challenge += `, algs="` + algs + `"`
		}
		h.Add("WWW-Authenticate", challenge)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if code == "" {
		code = "unauthorized"
	}
	_ = json.NewEncoder(w).Encode(api.Error{Code: code, Description: desc})
}

// classify maps an error to an HTTP status, an RFC 6750 section 3.1 error code ("" when the
// request had no token at all: section 3.1 says no code then) and a fixed description.
func classify(err error) (int, string, string) {
	const unauth, forbidden = http.StatusUnauthorized, http.StatusForbidden
	if status, code, desc, ok := classifyExtension(err); ok {
		return status, code, desc
	}
	switch {
	case errors.Is(err, ErrNoToken):
		return unauth, "", "bearer token required"
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest, "invalid_request", "malformed Authorization header"
	case errors.Is(err, ErrKeySetUnavailable):
		return http.StatusServiceUnavailable, "temporarily_unavailable", "issuer keys unavailable"
	case errors.Is(err, ErrRevoked): // status.go
		return unauth, "invalid_token", "token revoked"
	case errors.Is(err, ErrStatusUnavailable):
		return http.StatusServiceUnavailable, "temporarily_unavailable", "token status unavailable"
	case errors.Is(err, token.ErrStatus):
		return forbidden, "insufficient_scope", "attestation status below the required tier"
	case errors.Is(err, ErrRequirement):
		return forbidden, "insufficient_scope", "token does not meet the claim requirements"
	}
	desc := "invalid token"
	for _, d := range []struct {
		err  error
		desc string
	}{
		{ErrTooLarge, "token too large"},
		{ErrMalformed, "malformed token"},
		{ErrAlgorithm, "signature algorithm not accepted"},
		{ErrType, "token typ is not eat+jwt"},
		{ErrHeader, "forbidden header parameter"},
		{ErrUnknownKey, "unknown signing key"},
		{ErrBadSignature, "invalid signature"},
		{token.ErrExpired, "token expired"},
		{token.ErrNotYetValid, "token not yet valid"},
		{token.ErrIssuer, "wrong issuer"},
		{token.ErrAudience, "wrong audience"},
		{token.ErrMalformed, "malformed claims"},
	} {
		if errors.Is(err, d.err) {
			desc = d.desc
			break
		}
	}
	return unauth, "invalid_token", desc
}

func quoteEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}
