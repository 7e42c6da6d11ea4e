// Package eventlog parses and replays TCG PC Client firmware event logs (the
// binary_bios_measurements a Linux kernel exposes) and summarises the measured boot they record.
//
// Parsing is go-eventlog's tcg parser (crypto-agile logs, TCG PC Client Platform Firmware
// Profile (PFP) section 10.2.1 and the "Spec ID Event03" header of section 10.4.5.1, and legacy
// SHA-1 logs, section 10.2.2); this package never decodes the log's framing itself. On top of
// it, Replay computes the PCR values a log extends to, per bank (TPM 2.0 Part 1 section 17.2:
// new = H(old || digest)), applying the rules of PFP section 10.4.5.3 (StartupLocality: PCR0
// starts from the locality of TPM2_Startup) and of the H-CRTM event (PCR0 restarts at 4), and
// Summarise reads the measured-boot state through go-eventlog's extract package.
//
// Bounds: Parse refuses logs over MaxSize bytes. The parser allocates each event's digests and
// data only after checking that the input still holds them, so memory stays O(len(log)) and
// time O(len(log)) per bank, whatever the size fields of a malformed log say.
//
// go-eventlog's decoders of event data (UEFI variables, EFI_SIGNATURE_LISTs, image-load device
// paths; used by its extract package and by go-tpm-tools) allocate what the data's own size
// fields say, up to gigabytes for an EFI_SIGNATURE_LIST whose SignatureSize is below 16. So
// Parse also checks every such structure against its event's length and refuses a log with one
// that does not fit (ErrMalformedEvent, a *MalformedEventError naming the event); the checks
// are listed at checkEvent in structure.go. Summarise runs on parsed logs only, and package
// evidence parses every log before go-tpm-tools sees it. Parse accepts bytes after a 0xFFFFFFFF
// PCR index only when they are all 0xFF padding (ErrTrailingData): go-eventlog would otherwise
// drop the events after it without a word.
package eventlog

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
)

// MaxSize bounds the logs Parse accepts: 4 MiB. Firmware logs are tens of kilobytes (the
// largest real log in our test data is 72 KB); Linux exposes at most the ACPI TPM2 table's log
// area (typically 64 KiB to 1 MiB). The issuer's evidence cap (evidence.MaxAttestationSize,
// 3 MiB) is below it.
const MaxSize = 4 << 20

// ErrTooLarge is returned (wrapped) by Parse for a log over MaxSize bytes.
var ErrTooLarge = errors.New("eventlog: log larger than MaxSize")

// ErrEmpty is returned (wrapped) by Parse for an empty log.
var ErrEmpty = errors.New("eventlog: empty log")

// ErrNoBank is returned (wrapped) by Replay for a bank the log carries no digests for.
var ErrNoBank = errors.New("eventlog: the log carries no digests for this bank")

// Bank names a PCR bank by its hash algorithm, as tpm2-tools and our JSON print it.
type Bank string

// The banks a TCG PC Client log can carry and this package replays.
const (
	SHA1   Bank = "sha1"
	SHA256 Bank = "sha256"
	SHA384 Bank = "sha384"
)

// ParseBank returns the Bank for "sha1", "sha256" or "sha384".
func ParseBank(s string) (Bank, error) {
	switch b := Bank(s); b {
	case SHA1, SHA256, SHA384:
		return b, nil
	}
	return "", fmt.Errorf("eventlog: unknown bank %q (want sha1, sha256 or sha384)", s)
}

// Hash returns the bank's hash function.
func (b Bank) Hash() crypto.Hash {
	switch b {
	case SHA1:
		return crypto.SHA1
	case SHA256:
		return crypto.SHA256
	case SHA384:
		return crypto.SHA384
	}
	return 0
}

func bankOf(a register.HashAlg) (Bank, bool) {
	switch a {
	case register.HashSHA1:
		return SHA1, true
	case register.HashSHA256:
		return SHA256, true
	case register.HashSHA384:
		return SHA384, true
	}
	return "", false
}

// Event is one event of a parsed log. Nothing in it is trusted: only a replay that matches
// PCR values signed by a TPM makes the digests meaningful, and the type and data are never
// covered by a PCR at all.
type Event struct {
	// Seq is the event's 0-based position in the log. In a crypto-agile log the Spec ID Event
	// is event 0 and the first returned event is 1 (tpm2_eventlog's EventNum).
	Seq int
	// PCR is the PCR index the event extends (0 to 23 on a PC Client TPM).
	PCR int
	// Type is the event type (PFP section 10.4.1), e.g. 0x80000003 EV_EFI_BOOT_SERVICES_APPLICATION.
	Type tcg.EventType
	// Data is the event data.
	Data []byte
	// Digests holds the event's digest for each bank the event carries one for.
	Digests map[Bank][]byte
}

// TypeName is the TCG name of the event type, e.g. "EV_SEPARATOR", or "EventType(0x...)" for a
// type the TCG does not define (vendor events).
func (e Event) TypeName() string { return e.Type.TCGString() }

// Log is a parsed TCG PC Client event log.
type Log struct {
	// CryptoAgile is true for a log that starts with a Spec ID Event03 (PFP 10.4.5.1), false for
	// a legacy SHA-1 log.
	CryptoAgile bool
	// Banks lists the digest algorithms the log declares, in its order (SHA-1 only for a legacy
	// log). Algorithms other than SHA-1, SHA-256 and SHA-384 are not listed.
	Banks []Bank
	// Events are every event after the Spec ID Event, EV_NO_ACTION events included.
	Events []Event
}

// specIDSignature starts the data of a crypto-agile log's first event (PFP 10.4.5.1).
var specIDSignature = []byte("Spec ID Event03\x00")

// Parse parses a TCG PC Client event log with go-eventlog's tcg parser. It fails for an empty
// log, one over MaxSize bytes, and any log the parser refuses (truncated events, sizes past
// the end, unknown digest algorithms); trailing 0xFF padding after the last event is tolerated,
// other bytes after a 0xFFFFFFFF PCR index fail with ErrTrailingData. Event data whose size
// fields do not fit the event fails with a *MalformedEventError (ErrMalformedEvent).
func Parse(raw []byte) (*Log, error) {
	el, banks, padded, err := parseFraming(raw)
	if err != nil {
		return nil, err
	}
	l := &Log{CryptoAgile: isCryptoAgile(raw), Banks: banks}
	seq0 := 0
	if l.CryptoAgile {
		seq0 = 1
	}
	perBank := make(map[Bank][]tcg.Event, len(banks))
	for _, a := range el.Algs {
		if b, ok := bankOf(a); ok && perBank[b] == nil {
			perBank[b] = el.Events(a)
		}
	}
	first := perBank[l.Banks[0]]
	l.Events = make([]Event, len(first))
	for i, e := range first {
		ev := Event{Seq: i + seq0, PCR: e.Index, Type: e.Type, Data: e.Data, Digests: make(map[Bank][]byte, len(l.Banks))}
		for _, b := range l.Banks {
			if d := perBank[b][i].Digest; d != nil {
				ev.Digests[b] = d
			}
		}
		l.Events[i] = ev
	}
	if padded {
		if err := l.checkPadding(raw); err != nil {
			return nil, err
		}
	}
	if err := l.checkStructure(); err != nil {
		return nil, err
	}
	return l, nil
}

// Validate runs every check of Parse on raw and returns the error Parse would return, without
// building the Log: a caller that only needs the log refused or accepted saves the per-event
// digest maps and copies. A padded log (bytes after a 0xFFFFFFFF PCR index) takes Parse's full
// path.
func Validate(raw []byte) error {
	_, err := checked(raw)
	if errors.Is(err, ErrPadded) {
		_, err = Parse(raw)
	}
	return err
}

// ErrPadded is returned (wrapped) by ParseForReplay for a log that go-eventlog parses only by
// stopping at a 0xFFFFFFFF PCR index, even when what follows is genuine 0xFF padding (which
// Parse accepts): go-tpm-tools parses logs without allowing padding and refuses such a log.
var ErrPadded = errors.New("eventlog: the log continues after a 0xFFFFFFFF PCR index (padding), which go-tpm-tools does not parse")

// ParseForReplay runs every check of Parse on raw, as Validate does, and returns go-eventlog's
// parse of it (tcg.ParseEventLog with padding not allowed, as go-tpm-tools parses a log), ready
// for (*tcg.EventLog).Verify: a caller that both checks and replays a log (package evidence)
// parses it once. Its errors are Validate's, except that a padded log is refused in any case:
// with Parse's error when that refuses it, else with ErrPadded.
func ParseForReplay(raw []byte) (*tcg.EventLog, error) {
	el, err := checked(raw)
	if errors.Is(err, ErrPadded) {
		if _, perr := Parse(raw); perr != nil {
			return nil, perr
		}
	}
	return el, err
}

// checked is Validate for a log that parses without padding, returning go-eventlog's parse; a
// padded log is ErrPadded, left to the caller.
func checked(raw []byte) (*tcg.EventLog, error) {
	el, banks, padded, err := parseFraming(raw)
	if err != nil {
		return nil, err
	}
	if padded {
		return nil, ErrPadded
	}
	seq0 := 0
	if isCryptoAgile(raw) {
		seq0 = 1
	}
	alg := el.Algs[slices.IndexFunc(el.Algs, func(a register.HashAlg) bool { b, ok := bankOf(a); return ok && b == banks[0] })]
	for i, e := range el.Events(alg) {
		if err := checkEvent(e.Type, e.Data); err != nil {
			return nil, &MalformedEventError{Seq: i + seq0, PCR: e.Index, Type: e.Type, Err: err}
		}
	}
	return el, nil
}

// parseFraming is the part of Parse that runs go-eventlog's parser: size limits, a second try
// allowing 0xFFFFFFFF padding (padded reports it; the caller must then check the padding), and
// the banks the log declares that this package knows, in the log's order (at least one).
func parseFraming(raw []byte) (el *tcg.EventLog, banks []Bank, padded bool, err error) {
	if len(raw) == 0 {
		return nil, nil, false, ErrEmpty
	}
	if len(raw) > MaxSize {
		return nil, nil, false, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), MaxSize)
	}
	el, err = tcg.ParseEventLog(raw, tcg.ParseOpts{})
	if err != nil {
		// go-eventlog stops at a 0xFFFFFFFF PCR index only when allowed to; whether what
		// follows is genuine padding is checked by the caller, once the events' sizes are known.
		var perr error
		if el, perr = tcg.ParseEventLog(raw, tcg.ParseOpts{AllowPadding: true}); perr != nil {
			return nil, nil, false, fmt.Errorf("eventlog: parse: %w", err)
		}
		padded = true
	}
	for _, a := range el.Algs {
		if b, ok := bankOf(a); ok && !slices.Contains(banks, b) {
			banks = append(banks, b)
		}
	}
	if len(banks) == 0 {
		return nil, nil, false, errors.New("eventlog: the log declares no SHA-1, SHA-256 or SHA-384 bank")
	}
	return el, banks, padded, nil
}

// checkPadding accepts a crypto-agile log that go-eventlog parsed only by stopping at a
// 0xFFFFFFFF PCR index when everything from there on is 0xFF (the unused tail of a firmware
// log area). The end of the last event is the sum of the events' TCG_PCR_EVENT2 sizes (PFP
// 10.2.1: PCRIndex, EventType, digest count, an algorithm ID and digest per bank, EventSize,
// the data) after the Spec ID Event (the 32-byte legacy header and its data); that prefix must
// parse on its own into the same events. Anything else fails with ErrTrailingData: events
// hidden after the marker would otherwise be dropped without a word. (A log whose events carry
// digests of banks other than SHA-1, SHA-256 and SHA-384 cannot be measured this way and is
// refused too when padded.)
func (l *Log) checkPadding(raw []byte) error {
	const specHeader = 32
	end := len(raw)
	if l.CryptoAgile && len(raw) >= specHeader {
		end = specHeader + int(binary.LittleEndian.Uint32(raw[28:32]))
		for _, e := range l.Events {
			end += 4 + 4 + 4 + 4 + len(e.Data)
			for _, d := range e.Digests {
				end += 2 + len(d)
			}
		}
	}
	if end >= len(raw) {
		return fmt.Errorf("%w: the log's events end at byte %d of %d", ErrTrailingData, end, len(raw))
	}
	if !allFF(raw[end:]) {
		return fmt.Errorf("%w: %d bytes after the 0xFFFFFFFF PCR index at byte %d are not all 0xFF (events after it would be dropped)", ErrTrailingData, len(raw)-end, end)
	}
	prefix, err := tcg.ParseEventLog(raw[:end], tcg.ParseOpts{})
	if err != nil || len(prefix.Events(prefix.Algs[0])) != len(l.Events) {
		return fmt.Errorf("%w: the events before the padding at byte %d do not parse on their own", ErrTrailingData, end)
	}
	return nil
}

func allFF(b []byte) bool {
	for _, c := range b {
		if c != 0xff {
			return false
		}
	}
	return true
}

// isCryptoAgile reports whether raw starts with a Spec ID Event03: its first event, in the
// fixed-size legacy header format (PFP 10.2.2: PCR index, type, SHA-1 digest, size), is an
// EV_NO_ACTION whose data starts with the signature. Parse has already parsed the log, so
// only the type and the signature are looked at.
func isCryptoAgile(raw []byte) bool {
	const hdr = 32
	if len(raw) < hdr+len(specIDSignature) {
		return false
	}
	return binary.LittleEndian.Uint32(raw[4:8]) == uint32(tcg.NoAction) && bytes.HasPrefix(raw[hdr:], specIDSignature)
}

// HasBank reports whether the log declares bank b.
func (l *Log) HasBank(b Bank) bool { return slices.Contains(l.Banks, b) }
