package issuer

import (
	"crypto"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/store"
)

// MaxAdminBody caps admin request bodies (a PEM or JWK public key): 64 KiB.
const MaxAdminBody = 64 << 10

// PinAKRequest is the body of POST /admin/v1/aks: the AK public key to pin, as a PEM
// "PUBLIC KEY" block (PKIX) or as a public JWK (RFC 7517), exactly one of the two.
type PinAKRequest struct {
	PEM string           `json:"pem,omitempty"`
	JWK *jose.JSONWebKey `json:"jwk,omitempty"`
}

// AKList answers GET /admin/v1/aks.
type AKList struct {
	AKs []evidence.AKRecord `json:"aks"`
}

// errNoAllowlist answers the AK admin routes of an issuer without Config.Allowlist.
var errNoAllowlist = errors.New("issuer: no AK allowlist configured")

// adminAKRoutes registers the AK allowlist admin API:
//
//	GET    /admin/v1/aks       list the pinned AKs (config file, admin, enrolled)
//	POST   /admin/v1/aks       pin an AK (PinAKRequest) -> 201 evidence.AKRecord
//	GET    /admin/v1/aks/{id}  one AK by RFC 7638 thumbprint -> 200, or 404
//	DELETE /admin/v1/aks/{id}  unpin -> 204, or 404
func (is *Issuer) adminAKRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/v1/aks", is.handleListAKs)
	mux.HandleFunc("POST /admin/v1/aks", is.handlePinAK)
	mux.HandleFunc("GET /admin/v1/aks/{id}", is.handleGetAK)
	mux.HandleFunc("DELETE /admin/v1/aks/{id}", is.handleUnpinAK)
}

func (is *Issuer) allowlist(w http.ResponseWriter) *evidence.Allowlist {
	if is.cfg.Allowlist == nil {
		writeJSON(w, http.StatusNotImplemented, &api.Error{Code: "not_configured", Description: errNoAllowlist.Error()})
	}
	return is.cfg.Allowlist
}

func (is *Issuer) handleListAKs(w http.ResponseWriter, r *http.Request) {
	al := is.allowlist(w)
	if al == nil {
		return
	}
	list, err := al.List(r.Context())
	if err != nil {
		is.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []evidence.AKRecord{}
	}
	writeJSON(w, http.StatusOK, &AKList{AKs: list})
}

func (is *Issuer) handlePinAK(w http.ResponseWriter, r *http.Request) {
	al := is.allowlist(w)
	if al == nil {
		return
	}
	var req PinAKRequest
	if err := decode(w, r, MaxAdminBody, &req); err != nil {
		is.writeError(w, r, err)
		return
	}
	k, err := req.key()
	if err != nil {
		is.writeError(w, r, fmt.Errorf("%w: %w", ErrBadRequest, err))
		return
	}
	rec, err := al.Pin(r.Context(), k, evidence.TrustAllowlist, "admin", "")
	if err != nil {
		is.writeError(w, r, err)
		return
	}
	is.cfg.Log.InfoContext(r.Context(), "AK pinned", "ak", rec.ID, "source", "admin")
	writeJSON(w, http.StatusCreated, rec)
}

func (req *PinAKRequest) key() (crypto.PublicKey, error) {
	switch {
	case (req.PEM == "") == (req.JWK == nil):
		return nil, errors.New("give exactly one of pem and jwk")
	case req.JWK != nil:
		if !req.JWK.IsPublic() || !req.JWK.Valid() {
			return nil, errors.New("jwk is not a valid public key")
		}
		return req.JWK.Key, nil
	}
	keys, err := evidence.ParsePublicKeys([]byte(req.PEM))
	if err != nil {
		return nil, err
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("pem holds %d keys, want 1", len(keys))
	}
	return keys[0], nil
}

func (is *Issuer) handleGetAK(w http.ResponseWriter, r *http.Request) {
	al := is.allowlist(w)
	if al == nil {
		return
	}
	rec, err := al.Lookup(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrAKUnknown) {
		writeJSON(w, http.StatusNotFound, &api.Error{Code: "not_found", Description: "no AK pinned with this id"})
		return
	}
	if err != nil {
		is.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (is *Issuer) handleUnpinAK(w http.ResponseWriter, r *http.Request) {
	al := is.allowlist(w)
	if al == nil {
		return
	}
	id := r.PathValue("id")
	err := al.Unpin(r.Context(), id)
	if errors.Is(err, store.ErrAKUnknown) {
		writeJSON(w, http.StatusNotFound, &api.Error{Code: "not_found", Description: "no AK pinned with this id"})
		return
	}
	if err != nil {
		is.writeError(w, r, err)
		return
	}
	is.cfg.Log.InfoContext(r.Context(), "AK unpinned", "ak", id)
	w.WriteHeader(http.StatusNoContent)
}
