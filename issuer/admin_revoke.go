package issuer

import (
	"errors"
	"net/http"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/store"
)

// revokeRoutes registers POST /admin/v1/revoke: body api.RevokeRequest (exactly one of jti,
// subject, reference_value), answer api.RevokeResponse; 404 for a jti naming no live token,
// 400 for a bad request, 503 when the store is down.
func (is *Issuer) revokeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+api.PathAdminRevoke, is.handleRevoke)
}

func (is *Issuer) handleRevoke(w http.ResponseWriter, r *http.Request) {
	var req api.RevokeRequest
	if err := decode(w, r, MaxAdminBody, &req); err != nil {
		is.writeError(w, r, err)
		return
	}
	res, err := is.Revoke(r.Context(), store.Selector{ID: req.JTI, Subject: req.Subject, Label: req.ReferenceValue})
	if errors.Is(err, ErrNotRevocable) {
		writeJSON(w, http.StatusNotFound, &api.Error{Code: "not_found", Description: err.Error()})
		return
	}
	if err != nil {
		is.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, res)
}
