package relyingparty

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/passport-attest/passport/api"
)

// ErrNoExternalURL: a DPoP proof or background-check evidence must be checked and the
// middleware was given no public URL (WithExternalURL), so it cannot tell which URL the proof
// must name. It wraps ErrConfig. Middleware answers 500 "server_error" (fail closed) and logs
// the misconfiguration.
var ErrNoExternalURL = fmt.Errorf("%w: no external URL (WithExternalURL): DPoP proofs cannot be checked", ErrConfig)

// WithExternalURL sets the public base URL of the service as clients address it, e.g.
// https://api.example.com, or https://example.com/api behind a reverse proxy or TLS
// terminator that strips /api. It must be an absolute http or https URL with a host and
// without userinfo, query or fragment. A DPoP proof's htu (RFC 9449 section 4.3 step 9) is
// compared with base's scheme and host followed by base's path and the request's escaped path.
//
// It is REQUIRED on every Middleware that checks DPoP proofs: routes with RequirePoP(PoPDPoP),
// routes with WithBackgroundCheck or RequireFreshEvidence (the evidence's proof of
// possession), and routes of any policy that receive "Authorization: DPoP" presentations.
// The URL is never derived from the request: its Host, Forwarded and X-Forwarded-* headers are
// chosen by the client, and a malicious relying party holding an attester's token and proof
// (or evidence and proof) made for its own URL could relay them here with "Host:" set to its
// own host. Without it such routes fail closed: 500 "server_error" (ErrNoExternalURL) and an
// error log line; an invalid base does the same for every request. A service reachable under
// several public origins builds one Middleware per origin.
func WithExternalURL(base *url.URL) MiddlewareOption {
	return func(m *middleware) {
		m.external, m.externalErr = nil, nil
		if base == nil {
			return
		}
		if (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" || base.Opaque != "" ||
			base.User != nil || base.RawQuery != "" || base.ForceQuery || base.Fragment != "" {
			m.externalErr = fmt.Errorf("%w: WithExternalURL %q is not an absolute http(s) base URL without userinfo, query or fragment", ErrConfig, base.Redacted())
			return
		}
		b := url.URL{Scheme: base.Scheme, Host: base.Host, Path: strings.TrimSuffix(base.Path, "/"),
			RawPath: strings.TrimSuffix(base.RawPath, "/")}
		m.external = &b
	}
}

// WithLogger sets where the middleware logs its misconfigurations (ErrConfig: a missing or
// invalid WithExternalURL); default slog.Default(). Tokens, proofs and evidence are never
// logged.
func WithLogger(l *slog.Logger) MiddlewareOption {
	return func(m *middleware) { m.log = l }
}

// checkConfig is run once by Middleware: it returns the error that makes every request of
// the route fail closed, and logs it, or nil.
func (m *middleware) checkConfig() error {
	err := m.externalErr
	if err == nil && m.external == nil && (m.pop == PoPDPoP || m.bg != nil) {
		err = ErrNoExternalURL
	}
	if err == nil && m.bg != nil {
		// The attester binds the origin it reached into its evidence, and the issuer mints
		// only for audiences of that origin: the Verifier's audience must be one.
		var oerr error
		m.origin, oerr = api.Origin(m.external.String())
		switch {
		case oerr != nil: // e.g. a non-ASCII host, which attesters never bind
			err = fmt.Errorf("%w: background check: WithExternalURL has no origin attesters can bind: %w", ErrConfig, oerr)
		case !api.AudienceOfOrigin(m.v.expect.Audience, m.origin):
			err = fmt.Errorf("%w: background check: the Verifier's audience %q is not a URL of the external URL's origin %s (without userinfo, query or fragment), which attesters bind into their evidence", ErrConfig, m.v.expect.Audience, m.origin)
		}
	}
	if err != nil {
		m.log.Error("relyingparty: middleware misconfigured: every request will be refused with 500",
			"error", err.Error(), "pop", m.pop.String(), "background_check", m.bg != nil)
	}
	return err
}

// refuseConfig answers a request that cannot be checked for want of configuration, with a
// log line naming the cause (never the request's credentials).
func (m *middleware) refuseConfig(w http.ResponseWriter, r *http.Request, err error) {
	m.log.ErrorContext(r.Context(), "relyingparty: request refused: middleware misconfigured",
		"error", err.Error(), "method", r.Method, "pop", m.pop.String())
	m.onError(w, r, err)
}

// requestURL is the URL the client addressed, as htu names it (RFC 9449 section 4.2): the
// configured public base followed by the request's escaped path (RFC 3986 section 6.2.2; a
// request to /a%2Fb is not one to /a/b). It fails with ErrNoExternalURL without a base: the
// request's Host is never trusted.
func (m *middleware) requestURL(r *http.Request) (*url.URL, error) {
	if m.external == nil {
		if m.externalErr != nil {
			return nil, m.externalErr
		}
		return nil, ErrNoExternalURL
	}
	u := *m.external
	u.Path = m.external.Path + r.URL.Path
	u.RawPath = m.external.EscapedPath() + r.URL.EscapedPath()
	return &u, nil
}
