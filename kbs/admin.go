package kbs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/passport-attest/passport/api"
)

// PathAdminResource is the prefix of the admin API's secret endpoint: PUT (body: the secret's
// raw bytes) and DELETE of PathAdminResource + "{repository}/{type}/{tag}". There is no GET:
// secrets leave the broker only as releases.
const PathAdminResource = "/admin/v1/resource/"

// Authenticator authenticates an admin request, returning nil when it may proceed.
// *issuer.AdminAuth (a bearer credential compared in constant time) implements it.
type Authenticator interface {
	Check(r *http.Request) error
}

// AdminHandler returns the write-only admin API over store, for its own listener (never the
// public one). Every request must pass auth first (401 otherwise, before the name is even
// read). PUT stores the body (1 to MaxSecretSize bytes; 413 beyond) and answers 204; DELETE
// answers 204 or 404. Each operation writes one audit line (event "kbs.admin": action,
// resource, status), never the secret.
func AdminHandler(store Store, auth Authenticator, audit *slog.Logger) http.Handler {
	if audit == nil {
		audit = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, e := adminServe(r, store, auth)
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+Realm+`-admin"`)
		}
		res := ""
		if id, err := api.ParseResourceID(strings.TrimPrefix(r.URL.EscapedPath(), PathAdminResource)); err == nil {
			res = id.String()
		}
		audit.LogAttrs(r.Context(), slog.LevelInfo, "admin request", slog.String("event", "kbs.admin"),
			slog.String("action", r.Method), slog.String("resource", res), slog.Int("status", status))
		if e == nil {
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(status)
			return
		}
		if status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", "PUT, DELETE")
		}
		writeJSON(w, status, e)
	})
}

func adminServe(r *http.Request, store Store, auth Authenticator) (int, *api.Error) {
	if auth == nil || auth.Check(r) != nil {
		return http.StatusUnauthorized, &api.Error{Code: "unauthorized", Description: "admin credential missing or wrong"}
	}
	p := r.URL.EscapedPath()
	if !strings.HasPrefix(p, PathAdminResource) {
		return http.StatusNotFound, &api.Error{Code: "not_found", Description: "no such endpoint"}
	}
	id, err := api.ParseResourceID(strings.TrimPrefix(p, PathAdminResource))
	if err != nil {
		return http.StatusBadRequest, &api.Error{Code: "invalid_request", Description: "resource name must be repository/type/tag of [A-Za-z0-9._-]"}
	}
	switch r.Method {
	case http.MethodPut:
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxSecretSize+1))
		if err != nil {
			return http.StatusBadRequest, &api.Error{Code: "invalid_request", Description: "could not read the body"}
		}
		defer clear(b)
		switch {
		case len(b) == 0:
			return http.StatusBadRequest, &api.Error{Code: "invalid_request", Description: "empty secret"}
		case len(b) > MaxSecretSize:
			return http.StatusRequestEntityTooLarge, &api.Error{Code: "too_large", Description: fmt.Sprintf("a secret is at most %d bytes", MaxSecretSize)}
		}
		if err := store.Put(r.Context(), id, b); err != nil {
			return storeStatus(err)
		}
		return http.StatusNoContent, nil
	case http.MethodDelete:
		if err := store.Delete(r.Context(), id); err != nil {
			return storeStatus(err)
		}
		return http.StatusNoContent, nil
	}
	return http.StatusMethodNotAllowed, &api.Error{Code: "method_not_allowed", Description: "use PUT or DELETE"}
}

func storeStatus(err error) (int, *api.Error) {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, &api.Error{Code: "not_found", Description: "no such resource"}
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, &api.Error{Code: "too_large", Description: "secret too large"}
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable, &api.Error{Code: "temporarily_unavailable", Description: "secret store unavailable"}
	}
	return http.StatusInternalServerError, &api.Error{Code: "server_error", Description: "secret store error"}
}

// AdminClient calls a broker's admin API.
type AdminClient struct {
	// URL is the admin listener's base URL, e.g. "http://127.0.0.1:8445".
	URL string
	// Credential is the admin bearer credential.
	Credential string
	// HTTP sends the requests; nil means a client with a 30 s timeout.
	HTTP *http.Client
}

// Put stores secret under id. A non-2xx answer is an error naming the status and the
// broker's error code.
func (c *AdminClient) Put(ctx context.Context, id api.ResourceID, secret []byte) error {
	return c.do(ctx, http.MethodPut, id, secret)
}

// Delete removes the secret id.
func (c *AdminClient) Delete(ctx context.Context, id api.ResourceID) error {
	return c.do(ctx, http.MethodDelete, id, nil)
}

func (c *AdminClient) do(ctx context.Context, method string, id api.ResourceID, body []byte) error {
	if err := id.Validate(); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+PathAdminResource+id.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("kbs admin: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Credential)
	req.Header.Set("Content-Type", "application/octet-stream")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	res, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("kbs admin: %s %s: %w", method, id, err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 == 2 {
		return nil
	}
	var e api.Error
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if json.Unmarshal(b, &e) != nil || e.Code == "" {
		e = api.Error{Code: fmt.Sprintf("http_%d", res.StatusCode), Description: http.StatusText(res.StatusCode)}
	}
	err = fmt.Errorf("kbs admin: %s %s: HTTP %d: %w", method, id, res.StatusCode, &e)
	if res.StatusCode == http.StatusNotFound {
		err = fmt.Errorf("%w (%w)", err, ErrNotFound)
	}
	return err
}
