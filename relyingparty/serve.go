package relyingparty

import (
	"context"
	"errors"
	"net/http"
)

// serve is one request through Middleware: the token, its (cached) verification, then the
// route's proof of possession, which is checked per request since a proof is per request.
func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if m.confErr != nil { // fail closed: the route cannot check what it must (origin.go)
		m.refuseConfig(w, r, m.confErr)
		return
	}
	if m.bringsEvidence(r) {
		m.serveEvidence(w, r, next)
		return
	}
	p, err := m.credentials(r)
	if err == nil && p.raw == "" {
		if m.bg != nil { // no token: fall back to the background check
			m.serveEvidence(w, r, next)
			return
		}
		err = ErrNoToken
	}
	if err != nil {
		m.onError(w, r, err)
		return
	}
	c, err := m.v.Verify(r.Context(), p.raw)
	if err != nil {
		m.onError(w, r, err)
		return
	}
	if err := m.checkPoP(r, p, c); err != nil {
		m.fail(w, r, err)
		return
	}
	ctx := context.WithValue(r.Context(), ctxKey{}, ctxVal{claims: c, raw: p.raw})
	next.ServeHTTP(w, r.WithContext(ctx))
}

// fail refuses the request with err, logging it first when it is a misconfiguration.
func (m *middleware) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, ErrConfig) {
		m.refuseConfig(w, r, err)
		return
	}
	m.onError(w, r, err)
}

// classifyExtension maps the errors of proof of possession and of the background check to a
// status, an error code and a fixed description; ok is false for other errors.
func classifyExtension(err error) (status int, code, desc string, ok bool) {
	if status, code, desc, ok = classifyPoP(err); ok {
		return
	}
	return classifyBackground(err)
}
