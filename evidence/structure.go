package evidence

import (
	"errors"
	"fmt"

	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/eventlog"
)

// checkLogStructure checks an event log with eventlog.Validate (Parse's checks without building
// the parsed log), whose structural checks refuse
// event data with size fields that do not fit it (eventlog.ErrMalformedEvent: a UEFI variable,
// an EFI_SIGNATURE_LIST with a SignatureSize below 16, an image-load device path) and bytes
// hidden after a padding marker (eventlog.ErrTrailingData). It runs before any go-tpm-tools or
// go-eventlog extraction, which would otherwise allocate what those size fields say (gigabytes
// for one crafted db variable). Refusals are *Error values of CheckEventLog; for malformed event
// data they name the PCR and the event's index in the log.
func checkLogStructure(log []byte) error {
	return logRefusal(eventlog.Validate(log))
}

// parseLog is checkLogStructure that also returns go-eventlog's parse of the log
// (eventlog.ParseForReplay), which verifyAttestation replays: the log is parsed once. A log
// that parses only with 0xFF padding skipped is refused too (eventlog.ErrPadded), as
// go-tpm-tools refuses it.
func parseLog(log []byte) (*tcg.EventLog, error) {
	el, err := eventlog.ParseForReplay(log)
	if err != nil {
		return nil, logRefusal(err)
	}
	return el, nil
}

// logRefusal turns an eventlog refusal into an *Error of CheckEventLog (nil stays nil).
func logRefusal(err error) error {
	if err == nil {
		return nil
	}
	var me *eventlog.MalformedEventError
	if errors.As(err, &me) {
		return &Error{Check: CheckEventLog, PCR: me.PCR, Event: me.Seq, Err: err}
	}
	return fail(CheckEventLog, fmt.Errorf("the event log does not parse: %w", err))
}
