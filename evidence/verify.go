package evidence

import (
	"bytes"
	"context"
	"crypto"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"github.com/go-jose/go-jose/v4"
	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/store"
)

// tpmGeneratedValue is TPM_GENERATED_VALUE, the magic that starts every TPMS_ATTEST
// (TPM 2.0 Part 2, section 6.2).
const tpmGeneratedValue = 0xff544347

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
}

// SecureBoot reports whether the event log shows UEFI Secure Boot enabled.
func (s *State) SecureBoot() bool { return s.Machine.GetSecureBoot().GetEnabled() }

// Verify appraises one attestation (a go-tpm-tools attest.Attestation protobuf) submitted for
// nonce with the attester's cnf key. In order it checks: sizes and decoding; a non-empty event
// log; AK trust; every quote's TPMS_ATTEST magic, type and extraData binding
// (api.ExtraData(nonce, cnf)); then go-tpm-tools' server.VerifyAttestation pinned to the SHA-256
// bank (signature, PCR digest, event-log replay); then that every quoted PCR without events in
// the log holds its reset value. Refusals are *Error values naming the check.
func (v *Verifier) Verify(ctx context.Context, nonce []byte, cnf *jose.JSONWebKey, attestation []byte) (*State, error) {
	if len(attestation) == 0 || len(attestation) > MaxAttestationSize {
		return nil, fail(CheckDecode, fmt.Errorf("attestation is %d bytes, want 1..%d", len(attestation), MaxAttestationSize))
	}
	want, err := api.ExtraData(nonce, cnf)
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
	akPub, err := akPublic(att)
	if err != nil {
		return nil, fail(CheckDecode, err)
	}
	method, err := v.opts.AKTrust.TrustAK(ctx, akPub, att)
	if err != nil {
		return nil, fail(CheckAKTrust, err)
	}
	bank := tpm2.AlgSHA256
	q := quoteFor(att, bank)
	if q == nil && v.opts.AllowSHA1 {
		bank = tpm2.AlgSHA1
		q = quoteFor(att, bank)
	}
	if q == nil {
		return nil, fail(CheckQuote, errors.New("no quote over the SHA-256 PCR bank"))
	}
	ad, err := checkQuotes(att, want, q)
	if err != nil {
		return nil, err
	}
	ms, err := server.VerifyAttestation(att, server.VerifyOpts{
		Nonce:      want,
		TrustedAKs: []crypto.PublicKey{akPub},
		HashAlgo:   bank,
		AllowSHA1:  bank == tpm2.AlgSHA1,
	})
	if err != nil {
		e := fail(CheckQuote, err)
		if tpm2.Algorithm(q.GetPcrs().GetHash()) == tpm2.AlgSHA256 {
			if pcr, ev, why, ok := diagnose(att.GetEventLog(), q.GetPcrs().GetPcrs()); ok {
				e.Check = CheckReplay
				if pcr < 0 {
					e.Check = CheckEventLog
				}
				e.PCR, e.Event, e.Err = pcr, ev, fmt.Errorf("%s: %w", why, err)
			}
		}
		return nil, e
	}
	logged := loggedPCRs(ms)
	if len(logged) == 0 {
		return nil, fail(CheckEventLog, ErrNothingMeasured)
	}
	if err := checkUnloggedPCRs(q, logged); err != nil {
		return nil, err
	}
	akid, err := Thumbprint(akPub)
	if err != nil {
		return nil, fail(CheckDecode, err)
	}
	name := "sha256"
	if bank == tpm2.AlgSHA1 {
		name = "sha1"
	}
	return &State{
		AK:         akPub,
		AKID:       akid,
		AKTrust:    method,
		Bank:       name,
		PCRs:       q.GetPcrs().GetPcrs(),
		LoggedPCRs: logged,
		Machine:    ms,
		Clock: store.ClockInfo{
			Clock:        ad.ClockInfo.Clock,
			ResetCount:   ad.ClockInfo.ResetCount,
			RestartCount: ad.ClockInfo.RestartCount,
		},
		FirmwareVersion: ad.FirmwareVersion,
	}, nil
}

func akPublic(att *pb.Attestation) (crypto.PublicKey, error) {
	pub, err := tpm2.DecodePublic(att.GetAkPub())
	if err != nil {
		return nil, fmt.Errorf("AK public area: %w", err)
	}
	k, err := pub.Key()
	if err != nil {
		return nil, fmt.Errorf("AK public key: %w", err)
	}
	return k, nil
}

func quoteFor(att *pb.Attestation, alg tpm2.Algorithm) *tpmpb.Quote {
	for _, q := range att.GetQuotes() {
		if tpm2.Algorithm(q.GetPcrs().GetHash()) == alg {
			return q
		}
	}
	return nil
}

// checkQuotes decodes every quote's TPMS_ATTEST before any signature work and checks the magic,
// the type, the extraData binding (constant time), that the PCR values supplied beside each
// quote are exactly its signed selection, and that no bank is quoted twice. It returns the attest
// data of verified, the quote whose signature go-tpm-tools checks next: clock info and firmware
// version are taken from that signed quote only.
func checkQuotes(att *pb.Attestation, want []byte, verified *tpmpb.Quote) (*tpm2.AttestationData, error) {
	var signed *tpm2.AttestationData
	banks := map[tpmpb.HashAlgo]bool{}
	for i, q := range att.GetQuotes() {
		raw := q.GetQuote()
		if len(raw) < 6 || !bytes.Equal(raw[:4], []byte{0xff, 0x54, 0x43, 0x47}) {
			return nil, fail(CheckQuoteData, fmt.Errorf("quote %d: TPMS_ATTEST magic is not TPM_GENERATED_VALUE (0x%08x)", i, uint32(tpmGeneratedValue)))
		}
		ad, err := tpm2.DecodeAttestationData(raw)
		if err != nil {
			return nil, fail(CheckQuoteData, fmt.Errorf("quote %d: %w", i, err))
		}
		if ad.Type != tpm2.TagAttestQuote || ad.AttestedQuoteInfo == nil {
			return nil, fail(CheckQuoteData, fmt.Errorf("quote %d: TPMS_ATTEST type 0x%04x is not TPM_ST_ATTEST_QUOTE (0x8018)", i, uint16(ad.Type)))
		}
		if subtle.ConstantTimeCompare(ad.ExtraData, want) != 1 {
			return nil, fail(CheckBinding, fmt.Errorf("quote %d: extraData is not SHA-256(nonce || cnf thumbprint): the evidence was made for another nonce or key", i))
		}
		sel := ad.AttestedQuoteInfo.PCRSelection
		if tpm2.Algorithm(q.GetPcrs().GetHash()) != sel.Hash {
			return nil, fail(CheckQuoteData, fmt.Errorf("quote %d: PCR values are for bank %v but the quote selects %v", i, q.GetPcrs().GetHash(), sel.Hash))
		}
		if len(q.GetPcrs().GetPcrs()) != len(sel.PCRs) {
			return nil, fail(CheckQuoteData, fmt.Errorf("quote %d: %d PCR values supplied for %d selected PCRs", i, len(q.GetPcrs().GetPcrs()), len(sel.PCRs)))
		}
		for idx := range q.GetPcrs().GetPcrs() {
			if !slices.Contains(sel.PCRs, int(idx)) {
				return nil, &Error{Check: CheckQuoteData, PCR: int(idx), Event: -1, Err: fmt.Errorf("quote %d: PCR value supplied outside the signed selection", i)}
			}
		}
		if banks[q.GetPcrs().GetHash()] {
			return nil, fail(CheckQuoteData, fmt.Errorf("quote %d: a second quote over the same PCR bank", i))
		}
		banks[q.GetPcrs().GetHash()] = true
		if q == verified {
			signed = ad
		}
	}
	if signed == nil {
		return nil, fail(CheckQuoteData, errors.New("attestation carries no quote over the appraised bank"))
	}
	return signed, nil
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
