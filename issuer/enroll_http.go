package issuer

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/enroll"
	"github.com/passport-attest/passport/store"
)

// MaxEnrollBody caps enrollment request bodies (public areas and an EK certificate): 64 KiB.
const MaxEnrollBody = 64 << 10

// enrollRoutes registers EK enrollment (package enroll) on the public API when Config.Enroll
// is set: POST api.PathEnroll (api.EnrollRequest -> api.EnrollChallenge) and POST
// api.PathEnrollActivate (api.ActivateRequest -> api.EnrollResponse).
func (is *Issuer) enrollRoutes(mux *http.ServeMux) {
	if is.cfg.Enroll == nil {
		return
	}
	mux.HandleFunc("POST "+api.PathEnroll, is.handleEnroll)
	mux.HandleFunc("POST "+api.PathEnrollActivate, is.handleActivate)
}

func (is *Issuer) handleEnroll(w http.ResponseWriter, r *http.Request) {
	var req api.EnrollRequest
	if err := decode(w, r, MaxEnrollBody, &req); err != nil {
		is.writeError(w, r, err)
		return
	}
	ch, err := is.cfg.Enroll.Start(r.Context(), &req)
	if err != nil {
		is.cfg.Log.InfoContext(r.Context(), "enrollment refused", "reason", err.Error())
		is.writeEnrollError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, ch)
}

func (is *Issuer) handleActivate(w http.ResponseWriter, r *http.Request) {
	var req api.ActivateRequest
	if err := decode(w, r, MaxEnrollBody, &req); err != nil {
		is.writeError(w, r, err)
		return
	}
	res, err := is.cfg.Enroll.Finish(r.Context(), &req)
	if err != nil {
		is.cfg.Log.InfoContext(r.Context(), "enrollment refused", "reason", err.Error())
		is.writeEnrollError(w, r, err)
		return
	}
	is.cfg.Log.InfoContext(r.Context(), "AK enrolled", "ak", res.AKID)
	writeJSON(w, http.StatusOK, res)
}

// writeEnrollError renders enroll's errors: 400 bad input, 403 untrusted EK or failed
// activation, 409 unknown or used enrollment, 429 another AK enrolled with the EK within the
// re-enrollment interval (Retry-After: whole seconds until it may, RFC 9110 section 10.2.3),
// 503 store outage.
func (is *Issuer) writeEnrollError(w http.ResponseWriter, r *http.Request, err error) {
	var status int
	var code string
	switch {
	case errors.Is(err, store.ErrUnavailable):
		is.writeError(w, r, err)
		return
	case errors.Is(err, enroll.ErrBadRequest):
		status, code = http.StatusBadRequest, "invalid_request"
	case errors.Is(err, enroll.ErrUntrustedEK):
		status, code = http.StatusForbidden, "ek_untrusted"
	case errors.Is(err, enroll.ErrActivation):
		status, code = http.StatusForbidden, "activation_failed"
	case errors.Is(err, enroll.ErrEnrollmentUnknown):
		status, code = http.StatusConflict, "enrollment_unknown"
	case errors.Is(err, enroll.ErrReenrollTooSoon):
		status, code = http.StatusTooManyRequests, "reenroll_too_soon"
		wait := time.Second
		if te, ok := errors.AsType[*enroll.TooSoonError](err); ok {
			wait = te.RetryAfter
		}
		w.Header().Set("Retry-After", strconv.Itoa(max(int(math.Ceil(wait.Seconds())), 1)))
	default:
		is.writeError(w, r, err)
		return
	}
	writeJSON(w, status, &api.Error{Code: code, Description: err.Error()})
}
