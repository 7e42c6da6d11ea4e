package issuer

import (
	"context"
	"fmt"
	"net/http"

	"github.com/passport-attest/passport/api"
)

// Appraise is the background-check counterpart of Attest (RFC 9334 section 5.2): a relying
// party forwards the evidence an attester produced for one of this issuer's challenges, and
// receives an attestation result addressed to itself (aud = req.Audience) that echoes the
// evidence's nonce in eat_nonce (base64url), so the relying party can tell it answers the
// challenge it handed out. The evidence goes through exactly the checks of Attest: the nonce
// is consumed atomically, the quote, event log and policy are appraised, and the audience
// allowlist (Config.Audiences) applies.
//
// The issuer does not authenticate the relying party. What stops a relying party from having
// evidence it received appraised for another one is the evidence itself: an attester answering
// a relying party's challenge binds that relying party's origin into the quote (Origin), and
// Attest mints only for audiences of the bound origin (docs/BACKGROUND_CHECK.md). Errors are
// those of Attest, plus ErrBadRequest when the request lacks evidence or an audience.
func (is *Issuer) Appraise(ctx context.Context, req *api.AppraiseRequest) (*api.AppraiseResponse, error) {
	switch {
	case req == nil || req.Evidence == nil:
		err := fmt.Errorf("%w: no evidence", ErrBadRequest)
		is.outcome(err)
		return nil, err
	case req.Audience == "":
		err := fmt.Errorf("%w: audience is required", ErrBadRequest)
		is.outcome(err)
		return nil, err
	}
	ev := *req.Evidence
	ev.Audience = req.Audience
	ev.EATNonce = api.EncodeNonce(ev.Nonce)
	res, err := is.Attest(ctx, &ev)
	if err != nil {
		return nil, err
	}
	return &api.AppraiseResponse{Result: res.Token, ExpiresAt: res.ExpiresAt}, nil
}

func (is *Issuer) handleAppraise(w http.ResponseWriter, r *http.Request) {
	var req api.AppraiseRequest
	if err := decode(w, r, MaxAttestBody, &req); err != nil {
		is.outcome(err) // refused before Attest, which counts every other outcome
		is.writeError(w, r, err)
		return
	}
	res, err := is.Appraise(r.Context(), &req)
	if err != nil {
		is.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, res)
}
