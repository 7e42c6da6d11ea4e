package issuer

import (
	"context"
	"errors"
	"net/http"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/store"
)

// KeyAdmin is what the admin API needs of a rotating key set: jwks.Rotator.
type KeyAdmin interface {
	// Keys lists the key set: next, active and retired keys.
	Keys() []jwks.KeyInfo
	// Rotate activates the next key now (see jwks.Rotator.Rotate).
	Rotate(ctx context.Context) error
}

// keyRoutes registers GET /admin/v1/keys and POST /admin/v1/keys/rotate (api.KeysResponse).
// Without Config.Keys (a static --signing-key) the list shows the published keys and rotation
// answers 501.
func (is *Issuer) keyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+api.PathAdminKeys, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, is.keyList())
	})
	mux.HandleFunc("POST "+api.PathAdminKeysRotate, func(w http.ResponseWriter, r *http.Request) {
		if is.cfg.Keys == nil {
			writeJSON(w, http.StatusNotImplemented, &api.Error{Code: "not_implemented",
				Description: "this issuer signs with a fixed key (--signing-key): nothing to rotate"})
			return
		}
		if err := is.cfg.Keys.Rotate(r.Context()); err != nil {
			if !isUnavailable(err) {
				writeJSON(w, http.StatusInternalServerError, &api.Error{Code: "server_error", Description: err.Error()})
				return
			}
			is.writeError(w, r, err)
			return
		}
		is.cfg.Log.InfoContext(r.Context(), "signing keys rotated by the admin API")
		writeJSON(w, http.StatusOK, is.keyList())
	})
}

func isUnavailable(err error) bool { return err != nil && errors.Is(err, store.ErrUnavailable) }

func (is *Issuer) keyList() *api.KeysResponse {
	res := &api.KeysResponse{Keys: []api.KeyInfo{}}
	if is.cfg.Keys != nil {
		for _, k := range is.cfg.Keys.Keys() {
			res.Keys = append(res.Keys, api.KeyInfo{KID: k.KID, Algorithm: k.Algorithm, State: k.State, Created: k.Created,
				Activated: k.Activated, Retired: k.Retired, PublishedUntil: k.PublishedUntil})
		}
		return res
	}
	active, _ := is.cfg.Keyring.Active()
	for _, k := range is.cfg.Keyring.PublicSet().Keys {
		state := "published"
		if k.KeyID == active.KeyID {
			state = jwks.StateActive
		}
		res.Keys = append(res.Keys, api.KeyInfo{KID: k.KeyID, Algorithm: k.Algorithm, State: state})
	}
	return res
}
