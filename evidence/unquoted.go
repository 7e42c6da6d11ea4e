package evidence

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-eventlog/extract"
	gepb "github.com/google/go-eventlog/proto/state"
	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
	"github.com/google/go-eventlog/tpmeventlog"
	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/store"
)

// MaxEventLogSize bounds the bare event logs FromEventLog reads (2 MiB, as the attester).
const MaxEventLogSize = 2 << 20

// ErrNoSHA256 means an event log carries no SHA-256 digests (a legacy SHA-1 log).
var ErrNoSHA256 = errors.New("the event log carries no SHA-256 digests (a legacy SHA-1 log); only the SHA-256 bank is appraised")

// FromEventLog builds the State of a bare TCG event log (binary_bios_measurements) for offline
// tools such as `passport policy learn` and `passport policy eval`. There is no quote, so
// nothing is signature-covered: the SHA-256 PCR values are derived by replaying the log's own
// SHA-256 digests (TCG PC Client Platform Firmware Profile section 10.4.1: PCR = H(PCR ||
// digest) from zero, or from the StartupLocality of section 10.4.5.3 for PCR0, or from
// 0x00..04 after an EV_EFI_HCRTM_EVENT), and the machine state is then extracted from those
// values by the same go-eventlog / go-tpm-tools code, with the same options, that Verify uses.
// A policy therefore sees exactly what the issuer would see for a quote of these PCRs.
//
// The State has no AK (AK nil, AKID and AKTrust empty), no clock, Bank "sha256", and PCRs
// holding only the logged PCRs. Errors: a log that eventlog.Parse refuses (an *Error of
// CheckEventLog, naming the PCR and event of malformed event data, before any go-eventlog
// extraction runs), one that go-tpm-tools refuses to extract (the reasons the issuer would
// refuse it), or ErrNoSHA256.
func FromEventLog(log []byte) (*State, error) {
	if len(log) == 0 || len(log) > MaxEventLogSize {
		return nil, fmt.Errorf("evidence: event log is %d bytes, want 1..%d", len(log), MaxEventLogSize)
	}
	if err := checkLogStructure(log); err != nil {
		return nil, err
	}
	pcrs, err := ReplaySHA256(log)
	if err != nil {
		return nil, err
	}
	bank := register.PCRBank{TCGHashAlgo: gepb.HashAlgo_SHA256}
	for idx, v := range pcrs {
		bank.PCRs = append(bank.PCRs, register.PCR{Index: int(idx), Digest: v, DigestAlg: crypto.SHA256})
	}
	fs, err := tpmeventlog.ReplayAndExtract(log, bank, extract.Opts{Loader: extract.UnsupportedLoader})
	if err != nil {
		return nil, fmt.Errorf("evidence: event log: %w", err)
	}
	ms, err := server.ConvertToMachineState(fs)
	if err != nil {
		return nil, fmt.Errorf("evidence: event log: %w", err)
	}
	logged := loggedPCRs(ms)
	if len(logged) == 0 {
		return nil, fmt.Errorf("evidence: %w", ErrNothingMeasured)
	}
	return &State{Bank: "sha256", PCRs: pcrs, LoggedPCRs: logged, Machine: ms, EventLog: log}, nil
}

// ReplaySHA256 replays the SHA-256 digests of a TCG crypto-agile event log and returns the
// resulting value of every PCR the log extends (index -> 32 bytes). It handles the PCR0
// StartupLocality event and H-CRTM as FromEventLog documents.
func ReplaySHA256(log []byte) (map[uint32][]byte, error) {
	el, err := tcg.ParseEventLog(log, tcg.ParseOpts{})
	if err != nil {
		return nil, fmt.Errorf("evidence: event log: %w", err)
	}
	if !slices.Contains(el.Algs, register.HashSHA256) {
		return nil, fmt.Errorf("evidence: %w", ErrNoSHA256)
	}
	pcrs := map[uint32][]byte{}
	locality := byte(0)
	for _, e := range el.Events(register.HashSHA256) {
		if e.Type == tcg.NoAction {
			if e.Index == 0 && len(e.Data) == 17 && bytes.HasPrefix(e.Data, []byte("StartupLocality\x00")) {
				locality = e.Data[16]
			}
			continue
		}
		if len(e.Digest) != sha256.Size {
			return nil, fmt.Errorf("evidence: event log: an event of PCR %d has no SHA-256 digest", e.Index)
		}
		idx := uint32(e.Index)
		cur, ok := pcrs[idx]
		switch {
		case e.Type == tcg.EFIHCRTMEvent && !ok:
			cur = make([]byte, sha256.Size)
			cur[sha256.Size-1] = 4
		case !ok:
			cur = make([]byte, sha256.Size)
			if idx == 0 {
				cur[sha256.Size-1] = locality
			}
		}
		h := sha256.New()
		h.Write(cur)
		h.Write(e.Digest)
		pcrs[idx] = h.Sum(nil)
	}
	return pcrs, nil
}

// FromAttestation builds the State of a go-tpm-tools Attestation protobuf (as `gotpm attest`
// or a passport attester writes it) for offline tools. It is verified for self-consistency
// only: the SHA-256 quote's signature by the attestation's own AK over the quote's own
// extraData, and the event log against the quoted PCRs (go-tpm-tools server.VerifyAttestation
// pinned to SHA-256, as Verify). No nonce binds it and its AK is not trusted: AKTrust is empty.
// PCRs holds the quoted values of the logged PCRs only: quoted PCRs the log does not explain
// (such as a Linux IMA PCR 10, whose runtime log is not in the attestation) are left out, where
// the issuer's Verify refuses them.
func FromAttestation(b []byte) (*State, error) {
	if len(b) == 0 || len(b) > MaxAttestationSize {
		return nil, fmt.Errorf("evidence: attestation is %d bytes, want 1..%d", len(b), MaxAttestationSize)
	}
	att := &pb.Attestation{}
	if err := proto.Unmarshal(b, att); err != nil {
		return nil, fmt.Errorf("evidence: attestation protobuf: %w", err)
	}
	if len(att.GetEventLog()) == 0 {
		return nil, fmt.Errorf("evidence: %w", ErrEmptyEventLog)
	}
	_, akPub, err := decodeAK(att)
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	q := quoteFor(att, tpm2.AlgSHA256)
	if q == nil {
		return nil, errors.New("evidence: attestation has no quote over the SHA-256 PCR bank")
	}
	ad, err := tpm2.DecodeAttestationData(q.GetQuote())
	if err != nil {
		return nil, fmt.Errorf("evidence: quote: %w", err)
	}
	if err := checkLogStructure(att.GetEventLog()); err != nil {
		return nil, err
	}
	ms, err := server.VerifyAttestation(att, server.VerifyOpts{
		Nonce:      ad.ExtraData,
		TrustedAKs: []crypto.PublicKey{akPub},
		HashAlgo:   tpm2.AlgSHA256,
	})
	if err != nil {
		return nil, fmt.Errorf("evidence: attestation: %w", err)
	}
	logged := loggedPCRs(ms)
	if len(logged) == 0 {
		return nil, fmt.Errorf("evidence: %w", ErrNothingMeasured)
	}
	pcrs := make(map[uint32][]byte, len(logged))
	for _, idx := range logged {
		if v, ok := q.GetPcrs().GetPcrs()[idx]; ok {
			pcrs[idx] = v
		}
	}
	akid, err := Thumbprint(akPub)
	if err != nil {
		return nil, err
	}
	return &State{AK: akPub, AKID: akid, Bank: "sha256", PCRs: pcrs, LoggedPCRs: logged, Machine: ms,
		Clock:           store.ClockInfo{Clock: ad.ClockInfo.Clock, ResetCount: ad.ClockInfo.ResetCount, RestartCount: ad.ClockInfo.RestartCount},
		FirmwareVersion: ad.FirmwareVersion, EventLog: att.GetEventLog()}, nil
}
