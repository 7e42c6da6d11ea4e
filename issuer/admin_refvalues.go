package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/store"
)

// ReferenceValueAdmin is what the admin API needs from the policy to revoke configurations
// (reference values). *policy.Engine implements it; a Config.Policy that does not (the starter
// Reference) leaves reference values unmanaged.
type ReferenceValueAdmin interface {
	// RevokeReferenceValue refuses digest in all evidence from now on and reports whether the
	// revocation is new.
	RevokeReferenceValue(ctx context.Context, digest, reason string) (refvalues.Revocation, bool, error)
	// ReinstateReferenceValue lifts a revocation and reports whether there was one.
	ReinstateReferenceValue(ctx context.Context, digest string) (bool, error)
	// ListRevokedReferenceValues lists the revoked reference values, sorted by digest.
	ListRevokedReferenceValues(ctx context.Context) ([]refvalues.Revocation, error)
}

// ErrReferenceValuesUnmanaged is returned when the policy in use does not manage reference
// values (serve was started without --policy).
var ErrReferenceValuesUnmanaged = errors.New("issuer: reference values are not managed by this policy (start serve with --policy)")

// ListRevokedReferenceValues lists the revoked reference values, sorted by digest: tokens
// already issued whose submods.tpm.measurements.reference_values contain one of these digests
// were minted for a configuration that is no longer accepted, and are to be revoked. It returns
// an empty list when the policy does not manage reference values.
func (is *Issuer) ListRevokedReferenceValues(ctx context.Context) ([]refvalues.Revocation, error) {
	adm, ok := is.cfg.Policy.(ReferenceValueAdmin)
	if !ok {
		return nil, nil
	}
	return adm.ListRevokedReferenceValues(ctx)
}

// refValueRoutes registers the configuration-revocation admin API (api.PathReferenceValueRevocations).
func (is *Issuer) refValueRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+api.PathReferenceValueRevocations, is.handleRevokeRefValue)
	mux.HandleFunc("GET "+api.PathReferenceValueRevocations, is.handleListRevokedRefValues)
	mux.HandleFunc("DELETE "+api.PathReferenceValueRevocations+"/{digest}", is.handleReinstateRefValue)
}

func (is *Issuer) refValueAdmin(w http.ResponseWriter) (ReferenceValueAdmin, bool) {
	adm, ok := is.cfg.Policy.(ReferenceValueAdmin)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, &api.Error{Code: "not_configured", Description: ErrReferenceValuesUnmanaged.Error()})
	}
	return adm, ok
}

func (is *Issuer) handleRevokeRefValue(w http.ResponseWriter, r *http.Request) {
	adm, ok := is.refValueAdmin(w)
	if !ok {
		return
	}
	var req api.RevokeReferenceValueRequest
	if err := decode(w, r, MaxChallengeBody, &req); err != nil {
		is.writeError(w, r, err)
		return
	}
	rev, created, err := adm.RevokeReferenceValue(r.Context(), req.Digest, req.Reason)
	if err != nil {
		is.writeRefValueError(w, r, err)
		return
	}
	is.cfg.Log.InfoContext(r.Context(), "reference value revoked", "digest", rev.Digest, "reason", rev.Reason, "new", created)
	// Tokens already issued for evidence carrying the value are revoked too: one command
	// closes both halves (new evidence refused, live tokens invalid).
	if is.status.store != nil {
		if _, err := is.Revoke(r.Context(), store.Selector{Label: rev.Digest}); err != nil {
			is.writeError(w, r, fmt.Errorf("reference value blocked, but its live tokens could not be revoked: %w", err))
			return
		}
	}
	res := api.RevokeReferenceValueResponse{Revocation: wireRevocation(rev), Created: created}
	if p, ok := is.cfg.Policy.(interface{ PolicyID() string }); ok {
		res.PolicyID = p.PolicyID()
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, res)
}

func (is *Issuer) handleListRevokedRefValues(w http.ResponseWriter, r *http.Request) {
	adm, ok := is.refValueAdmin(w)
	if !ok {
		return
	}
	rs, err := adm.ListRevokedReferenceValues(r.Context())
	if err != nil {
		is.writeRefValueError(w, r, err)
		return
	}
	out := api.ReferenceValueRevocationList{Revocations: make([]api.ReferenceValueRevocation, len(rs))}
	for i, rv := range rs {
		out.Revocations[i] = wireRevocation(rv)
	}
	writeJSON(w, http.StatusOK, out)
}

// ReinstateReferenceValue lifts the revocation of digest (hex; case-insensitive): first the
// status store's label revocation (store.StatusStore.ReinstateLabel: new tokens carrying it
// may be allocated again), then the policy's, when the policy keeps revocations
// (ReferenceValueAdmin). It reports whether there was something to lift: always true under a
// policy that keeps none (the label is lifted whether or not it was revoked). Errors wrap
// refvalues.ErrBadDigest or store.ErrUnavailable.
func (is *Issuer) ReinstateReferenceValue(ctx context.Context, digest string) (bool, error) {
	d, err := refvalues.NormalizeDigest(digest)
	if err != nil {
		return false, err
	}
	if is.status.store != nil {
		if err := is.status.store.ReinstateLabel(ctx, d); err != nil {
			return false, fmt.Errorf("issuer: reinstate label: %w", err)
		}
	}
	adm, ok := is.cfg.Policy.(ReferenceValueAdmin)
	if !ok {
		return true, nil
	}
	return adm.ReinstateReferenceValue(ctx, d)
}

func (is *Issuer) handleReinstateRefValue(w http.ResponseWriter, r *http.Request) {
	found, err := is.ReinstateReferenceValue(r.Context(), r.PathValue("digest"))
	if err != nil {
		is.writeRefValueError(w, r, err)
		return
	}
	if !found {
		writeJSON(w, http.StatusNotFound, &api.Error{Code: "not_found", Description: "that reference value is not revoked in the store (revocations in the policy file stay until the file changes)"})
		return
	}
	is.cfg.Log.InfoContext(r.Context(), "reference value reinstated", "digest", strings.ToLower(r.PathValue("digest")))
	w.WriteHeader(http.StatusNoContent)
}

func wireRevocation(r refvalues.Revocation) api.ReferenceValueRevocation {
	return api.ReferenceValueRevocation{Digest: r.Digest, Reason: r.Reason, RevokedAt: r.RevokedAt}
}

// writeRefValueError maps reference-value errors: bad input 400, store outage 503.
func (is *Issuer) writeRefValueError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, refvalues.ErrBadDigest), errors.Is(err, refvalues.ErrBadRevocation):
		writeJSON(w, http.StatusBadRequest, &api.Error{Code: "invalid_request", Description: err.Error()})
	default:
		is.writeError(w, r, err)
	}
}
