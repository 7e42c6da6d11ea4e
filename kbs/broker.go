package kbs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

// TokenVerifier validates a passport token locally and returns its claims (read-only).
// *relyingparty.Verifier implements it; build it with MinStatus token.TierWarning so that the
// per-resource Policy, not the verifier, decides between affirming and warning tokens (the
// default policy still requires affirming).
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*token.Claims, error)
}

// RevocationChecker says whether a verified token was revoked (for instance through its
// status-list entry, draft-ietf-oauth-status-list). Revoked returns nil when the token is not
// revoked, an error wrapping ErrRevoked when it is (the release is refused with 401), and any
// other error when it cannot tell (the release is refused with 503: fail closed). It must treat
// the claims as read-only.
type RevocationChecker interface {
	Revoked(ctx context.Context, c *token.Claims) error
}

// ErrRevoked is what a RevocationChecker wraps to say that a token is revoked.
var ErrRevoked = errors.New("kbs: token revoked")

// Refusal classes. Every error from Broker.Release is a *Refusal, and errors.Is matches it to
// the class of its HTTP status: ErrBadRequest (400), ErrUnauthorized (401), ErrForbidden (403),
// ErrNotFound (404), ErrUnavailable (503) or ErrInternal (500).
var (
	ErrBadRequest   = errors.New("kbs: bad request")    // 400
	ErrUnauthorized = errors.New("kbs: unauthorized")   // 401
	ErrForbidden    = errors.New("kbs: forbidden")      // 403
	ErrInternal     = errors.New("kbs: internal error") // 500
)

// Config wires a Broker. Verifier, Store and PublicURL are required.
type Config struct {
	// Verifier validates tokens (see TokenVerifier).
	Verifier TokenVerifier
	// Store holds the secrets.
	Store Store
	// Policy decides per resource; nil means DefaultPolicy().
	Policy *Policy
	// Revocation, when set, is asked about every token that passed verification and proof of
	// possession, before the policy. The status-list check of package relyingparty plugs in
	// here.
	Revocation RevocationChecker
	// Proofs verifies DPoP proofs and remembers their jti to refuse replays; nil means a
	// dpop.Verifier with a 60 s window and the Now clock. Its replay cache is in memory: run
	// one per KBS process. Its per-holder bound (MaxEntriesPerKey) counts the proofs of each
	// token sub (attester), whatever cnf key they are by. With EK enrollment one TPM is one sub
	// per re-enrollment interval (package enroll; see package dpop).
	Proofs *dpop.Verifier
	// Audit receives one line per decision (see Broker.Release); nil means slog.Default().
	Audit *slog.Logger
	// Observe, when set, is called once per decision with the audit line's decision
	// ("release" or "refuse"), reason (a fixed word) and rule (the governing policy rule's
	// resource glob, "" when no rule was reached). None of them is a client's input, so they
	// fit metric labels: metrics.Metrics.KBSRelease has this signature.
	Observe func(decision, reason, rule string)
	// Now is the clock; default time.Now.
	Now func() time.Time
	// PublicURL is the broker's external base URL as clients address it (e.g.
	// "https://kbs.example", or "https://example.com/kbs" behind a proxy that strips /kbs): an
	// absolute http(s) URL without query or fragment. Handler builds the URL a DPoP proof must
	// name (htu, RFC 9449 section 4.3) from it and the request's escaped path. Required: the
	// URL is never taken from the request's Host (or Forwarded) header, which the client
	// chooses; a relying party holding a token and proof made for its own URL could otherwise
	// relay them here with "Host:" set to its own host.
	PublicURL string
}

// Broker releases secrets to attested machines. It is safe for concurrent use.
type Broker struct {
	cfg    Config
	public *url.URL // cfg.PublicURL, parsed, without a trailing slash
}

// New checks cfg and returns a Broker. It fails without a Verifier, a Store or a PublicURL,
// and with a PublicURL that is not an absolute http(s) base URL.
func New(cfg Config) (*Broker, error) {
	switch {
	case cfg.Verifier == nil:
		return nil, errors.New("kbs: Config.Verifier is required")
	case cfg.Store == nil:
		return nil, errors.New("kbs: Config.Store is required")
	case cfg.PublicURL == "":
		return nil, errors.New("kbs: Config.PublicURL is required: the URL DPoP proofs must name is never taken from the request")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Policy == nil {
		cfg.Policy = DefaultPolicy()
	}
	if cfg.Proofs == nil {
		cfg.Proofs = &dpop.Verifier{Now: cfg.Now}
	}
	if cfg.Audit == nil {
		cfg.Audit = slog.Default()
	}
	u, err := url.Parse(strings.TrimRight(cfg.PublicURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("kbs: PublicURL %q is not an absolute http(s) base URL without userinfo, query or fragment", cfg.PublicURL)
	}
	return &Broker{cfg: cfg, public: u}, nil
}

// Request is one resource request as received: the resource name after PathKBSResource, every
// Authorization and DPoP header value, the method and the absolute URL the client addressed
// (the DPoP htu, RFC 9449 section 4.3).
type Request struct {
	Resource      string
	Authorization []string
	DPoP          []string
	Method        string
	URL           *url.URL
}

// Release is a granted request.
type Release struct {
	// JWE is the secret, a compact JWE encrypted to the token's cnf key (see EncryptTo).
	JWE string
	// Algorithm is the JWE alg used.
	Algorithm jose.KeyAlgorithm
	// Resource is the released resource.
	Resource api.ResourceID
	// Subject and JTI identify the attester (sub) and the token (jti).
	Subject, JTI string
}

// Refusal is the error of a refused request: the HTTP status, the error code of the response
// body and challenge (RFC 6750 section 3.1, RFC 9449 section 7.1), the audit reason and a fixed
// description, and the cause. Neither Reason nor Description ever holds a token, a claim value
// or a secret.
type Refusal struct {
	Status      int
	Code        string // "" (no credentials), invalid_request, invalid_token, invalid_dpop_proof, insufficient_scope, not_found, temporarily_unavailable, server_error
	Reason      string // audit word, e.g. "policy", "revoked", "dpop_required"
	Description string
	Err         error
}

// Error reports the status, the reason and the cause.
func (r *Refusal) Error() string {
	s := fmt.Sprintf("kbs: refused (%d %s)", r.Status, r.Reason)
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// Unwrap returns the refusal's class (ErrBadRequest, ErrUnauthorized, ErrForbidden,
// ErrNotFound, ErrUnavailable, ErrInternal) and its cause.
func (r *Refusal) Unwrap() []error {
	class := ErrInternal
	switch r.Status {
	case http.StatusBadRequest:
		class = ErrBadRequest
	case http.StatusUnauthorized:
		class = ErrUnauthorized
	case http.StatusForbidden:
		class = ErrForbidden
	case http.StatusNotFound:
		class = ErrNotFound
	case http.StatusServiceUnavailable:
		class = ErrUnavailable
	}
	if r.Err == nil {
		return []error{class}
	}
	return []error{class, r.Err}
}

func refuse(status int, code, reason, desc string, err error) *Refusal {
	return &Refusal{Status: status, Code: code, Reason: reason, Description: desc, Err: err}
}

// Release decides one request (see the package documentation for the order of the checks) and
// writes one audit line: event "kbs.release", resource, sub, jti, rule, decision ("release" or
// "refuse"), reason, status, and alg on a release. On a refusal the error is a *Refusal.
func (b *Broker) Release(ctx context.Context, req Request) (*Release, error) {
	var seen decision
	rel, err := b.release(ctx, req, &seen)
	b.audit(ctx, &seen, rel, err)
	if err != nil {
		return nil, err
	}
	return rel, nil
}

// decision is what release learnt before it released or refused, for the audit line.
type decision struct {
	id     api.ResourceID // zero until the name is valid
	claims *token.Claims  // nil until the token is verified
	rule   string         // "" until the governing rule is known
}

func (b *Broker) release(ctx context.Context, req Request, d *decision) (*Release, error) {
	id, err := api.ParseResourceID(req.Resource)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "invalid_request", "bad_resource", "resource name must be repository/type/tag of [A-Za-z0-9._-]", err)
	}
	d.id = id
	scheme, raw, rf := parseAuthorization(req.Authorization)
	if rf != nil {
		return nil, rf
	}
	claims, err := b.cfg.Verifier.Verify(ctx, raw)
	if err != nil {
		return nil, verifyRefusal(err)
	}
	d.claims = claims
	if claims.Confirmation == nil || claims.Confirmation.JWK == nil {
		return nil, refuse(http.StatusUnauthorized, "invalid_token", "no_cnf", "token is not bound to a key (no cnf)", nil)
	}
	rule := b.cfg.Policy.ruleFor(id)
	d.rule = rule.Resource
	if rf := b.checkProof(req, scheme, raw, claims, rule.Bearer); rf != nil {
		return nil, rf
	}
	if b.cfg.Revocation != nil {
		if err := b.cfg.Revocation.Revoked(ctx, claims); err != nil {
			if errors.Is(err, ErrRevoked) {
				return nil, refuse(http.StatusUnauthorized, "invalid_token", "revoked", "token revoked", err)
			}
			return nil, refuse(http.StatusServiceUnavailable, "temporarily_unavailable", "revocation_unavailable", "revocation status unavailable", err)
		}
	}
	alg, err := KeyAlgorithm(claims.Confirmation.JWK)
	if err != nil {
		return nil, refuse(http.StatusForbidden, "insufficient_scope", "cnf_unusable", "the token's cnf key cannot receive secrets", err)
	}
	if err := b.cfg.Policy.Allows(ctx, id, claims); err != nil {
		return nil, refuse(http.StatusForbidden, "insufficient_scope", "policy", "the resource's policy does not release it to this token", err)
	}
	secret, err := b.cfg.Store.Get(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, refuse(http.StatusNotFound, "not_found", "not_found", "no such resource", err)
	case errors.Is(err, ErrUnavailable):
		return nil, refuse(http.StatusServiceUnavailable, "temporarily_unavailable", "store_unavailable", "secret store unavailable", err)
	case err != nil:
		return nil, refuse(http.StatusInternalServerError, "server_error", "store_error", "secret store error", err)
	}
	jwe, err := EncryptTo(claims.Confirmation.JWK, secret)
	clear(secret)
	if err != nil {
		return nil, refuse(http.StatusInternalServerError, "server_error", "encrypt_failed", "could not encrypt the secret", err)
	}
	return &Release{JWE: jwe, Algorithm: alg, Resource: id, Subject: claims.Subject, JTI: claims.ID}, nil
}

// parseAuthorization reads the single Authorization header: "Bearer <token>" (RFC 6750
// section 2.1) or "DPoP <token>" (RFC 9449 section 7.1), schemes case-insensitive (RFC 9110
// section 11.1).
func parseAuthorization(vals []string) (scheme, tok string, rf *Refusal) {
	switch len(vals) {
	case 0:
		return "", "", refuse(http.StatusUnauthorized, "", "no_token", "a passport token is required", nil)
	case 1:
	default:
		return "", "", refuse(http.StatusBadRequest, "invalid_request", "bad_authorization", "several Authorization headers", nil)
	}
	s, t, ok := strings.Cut(vals[0], " ")
	t = strings.TrimLeft(t, " ")
	if !ok || t == "" || strings.ContainsAny(t, " \t") {
		return "", "", refuse(http.StatusBadRequest, "invalid_request", "bad_authorization", "malformed Authorization header", nil)
	}
	switch {
	case strings.EqualFold(s, "Bearer"):
		return "Bearer", t, nil
	case strings.EqualFold(s, dpop.Scheme):
		return dpop.Scheme, t, nil
	}
	return "", "", refuse(http.StatusUnauthorized, "", "no_token", "Authorization scheme must be DPoP or Bearer", nil)
}

// checkProof enforces proof of possession: with the DPoP scheme the proof is always verified;
// with Bearer it is refused unless bearerOK, and a proof sent anyway is still verified.
func (b *Broker) checkProof(req Request, scheme, raw string, c *token.Claims, bearerOK bool) *Refusal {
	if scheme != dpop.Scheme && !bearerOK {
		return refuse(http.StatusUnauthorized, "invalid_token", "dpop_required", "this resource requires a DPoP-bound token and proof", nil)
	}
	switch len(req.DPoP) {
	case 0:
		if scheme == dpop.Scheme {
			return refuse(http.StatusUnauthorized, "invalid_dpop_proof", "proof_missing", "DPoP proof required", dpop.ErrMissing)
		}
		return nil
	case 1:
	default:
		return refuse(http.StatusUnauthorized, "invalid_dpop_proof", "proof_invalid", "more than one DPoP header", nil)
	}
	if req.URL == nil {
		return refuse(http.StatusInternalServerError, "server_error", "no_url", "request URL unknown", nil)
	}
	// The proof counts against the replay-cache share of the token's sub (the attester's
	// attestation-key thumbprint), not of its cnf key, which the attester chooses at will.
	if _, err := b.cfg.Proofs.VerifyHolder(req.DPoP[0], req.Method, req.URL, raw, c.Confirmation.JWK, c.Subject); err != nil {
		reason := "proof_invalid"
		switch {
		case errors.Is(err, dpop.ErrKey):
			reason = "proof_key_mismatch"
		case errors.Is(err, dpop.ErrReplay):
			reason = "proof_replayed"
		case errors.Is(err, dpop.ErrStale):
			reason = "proof_stale"
		case errors.Is(err, dpop.ErrBinding):
			reason = "proof_token_mismatch"
		case errors.Is(err, dpop.ErrTarget):
			reason = "proof_target_mismatch"
		}
		return refuse(http.StatusUnauthorized, "invalid_dpop_proof", reason, "DPoP proof invalid", err)
	}
	return nil
}

// verifyRefusal maps a TokenVerifier error to a refusal with a fixed description.
func verifyRefusal(err error) *Refusal {
	const unauth = http.StatusUnauthorized
	switch {
	case errors.Is(err, relyingparty.ErrKeySetUnavailable):
		return refuse(http.StatusServiceUnavailable, "temporarily_unavailable", "keys_unavailable", "issuer keys unavailable", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return refuse(http.StatusServiceUnavailable, "temporarily_unavailable", "canceled", "request canceled", err)
	case errors.Is(err, token.ErrStatus):
		return refuse(http.StatusForbidden, "insufficient_scope", "status", "attestation status below the broker's floor", err)
	}
	for _, m := range []struct {
		err          error
		reason, desc string
	}{
		{token.ErrExpired, "expired", "token expired"},
		{token.ErrNotYetValid, "not_yet_valid", "token not yet valid"},
		{token.ErrAudience, "wrong_audience", "wrong audience"},
		{token.ErrIssuer, "wrong_issuer", "wrong issuer"},
		{relyingparty.ErrUnknownKey, "unknown_key", "unknown signing key"},
		{relyingparty.ErrBadSignature, "bad_signature", "invalid signature"},
		{relyingparty.ErrAlgorithm, "bad_algorithm", "signature algorithm not accepted"},
		{relyingparty.ErrType, "bad_type", "token typ is not eat+jwt"},
		{relyingparty.ErrHeader, "bad_header", "forbidden header parameter"},
		{relyingparty.ErrTooLarge, "too_large", "token too large"},
		{token.ErrMalformed, "malformed_claims", "malformed claims"},
		{relyingparty.ErrMalformed, "malformed_token", "malformed token"},
	} {
		if errors.Is(err, m.err) {
			return refuse(unauth, "invalid_token", m.reason, m.desc, err)
		}
	}
	// Anything else (a revocation or requirement check added to the verifier) refuses the
	// token as invalid.
	return refuse(unauth, "invalid_token", "invalid_token", "invalid token", err)
}

// audit writes the decision line. Only names, identifiers and fixed words are logged.
func (b *Broker) audit(ctx context.Context, d *decision, rel *Release, err error) {
	var sub, jti string
	if d.claims != nil {
		sub, jti = d.claims.Subject, d.claims.ID
	}
	res := ""
	if d.id.Validate() == nil {
		res = d.id.String()
	}
	attrs := []slog.Attr{
		slog.String("event", "kbs.release"),
		slog.String("resource", res),
		slog.String("sub", sub),
		slog.String("jti", jti),
		slog.String("rule", d.rule),
	}
	if err == nil {
		attrs = append(attrs, slog.String("decision", "release"), slog.String("reason", "granted"),
			slog.Int("status", http.StatusOK), slog.String("alg", string(rel.Algorithm)))
		b.cfg.Audit.LogAttrs(ctx, slog.LevelInfo, "secret released", attrs...)
		b.observe("release", "granted", d.rule)
		return
	}
	var rf *Refusal
	if !errors.As(err, &rf) {
		rf = refuse(http.StatusInternalServerError, "server_error", "internal", "internal error", err)
	}
	attrs = append(attrs, slog.String("decision", "refuse"), slog.String("reason", rf.Reason), slog.Int("status", rf.Status))
	if rf.Status >= 500 && rf.Err != nil {
		// Backend failures need their cause to be fixed; these texts carry no token or secret.
		attrs = append(attrs, slog.String("error", rf.Err.Error()))
	}
	b.cfg.Audit.LogAttrs(ctx, slog.LevelWarn, "release refused", attrs...)
	b.observe("refuse", rf.Reason, d.rule)
}

func (b *Broker) observe(decision, reason, rule string) {
	if b.cfg.Observe != nil {
		b.cfg.Observe(decision, reason, rule)
	}
}
