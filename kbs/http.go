package kbs

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/dpop"
)

// RetryAfterUnavailable is the Retry-After (seconds, RFC 9110 section 10.2.3) of every 503
// temporarily_unavailable refusal (issuer keys, revocation status or secret store unavailable).
const RetryAfterUnavailable = "2"

// The routes Handler names in r.Pattern (ServeMux pattern syntax).
const (
	RouteResource = "GET " + api.PathKBSResource + "{repository}/{type}/{tag}"
	RouteHealthz  = "GET /healthz"
)

// Realm is the realm of the broker's WWW-Authenticate challenges.
const Realm = "passport-kbs"

// Handler serves the resource endpoint, GET api.PathKBSResource + "{repository}/{type}/{tag}",
// and GET /healthz. A release is 200 with the compact JWE as body (Content-Type MediaType); a
// refusal is the Refusal's status with a JSON api.Error body and, for 401 and 403, RFC 9449
// section 7.1 and RFC 6750 section 3 challenges. Every response is Cache-Control: no-store.
//
// The path is read escaped and never cleaned or decoded: "%2F", "%2e%2e" and every other
// escape fall outside the resource charset and are refused with 400 before any lookup.
//
// The URL a DPoP proof must name is Config.PublicURL followed by the request's escaped path;
// the request's Host header is never used.
//
// The handler routes by itself (a ServeMux would clean the path first) and names the route it
// served in r.Pattern, RouteResource or RouteHealthz, as a ServeMux does, so that per-route
// metrics (metrics.Middleware) tell releases from probes; other paths leave r.Pattern alone.
func (b *Broker) Handler() http.Handler {
	base := b.public
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		switch {
		case strings.HasPrefix(p, api.PathKBSResource):
			r.Pattern = RouteResource
			if r.Method != http.MethodGet {
				w.Header().Set("Allow", http.MethodGet)
				writeJSON(w, http.StatusMethodNotAllowed, &api.Error{Code: "method_not_allowed", Description: "use GET"})
				return
			}
			b.serveResource(w, r, strings.TrimPrefix(p, api.PathKBSResource), base)
		case p == "/healthz":
			r.Pattern = RouteHealthz
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		default:
			writeJSON(w, http.StatusNotFound, &api.Error{Code: "not_found", Description: "no such endpoint"})
		}
	})
}

func (b *Broker) serveResource(w http.ResponseWriter, r *http.Request, name string, base *url.URL) {
	rel, err := b.Release(r.Context(), Request{
		Resource:      name,
		Authorization: r.Header.Values("Authorization"),
		DPoP:          r.Header.Values(dpop.HeaderName),
		Method:        r.Method,
		URL:           requestURL(r, base),
	})
	if err != nil {
		WriteRefusal(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", MediaType)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(rel.JWE))
}

// requestURL is the absolute URL the client addressed, for the DPoP htu check: the broker's
// public base URL and the request's escaped path (a request to /a%2Fb is not one to /a/b).
func requestURL(r *http.Request, base *url.URL) *url.URL {
	u := *base
	u.Path = base.Path + r.URL.Path
	u.RawPath = base.EscapedPath() + r.URL.EscapedPath()
	return &u
}

// WriteRefusal renders a Release error: its status, challenges and a JSON body with the
// Refusal's code and fixed description. An error that is not a *Refusal is a 500.
func WriteRefusal(w http.ResponseWriter, err error) {
	var rf *Refusal
	if !errors.As(err, &rf) {
		rf = refuse(http.StatusInternalServerError, "server_error", "internal", "internal error", err)
	}
	h := w.Header()
	if rf.Status == http.StatusUnauthorized || rf.Status == http.StatusForbidden {
		c := `DPoP realm="` + Realm + `", algs="` + proofAlgs() + `"`
		if rf.Code != "" {
			c += `, error="` + rf.Code + `", error_description="` + rf.Description + `"`
		}
		h.Add("WWW-Authenticate", c)
		h.Add("WWW-Authenticate", `Bearer realm="`+Realm+`"`)
	}
	if rf.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", RetryAfterUnavailable)
	}
	code := rf.Code
	if code == "" {
		code = "unauthorized"
	}
	writeJSON(w, rf.Status, &api.Error{Code: code, Description: rf.Description})
}

func proofAlgs() string {
	s := make([]string, len(dpop.Algorithms))
	for i, a := range dpop.Algorithms {
		s[i] = string(a)
	}
	return strings.Join(s, " ")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
