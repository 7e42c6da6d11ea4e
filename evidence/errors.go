package evidence

import (
	"errors"
	"fmt"
)

// Check names a step of the appraisal. Every refusal says which one failed, so an operator (and
// the issuer's 403 response) can tell a forged quote from a stale nonce binding or an unknown AK.
type Check string

// The checks, in the order Verify runs them.
const (
	CheckDecode     Check = "decode"       // the attestation protobuf, the cnf key or the nonce is malformed
	CheckEventLog   Check = "event_log"    // the TCG event log is missing, measures nothing or lacks SHA-256
	CheckAKKey      Check = "ak_key"       // the AK public area is not a restricted, fixedTPM signing key
	CheckAKTrust    Check = "ak_trust"     // the AK is not trusted (allowlist, certificate chain, enrollment)
	CheckQuoteData  Check = "quote_data"   // TPMS_ATTEST magic, type or structure (TPM 2.0 Part 2, 10.12.12)
	CheckBinding    Check = "binding"      // extraData is not SHA-256(nonce || cnf thumbprint [|| origin]) (api.ExtraDataFor)
	CheckQuote      Check = "quote"        // signature, PCR digest or event-log parsing (go-tpm-tools)
	CheckReplay     Check = "replay"       // the event log does not replay to the quoted PCRs
	CheckPCRNoEvent Check = "pcr_no_event" // a quoted PCR holds a value the event log does not explain
	CheckEventType  Check = "event_type"   // an event's type does not fit its digest (relabelled), or is unknown
	CheckEventOrder Check = "event_order"  // an event appended after its PCR's EV_SEPARATOR
)

// Error is the typed refusal returned by Verify. PCR and Event are -1 when not applicable.
// Its message never includes secrets (nonces and keys appear only as lengths or PCR indexes).
type Error struct {
	Check Check
	PCR   int
	Event int
	Err   error
}

// Error says "evidence: CHECK (PCR n, event m): cause".
func (e *Error) Error() string {
	s := "evidence: " + string(e.Check)
	if e.PCR >= 0 {
		s += fmt.Sprintf(" (PCR %d", e.PCR)
		if e.Event >= 0 {
			s += fmt.Sprintf(", event %d", e.Event)
		}
		s += ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrCheck(c)) true for any *Error of check c.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Err == nil && t.PCR == -1 && t.Check == e.Check
}

// ErrCheck returns a comparison target: errors.Is(err, evidence.ErrCheck(evidence.CheckBinding)).
func ErrCheck(c Check) error { return &Error{Check: c, PCR: -1, Event: -1} }

func fail(c Check, err error) *Error { return &Error{Check: c, PCR: -1, Event: -1, Err: err} }

// ErrEmptyEventLog is the cause of a CheckEventLog refusal: go-tpm-tools accepts an empty log.
var ErrEmptyEventLog = errors.New("the TCG event log is empty")

// ErrNothingMeasured is the cause of a CheckEventLog refusal for a log without a single measured
// event (only EV_NO_ACTION): it would "verify" against all-zero PCRs while proving nothing.
var ErrNothingMeasured = errors.New("the TCG event log measures nothing (no event extends a PCR)")
