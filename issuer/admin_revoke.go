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
	if err == nil && req.ReferenceValue != "" {
		// A configuration revocation also refuses new evidence carrying the value, when the
		// policy manages reference values: one command closes both halves.
		err = is.blockReferenceValue(r, req.ReferenceValue, "revoked with its tokens (passport revoke --reference-value)")
	}
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

// blockReferenceValue revokes digest in the policy's reference values, so new evidence carrying
// it is refused. It does nothing when the policy does not manage reference values.
func (is *Issuer) blockReferenceValue(r *http.Request, digest, reason string) error {
	adm, ok := is.cfg.Policy.(ReferenceValueAdmin)
	if !ok {
		return nil
	}
	if _, _, err := adm.RevokeReferenceValue(r.Context(), digest, reason); err != nil {
		return err
	}
	is.cfg.Log.InfoContext(r.Context(), "reference value revoked", "digest", digest, "reason", reason)
	return nil
}
