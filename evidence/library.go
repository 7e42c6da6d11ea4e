package evidence

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/google/go-eventlog/extract"
	gepb "github.com/google/go-eventlog/proto/state"
	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	tpmquote "github.com/google/go-tpm-tools/quote"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
)

// errLibraryPanic marks a panic inside go-tpm-tools / go-eventlog, turned into a refusal.
var errLibraryPanic = errors.New("the event log made go-tpm-tools panic")

// errSHA1NotAllowed is go-tpm-tools' refusal of a SHA-1 PCR bank when SHA-1 is not allowed.
var errSHA1NotAllowed = errors.New("SHA-1 is not allowed for verification (set VerifyOpts.AllowSHA1 to true to allow)")

// verifyAttestation performs the checks of go-tpm-tools' server.VerifyAttestation (v0.4.11)
// for one quote q over a trusted AK ak, as that function makes them with VerifyOpts{Nonce:
// nonce, TrustedAKs: {ak}, HashAlgo: q's bank, AllowSHA1: allowSHA1} and the default options
// (no boot loader parsing, no relaxations), through the same public library calls:
//
//  1. quote.Verify: ak's signature over the TPMS_ATTEST (hash algorithm and scheme checked),
//     its type and quote info, extraData equal to nonce, the supplied PCR values' selection and
//     digest equal to the signed ones;
//  2. (*tcg.EventLog).Verify: el replays to the quoted PCR values (with go-eventlog's
//     workarounds for known firmware bugs);
//  3. extract.FirmwareLogState (TPM register layout) and server.ConvertToMachineState: the
//     machine state, refusing what the library's extraction refuses;
//  4. the SHA-1 bank refused unless allowSHA1.
//
// el is the event log parsed once by eventlog.ParseForReplay (tcg.ParseEventLog without
// padding, as the library parses it), on which the structural checks already ran: calling
// server.VerifyAttestation would parse the log a second time. The AK decoding and trust
// comparison VerifyAttestation starts with are Verify's decodeAK and AKTrust, on the same
// TPMT_PUBLIC. Left out is only its final proto.Merge of the state into an empty MachineState,
// a deep copy of every event that adds nothing when the AK is given (no AK certificate, so no
// instance info). Errors read as the library's. TestLibraryEquivalence and FuzzVerifyParts hold
// this to server.VerifyAttestation: whatever Verify accepts, the library accepts with an equal
// MachineState. go-eventlog panics on event types it does not know; the panic is returned as
// an error wrapping errLibraryPanic.
func verifyAttestation(q *tpmpb.Quote, ak crypto.PublicKey, nonce []byte, el *tcg.EventLog, allowSHA1 bool) (ms *pb.MachineState, err error) {
	defer func() {
		if r := recover(); r != nil {
			ms, err = nil, fmt.Errorf("%w: %v", errLibraryPanic, r)
		}
	}()
	if err := tpmquote.Verify(q, ak, nonce); err != nil {
		return nil, fmt.Errorf("failed to verify quote: %w", err)
	}
	ms, err = machineState(q.GetPcrs(), el)
	if err != nil {
		return nil, fmt.Errorf("failed to parse machine state from TCG event log: failed to validate the PCClient event log: %w", err)
	}
	if !allowSHA1 && tpm2.Algorithm(q.GetPcrs().GetHash()) == tpm2.AlgSHA1 {
		return nil, errSHA1NotAllowed
	}
	return ms, nil
}

// machineState replays el against pcrs and extracts the machine state, as go-eventlog's
// tpmeventlog.ReplayAndExtract and go-tpm-tools' parsePCClientEventLog do from a raw log.
func machineState(pcrs *tpmpb.PCRs, el *tcg.EventLog) (*pb.MachineState, error) {
	bank := register.PCRBank{TCGHashAlgo: gepb.HashAlgo(pcrs.GetHash())}
	h, err := bank.CryptoHash()
	if err != nil {
		return nil, err
	}
	bank.PCRs = make([]register.PCR, 0, len(pcrs.GetPcrs()))
	for idx, d := range pcrs.GetPcrs() {
		bank.PCRs = append(bank.PCRs, register.PCR{Index: int(idx), Digest: d, DigestAlg: h})
	}
	events, err := el.Verify(bank.MRs())
	if err != nil {
		return nil, fmt.Errorf("failed to replay event log: %w", err)
	}
	fs, err := extract.FirmwareLogState(events, h, extract.TPMRegisterConfig, extract.Opts{Loader: extract.UnsupportedLoader})
	if err != nil {
		return nil, err
	}
	return server.ConvertToMachineState(fs)
}
