package evidence

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"github.com/go-jose/go-jose/v4"
	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/eventlog"
	"github.com/passport-attest/passport/store"
)

// MaxAttestationSize bounds the encoded attestation Verify accepts (3 MiB: real event logs are
// 10-100 KB and the attester caps them at 2 MiB; quotes are a few hundred bytes).
const MaxAttestationSize = 3 << 20

// AKTrust decides whether an attestation key may be believed. Implementations: Allowlist,
// AnyAK; certificate chains and EK enrollment plug in here.
type AKTrust interface {
	// TrustAK returns how ak (the key that will be checked to have signed the quotes) is
	// trusted, given the whole attestation (for its AK certificate and intermediates), or an
	// error when it is not.
	TrustAK(ctx context.Context, ak crypto.PublicKey, att *pb.Attestation) (TrustMethod, error)
}

// Options configure a Verifier.
type Options struct {
	// AKTrust is required: Verify fails closed without it.
	AKTrust AKTrust
	// AllowSHA1 lets logs that only carry a SHA-1 bank be verified on that bank. Off by default.
	AllowSHA1 bool
}

// Verifier appraises TPM evidence. It is safe for concurrent use.
type Verifier struct {
	opts Options
	aks  akCache
}

// NewVerifier returns a Verifier; it fails closed when no AK trust is configured.
func NewVerifier(opts Options) (*Verifier, error) {
	if opts.AKTrust == nil {
		return nil, errors.New("evidence: no AK trust configured")
	}
	return &Verifier{opts: opts}, nil
}

// State is what Verify establishes: only values that every check covered.
type State struct {
	// AK is the attestation key that signed the quotes; AKID its RFC 7638 SHA-256 thumbprint,
	// base64url, used as the token's sub and the key of per-AK records.
	AK   crypto.PublicKey
	AKID string
	// AKTrust says how the AK was trusted.
	AKTrust TrustMethod
	// Bank is the PCR bank that was verified ("sha256", or "sha1" with AllowSHA1).
	Bank string
	// PCRs holds the quoted, signature-covered values of that bank by PCR index.
	PCRs map[uint32][]byte
	// LoggedPCRs lists, sorted, the PCRs the event log has events for; their values are
	// explained by the log. Quoted PCRs outside it hold their reset value (checked).
	LoggedPCRs []uint32
	// Machine is go-tpm-tools' parse of the replayed event log (secure boot, firmware, GRUB,
	// kernel command line, raw events).
	Machine *pb.MachineState
	// Clock is the TPM's clock info from the quote (TPMS_CLOCK_INFO).
	Clock store.ClockInfo
	// FirmwareVersion is the TPM firmware version from the quote.
	FirmwareVersion uint64
	// EventLog is the raw event log the state was established from (not copied; nil when
	// unknown), for EventPosition.
	EventLog []byte
}

// EventPosition returns the position in the event log (eventlog.Event.Seq: in a crypto-agile
// log the Spec ID Event is 0, as tpm2_eventlog numbers them) of Machine.GetRawEvents()[k],
// which skips EV_NO_ACTION events and unquoted PCRs; -1 when it cannot be told (no log, k out
// of range, a log the library rewrote). It re-parses the log: meant for messages, not for
// every evaluation.
func (s *State) EventPosition(k int) int {
	events := s.Machine.GetRawEvents()
	if s.EventLog == nil || k < 0 || k >= len(events) {
		return -1
	}
	return logIndex(s.EventLog, s.PCRs, k, events[k])
}

// SecureBoot reports whether the event log shows UEFI Secure Boot enabled.
func (s *State) SecureBoot() bool { return s.Machine.GetSecureBoot().GetEnabled() }

// Verify appraises one attestation (a go-tpm-tools attest.Attestation protobuf) submitted for
// nonce with the attester's cnf key. In order it checks: sizes and decoding; a non-empty event
// log; the AK public area (a restricted signing key, CheckAKKey); AK trust; the appraised
// quote's TPMS_ATTEST magic, type, trailing bytes, PCR selection and extraData binding
// (api.ExtraData(nonce, cnf)); the event log's structure (eventlog.ParseForReplay, which parses
// it once for what follows); then the checks of go-tpm-tools' server.VerifyAttestation pinned
// to the SHA-256 bank (signature, PCR digest, event-log replay, event extraction; made by
// verifyAttestation through the library's own calls on that parse); then that every
// quoted PCR without events in the log holds its reset value, and the event-level rules of
// checkEvents (relabelled types, events appended after a separator, unknown types). Refusals
// are *Error values naming the check and, where the log is at fault, the PCR and the event's
// index in the log. Messages never contain the nonce, keys or PCR values.
func (v *Verifier) Verify(ctx context.Context, nonce []byte, cnf *jose.JSONWebKey, attestation []byte) (*State, error) {
	return v.VerifyFor(ctx, nonce, cnf, "", attestation)
}

// VerifyFor is Verify for evidence made for one relying party's origin (api.AttestRequest's
// Origin, the background check): the quotes' extraData must be api.ExtraDataFor(nonce, cnf,
// origin). With origin "" it is Verify. A malformed origin fails the decode check.
func (v *Verifier) VerifyFor(ctx context.Context, nonce []byte, cnf *jose.JSONWebKey, origin string, attestation []byte) (*State, error) {
	if len(attestation) == 0 || len(attestation) > MaxAttestationSize {
		return nil, fail(CheckDecode, fmt.Errorf("attestation is %d bytes, want 1..%d", len(attestation), MaxAttestationSize))
	}
	want, err := api.ExtraDataFor(nonce, cnf, origin)
	if err != nil {
		return nil, fail(CheckDecode, err)
	}
	att := &pb.Attestation{}
	if err := proto.Unmarshal(attestation, att); err != nil {
		return nil, fail(CheckDecode, fmt.Errorf("attestation protobuf: %w", err))
	}
	if len(att.GetEventLog()) == 0 {
		return nil, fail(CheckEventLog, ErrEmptyEventLog)
	}
	ake, err := v.aks.get(att)
	if err != nil {
		return nil, err
	}
	akPub := ake.pub
	method, err := trustAK(ctx, v.opts.AKTrust, akPub, ake.id, att)
	if err != nil {
		return nil, fail(CheckAKTrust, err)
	}
	bank, name := tpm2.AlgSHA256, eventlog.SHA256
	q := quoteFor(att, bank)
	if q == nil && v.opts.AllowSHA1 {
		bank, name = tpm2.AlgSHA1, eventlog.SHA1
		q = quoteFor(att, bank)
	}
	if q == nil {
		return nil, fail(CheckQuoteData, errors.New("not exactly one quote over the SHA-256 PCR bank"))
	}
	facts, err := checkQuote(q, want)
	if err != nil {
		return nil, err
	}
	quoted := q.GetPcrs().GetPcrs()
	el, err := parseLog(att.GetEventLog())
	if err != nil {
		return nil, err
	}
	ms, err := verifyAttestation(q, akPub, want, el, bank == tpm2.AlgSHA1)
	if err != nil {
		return nil, libraryRefusal(att.GetEventLog(), name, quoted, err)
	}
	logged := loggedPCRs(ms)
	if len(logged) == 0 {
		return nil, fail(CheckEventLog, ErrNothingMeasured)
	}
	if err := checkUnloggedPCRs(q, logged); err != nil {
		return nil, err
	}
	if f := checkEvents(ms.GetRawEvents(), name.Hash()); f != nil {
		ev := ms.GetRawEvents()[f.k]
		return nil, &Error{Check: f.check, PCR: int(ev.GetPcrIndex()), Event: logIndex(att.GetEventLog(), quoted, f.k, ev), Err: errors.New(f.why)}
	}
	return &State{
		AK:              akPub,
		AKID:            ake.id,
		AKTrust:         method,
		Bank:            string(name),
		PCRs:            quoted,
		LoggedPCRs:      logged,
		Machine:         ms,
		Clock:           facts.clock,
		FirmwareVersion: facts.firmware,
		EventLog:        att.GetEventLog(),
	}, nil
}

// libraryRefusal turns a go-tpm-tools refusal into an *Error naming, where the log explains it,
// the PCR and event.
func libraryRefusal(log []byte, b eventlog.Bank, quoted map[uint32][]byte, err error) *Error {
	if errors.Is(err, errLibraryPanic) {
		if pcr, seq, typ, ok := unknownTypeEvent(log, quoted); ok {
			return &Error{Check: CheckEventType, PCR: pcr, Event: seq,
				Err: fmt.Errorf("event type %s is not one the TCG defines; go-eventlog cannot interpret it", typ)}
		}
		return fail(CheckEventLog, err)
	}
	e := fail(CheckQuote, err)
	if pcr, ev, why, ok := diagnose(log, b, quoted); ok {
		e.Check = CheckReplay
		if pcr < 0 {
			e.Check = CheckEventLog
		}
		e.PCR, e.Event, e.Err = pcr, ev, fmt.Errorf("%s: %w", why, err)
	}
	return e
}

// quoteFor returns the attestation's quote over bank alg, or nil when there is none or more than
// one (a second quote over the appraised bank could carry unsigned clock info).
func quoteFor(att *pb.Attestation, alg tpm2.Algorithm) *tpmpb.Quote {
	var found *tpmpb.Quote
	for _, q := range att.GetQuotes() {
		if tpm2.Algorithm(q.GetPcrs().GetHash()) == alg {
			if found != nil {
				return nil
			}
			found = q
		}
	}
	return found
}

func loggedPCRs(ms *pb.MachineState) []uint32 {
	var out []uint32
	for _, e := range ms.GetRawEvents() {
		if !slices.Contains(out, e.GetPcrIndex()) {
			out = append(out, e.GetPcrIndex())
		}
	}
	slices.Sort(out)
	return out
}

// checkUnloggedPCRs refuses a quoted PCR that the event log never touches yet holds something
// other than its reset value (all zeros, or all ones for the DRTM PCRs 17-22): go-tpm-tools
// accepts such a quote, and its value would be asserted without any evidence of what it means.
func checkUnloggedPCRs(q *tpmpb.Quote, logged []uint32) error {
	for idx, val := range q.GetPcrs().GetPcrs() {
		if slices.Contains(logged, idx) {
			continue
		}
		if !allBytes(val, 0x00) && !(idx >= 17 && idx <= 22 && allBytes(val, 0xff)) {
			return &Error{Check: CheckPCRNoEvent, PCR: int(idx), Event: -1,
				Err: errors.New("quoted PCR has a non-reset value but no events in the event log")}
		}
	}
	return nil
}

func allBytes(b []byte, v byte) bool {
	for _, c := range b {
		if c != v {
			return false
		}
	}
	return len(b) > 0
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of a public key, base64url without padding.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("evidence: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}
