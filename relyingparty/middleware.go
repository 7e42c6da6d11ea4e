package relyingparty

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/token"
)

// DefaultRealm is the realm of Middleware's WWW-Authenticate challenges.
const DefaultRealm = "passport"

// MiddlewareOption configures Middleware.
type MiddlewareOption func(*middleware)

// WithRealm sets the realm of the WWW-Authenticate challenge (RFC 6750 section 3); default
// DefaultRealm.
func WithRealm(realm string) MiddlewareOption { return func(m *middleware) { m.realm = realm } }

// WithTokenExtractor replaces the default extraction (an "Authorization: Bearer" header, RFC
// 6750 section 2.1). fn returns "" when the request carries no token.
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
	extract func(*http.Request) (string, error)
	onError func(http.ResponseWriter, *http.Request, error)
}

// Middleware returns HTTP middleware that verifies the request's bearer token with v and calls
// next with the claims and the raw token in the request context (ClaimsFromContext,
// TokenFromContext). Refusals follow RFC 6750 section 3 (see WriteError): 401 with
// `WWW-Authenticate: Bearer realm="passport"` when no token is present, 401 with
// error="invalid_token" and an error_description when it is invalid, 403 with
// error="insufficient_scope" when it is valid but its EAR status or claim requirements fall
// short, 400 invalid_request for a malformed Authorization header, and 503 when the issuer's
// keys could never be fetched. Tokens are never logged or echoed.
func Middleware(v *Verifier, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	m := &middleware{v: v, realm: DefaultRealm, extract: BearerToken}
	for _, o := range opts {
		o(m)
	}
	if m.onError == nil {
		realm := m.realm
		m.onError = func(w http.ResponseWriter, _ *http.Request, err error) { WriteError(w, realm, err) }
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, err := m.extract(r)
			if err == nil && raw == "" {
				err = ErrNoToken
			}
			if err != nil {
				m.onError(w, r, err)
				return
			}
			c, err := m.v.Verify(r.Context(), raw)
			if err != nil {
				m.onError(w, r, err)
				return
			}
			ctx := context.WithValue(r.Context(), ctxKey{}, ctxVal{claims: c, raw: raw})
			next.ServeHTTP(w, r.WithContext(ctx))
		})
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
	status, code, desc := classify(err)
	h := w.Header()
	if status != http.StatusServiceUnavailable {
		challenge := `Bearer realm="` + quoteEscape(realm) + `"`
		if code != "" {
			challenge += `, error="` + code + `", error_description="` + desc + `"`
		}
		h.Set("WWW-Authenticate", challenge)
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
