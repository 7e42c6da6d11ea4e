package issuer

import (
	"errors"
	"net/http"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/store"
)

// Sentinel errors of the issuer core; HTTP status and error code come from StatusOf.
var (
	ErrBadRequest    = errors.New("issuer: bad request")
	ErrNonceReused   = errors.New("issuer: nonce unknown or already used")
	ErrNonceExpired  = errors.New("issuer: nonce expired")
	ErrClockRollback = errors.New("issuer: TPM clock went backwards for this AK")
	ErrAudience      = errors.New("issuer: audience not allowed")
)

// PolicyError is returned when verified evidence is contraindicated by policy. It lists the
// rules that failed.
type PolicyError struct {
	PolicyID string
	Failures []policy.Failure
}

// Error lists the failed rules: "issuer: evidence refused by policy ID: rule: reason; ...".
func (e *PolicyError) Error() string {
	s := "issuer: evidence refused by policy " + e.PolicyID
	for i, f := range e.Failures {
		if i == 0 {
			s += ": "
		} else {
			s += "; "
		}
		s += f.Rule + ": " + f.Reason
	}
	return s
}

// StatusOf maps an error of the issuer core to an HTTP status and an api.Error body
// (DESIGN.md section 3): 400 bad input, 403 trust failures, 409 nonce reuse or expiry, 503 a
// store outage, 500 anything else. Descriptions carry no secrets.
func StatusOf(err error) (int, *api.Error) {
	var ee *evidence.Error
	var pe *PolicyError
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, &api.Error{Code: "temporarily_unavailable", Description: "the issuer's state store is unavailable; retry later"}
	case errors.Is(err, ErrNonceExpired):
		return http.StatusConflict, &api.Error{Code: "nonce_expired", Description: err.Error()}
	case errors.Is(err, ErrNonceReused):
		return http.StatusConflict, &api.Error{Code: "nonce_reused", Description: err.Error()}
	case errors.Is(err, ErrBadRequest), errors.Is(err, ErrAudience):
		return http.StatusBadRequest, &api.Error{Code: "invalid_request", Description: err.Error()}
	case errors.As(err, &ee):
		if ee.Check == evidence.CheckDecode {
			return http.StatusBadRequest, &api.Error{Code: "invalid_evidence", Description: err.Error()}
		}
		return http.StatusForbidden, &api.Error{Code: "evidence_rejected_" + string(ee.Check), Description: err.Error()}
	case errors.Is(err, ErrClockRollback):
		return http.StatusForbidden, &api.Error{Code: "evidence_rejected_clock", Description: err.Error()}
	case errors.As(err, &pe):
		return http.StatusForbidden, &api.Error{Code: "policy_refused", Description: err.Error()}
	}
	return http.StatusInternalServerError, &api.Error{Code: "server_error", Description: "internal error"}
}
