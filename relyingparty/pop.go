package relyingparty

import (
	"crypto"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/token"
)

// PoP is a route's proof-of-possession policy: what, beyond a valid token, shows that the
// presenter holds the private half of the token's cnf key (RFC 7800), so that a stolen token
// is useless. Set it per route with RequirePoP.
type PoP int

const (
	// PoPBearer accepts a bare bearer token ("Authorization: Bearer", RFC 6750). A token
	// presented with the DPoP scheme must still carry a valid proof. This is the default.
	PoPBearer PoP = iota
	// PoPDPoP requires "Authorization: DPoP <token>" and one DPoP header holding a proof (RFC
	// 9449 section 7.1) signed by the token's cnf key over this request's method and URL,
	// within the proof window, with ath = the token's hash and a jti never seen before.
	PoPDPoP
	// PoPMTLS requires a TLS client certificate whose public key is the token's cnf key,
	// compared by RFC 7638 SHA-256 thumbprint (the key-binding counterpart of RFC 8705 section
	// 3). The server must request client certificates (tls.RequireAnyClientCert suffices: the
	// token, not a CA, vouches for the key; the TLS handshake proves its possession).
	PoPMTLS
)

// String names the policy: "bearer", "dpop" or "mtls".
func (p PoP) String() string {
	switch p {
	case PoPBearer:
		return "bearer"
	case PoPDPoP:
		return "dpop"
	case PoPMTLS:
		return "mtls"
	}
	return fmt.Sprintf("PoP(%d)", int(p))
}

// Errors of proof-of-possession checks; Middleware maps them to RFC 6750 / RFC 9449 refusals.
var (
	// ErrPoPRequired: the route needs proof of possession (PoPDPoP or PoPMTLS) and the token
	// came without it: a bare bearer token, or no client certificate. Answered 401
	// error="invalid_token".
	ErrPoPRequired = errors.New("relyingparty: proof of possession required")
	// ErrDPoPProof: the DPoP proof is missing, duplicated, malformed, replayed, stale, made for
	// another request or token, or signed by a key other than the token's cnf key. It wraps
	// the dpop package's error (dpop.ErrReplay, dpop.ErrKey, ...). Answered 401
	// error="invalid_dpop_proof" (RFC 9449 section 7.1).
	ErrDPoPProof = errors.New("relyingparty: invalid DPoP proof")
	// ErrNotBound: proof of possession is needed but the token carries no cnf.jwk key.
	// Answered 401 error="invalid_token".
	ErrNotBound = errors.New("relyingparty: token is not bound to a key (no cnf.jwk)")
	// ErrMTLSBinding: the TLS client certificate's key is not the token's cnf key. Answered
	// 401 error="invalid_token" (RFC 8705 section 3).
	ErrMTLSBinding = errors.New("relyingparty: TLS certificate key is not the token's cnf key")
)

// RequirePoP sets the route's proof-of-possession policy (default PoPBearer). Build one
// Middleware per policy and wrap each route with the one it needs; share the replay cache
// between them with WithDPoPVerifier.
func RequirePoP(p PoP) MiddlewareOption { return func(m *middleware) { m.pop = p } }

// WithDPoPVerifier sets the DPoP proof verifier: its proof window (iat) and its jti replay
// cache. Default: one dpop.Verifier per Verifier, on its clock, shared by every Middleware
// built on that Verifier, so that a proof is accepted once across all of them. Middlewares on
// different Verifiers (or replicas) each have their own cache unless given one here.
// Sharing it with a background-check route is safe: that route remembers a proof's jti only
// once the issuer has authenticated the evidence's key (see dpop.Verifier.Check), so
// anonymous evidence cannot fill the cache that token routes use. Every route counts a proof
// against the share of the cache (dpop.Verifier.MaxEntriesPerKey) of the attester that the
// token's or result's sub names, whatever cnf key the proof is by (with EK enrollment, one TPM
// is one sub per re-enrollment interval: package dpop's doc).
func WithDPoPVerifier(dv *dpop.Verifier) MiddlewareOption {
	return func(m *middleware) { m.dpop = dv }
}

// presentation is how a request carries its token.
type presentation struct {
	raw    string
	scheme string // "Bearer" or "DPoP"; "" when a custom extractor found it
}

const (
	schemeBearer = "Bearer"
	schemeDPoP   = dpop.Scheme
)

// credentials reads the request's token: the single Authorization header with the Bearer or
// DPoP scheme (case-insensitive, RFC 9110 section 11.1), or the custom extractor's result.
func (m *middleware) credentials(r *http.Request) (presentation, error) {
	if m.extract != nil {
		raw, err := m.extract(r)
		return presentation{raw: raw}, err
	}
	vals := r.Header.Values("Authorization")
	switch len(vals) {
	case 0:
		return presentation{}, nil
	case 1:
	default:
		return presentation{}, errBadRequest
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	switch {
	case !ok:
		return presentation{}, errBadRequest
	case strings.EqualFold(scheme, schemeBearer):
		scheme = schemeBearer
	case strings.EqualFold(scheme, schemeDPoP):
		scheme = schemeDPoP
	default:
		return presentation{}, errBadRequest
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return presentation{scheme: scheme}, errBadRequest
	}
	return presentation{raw: tok, scheme: scheme}, nil
}

// checkPoP applies the route's policy to a request whose token p verified to claims c.
func (m *middleware) checkPoP(r *http.Request, p presentation, c *token.Claims) error {
	if p.scheme == schemeDPoP { // RFC 9449 section 7.1: a DPoP presentation is always proven
		if err := m.checkDPoP(r, p.raw, c); err != nil {
			return err
		}
	}
	switch m.pop {
	case PoPDPoP:
		if p.scheme != schemeDPoP {
			return fmt.Errorf("%w: present the token with the DPoP scheme and a DPoP proof", ErrPoPRequired)
		}
	case PoPMTLS:
		return checkMTLS(r, c)
	}
	return nil
}

// checkDPoP verifies the request's single DPoP proof against the token's cnf key. The proof
// counts against the share of the replay cache of the token's sub, the attester's
// attestation-key thumbprint, not of the cnf key: the attester chooses a cnf key at each
// attestation, and one machine must not take a share per key (see dpop.Verifier.VerifyHolder).
// A token without sub counts against its cnf key.
func (m *middleware) checkDPoP(r *http.Request, raw string, c *token.Claims) error {
	cnf := cnfKey(c)
	if cnf == nil {
		return ErrNotBound
	}
	proofs := r.Header.Values(dpop.HeaderName)
	switch len(proofs) {
	case 0:
		return fmt.Errorf("%w: %w", ErrDPoPProof, dpop.ErrMissing)
	case 1:
	default:
		return fmt.Errorf("%w: more than one DPoP header", ErrDPoPProof)
	}
	target, err := m.requestURL(r)
	if err != nil {
		return err
	}
	if _, err := m.dpop.VerifyHolder(proofs[0], r.Method, target, raw, cnf, c.Subject); err != nil {
		return fmt.Errorf("%w: %w", ErrDPoPProof, err)
	}
	return nil
}

// checkMTLS compares the TLS client certificate's public key with the token's cnf key by RFC
// 7638 SHA-256 thumbprint.
func checkMTLS(r *http.Request, c *token.Claims) error {
	cnf := cnfKey(c)
	if cnf == nil {
		return ErrNotBound
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return fmt.Errorf("%w: no TLS client certificate", ErrPoPRequired)
	}
	if err := SameKey(r.TLS.PeerCertificates[0].PublicKey, cnf); err != nil {
		return err
	}
	return nil
}

// SameKey reports (nil) whether pub, a public key such as a TLS peer certificate's, is the key
// of cnf (a token's cnf.jwk), by RFC 7638 SHA-256 thumbprint. It fails with ErrMTLSBinding when
// they differ or pub's thumbprint cannot be computed, and with ErrNotBound when cnf is nil.
func SameKey(pub crypto.PublicKey, cnf *jose.JSONWebKey) error {
	if cnf == nil || cnf.Key == nil {
		return ErrNotBound
	}
	want, err := cnf.Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("%w: cnf thumbprint: %w", ErrMTLSBinding, err)
	}
	got, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("%w: certificate key: %w", ErrMTLSBinding, err)
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMTLSBinding
	}
	return nil
}

func cnfKey(c *token.Claims) *jose.JSONWebKey {
	if c == nil || c.Confirmation == nil || c.Confirmation.JWK == nil || c.Confirmation.JWK.Key == nil {
		return nil
	}
	return c.Confirmation.JWK
}

// dpopAlgs is the algs parameter of DPoP challenges (RFC 9449 section 7.1).
var dpopAlgs = func() string {
	names := make([]string, len(dpop.Algorithms))
	for i, a := range dpop.Algorithms {
		names[i] = string(a)
	}
	return strings.Join(names, " ")
}()

// classifyPoP maps proof-of-possession errors to a status, an error code and a fixed
// description; ok is false for other errors.
func classifyPoP(err error) (status int, code, desc string, ok bool) {
	const unauth = http.StatusUnauthorized
	switch {
	case errors.Is(err, ErrConfig): // ErrNoExternalURL, a bad WithExternalURL: fail closed
		return http.StatusInternalServerError, "server_error", "relying party misconfigured", true
	case errors.Is(err, ErrDPoPProof):
		desc := "invalid DPoP proof"
		for _, d := range []struct {
			err  error
			desc string
		}{
			{dpop.ErrMissing, "DPoP proof required"},
			{dpop.ErrReplay, "DPoP proof replayed"},
			{dpop.ErrKey, "DPoP proof not signed by the token's cnf key"},
			{dpop.ErrStale, "DPoP proof iat outside the accepted window"},
			{dpop.ErrTarget, "DPoP proof htm or htu does not match the request"},
			{dpop.ErrBinding, "DPoP proof ath does not match the token"},
			{dpop.ErrTooLarge, "DPoP proof too large"},
			{dpop.ErrCacheFull, "DPoP replay cache full, retry later"},
		} {
			if errors.Is(err, d.err) {
				desc = d.desc
				break
			}
		}
		return unauth, "invalid_dpop_proof", desc, true
	case errors.Is(err, ErrNotBound):
		return unauth, "invalid_token", "token is not bound to a key", true
	case errors.Is(err, ErrMTLSBinding):
		return unauth, "invalid_token", "client certificate key does not match the token", true
	case errors.Is(err, ErrPoPRequired):
		return unauth, "invalid_token", "proof of possession required", true
	}
	return 0, "", "", false
}

// writeError is the middleware's default refusal: WriteError's status, body and error codes,
// with the challenge scheme the route and request call for: DPoP (RFC 9449 section 7.1, with
// algs) on PoPDPoP routes, for DPoP presentations and for DPoP proof errors; Attestation for
// requests that went to the background check; Bearer (RFC 6750 section 3) otherwise.
func (m *middleware) writeError(w http.ResponseWriter, r *http.Request, err error) {
	scheme, algs := schemeBearer, ""
	switch {
	case m.pop == PoPDPoP || errors.Is(err, ErrDPoPProof) || isDPoPPresentation(r):
		scheme, algs = schemeDPoP, dpopAlgs
	case m.bringsEvidence(r):
		scheme = api.EvidenceScheme
	}
	writeChallenge(w, scheme, m.realm, algs, err)
}

func isDPoPPresentation(r *http.Request) bool {
	a := r.Header.Get("Authorization")
	return len(a) > len(schemeDPoP) && a[len(schemeDPoP)] == ' ' && strings.EqualFold(a[:len(schemeDPoP)], schemeDPoP)
}
