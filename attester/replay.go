package attester

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/google/go-eventlog/tcg"
	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
)

// MaxEventLogSize bounds the event logs this package parses, presents or replays: 2 MiB, so
// that evidence always fits the issuer's evidence.MaxAttestationSize (3 MiB).
// Firmware logs are tens of kilobytes (the largest real log in our test data is 72 KB; Linux
// exposes at most the ACPI TPM2 table's LAML, typically 64 KiB to 1 MiB). Parsing allocates
// O(size) memory, so a malformed or hostile log cannot make it allocate more than a small
// multiple of this bound.
const MaxEventLogSize = 2 << 20

// ErrLocality is returned (wrapped) by ReplayEventLog when the log says PCR0 did not start
// from zero: a StartupLocality EV_NO_ACTION event with a non-zero locality (TCG PC Client
// Platform Firmware Profile section 10.4.5.3: TPM2_Startup issued from locality 3 or 4 makes
// PCR0 start at 0x00..03 or 0x00..04) or an EV_EFI_HCRTM_EVENT (an H-CRTM sequence from
// locality 4 resets PCR0 to 0x00..04 before extending). The go-tpm-tools simulator always
// starts at locality 0 and exposes no H-CRTM interface, so such a log's PCR0 cannot be
// reproduced: the replay is still carried out in full, but a quote over PCR0 will not verify
// against the log.
var ErrLocality = errors.New("attester: the log needs PCR0 to start from a non-zero locality, which the simulator cannot do; PCR0 will not match the log")

// ReplayReport says what ReplayEventLog extended into the TPM.
type ReplayReport struct {
	// CryptoAgile is true for a TCG crypto-agile log (first event a "Spec ID Event03"
	// EV_NO_ACTION, TCG PC Client PFP section 10.4.5.1) and false for a legacy SHA-1 log
	// (TCG_PCClientPCREvent entries only).
	CryptoAgile bool
	// LogBanks are the digest algorithms the log carries (SHA-1, SHA-256, SHA-384 are
	// recognised), in the Spec ID Event's order.
	LogBanks []tpm2.Algorithm
	// Banks are the PCR banks replayed: LogBanks that the TPM has allocated.
	Banks []tpm2.Algorithm
	// SkippedBanks are LogBanks that the TPM has not allocated; nothing was extended for them.
	SkippedBanks []tpm2.Algorithm
	// Events are the measured events replayed, in log order.
	Events []ReplayedEvent
	// NoAction counts the EV_NO_ACTION events skipped (they never extend a PCR; the Spec ID
	// Event of a crypto-agile log is not counted).
	NoAction int
	// Extends counts the TPM2_PCR_Extend commands issued (events times banks, less
	// MissingDigests).
	Extends int
	// MissingDigests counts, per replayed bank, the events that carried no digest for it.
	// Such a bank cannot match the log; the verifier will refuse quotes over it.
	MissingDigests map[tpm2.Algorithm]int
	// StartupLocality is the locality of the log's StartupLocality event, or -1 when the log
	// has none (PCR0 starts at zero).
	StartupLocality int
	// HCRTM is true when the log carries an EV_EFI_HCRTM_EVENT.
	HCRTM bool
}

// ReplayedEvent is one measured event extended into the TPM.
type ReplayedEvent struct {
	// Seq is the event's 0-based position in the log (a crypto-agile log's Spec ID Event is 0).
	Seq int
	// PCR is the PCR index the event extends (0 to 23).
	PCR int
	// Type is the untrusted event type (TCG PC Client PFP section 10.4.1, e.g. 0x80000003
	// EV_EFI_BOOT_SERVICES_APPLICATION).
	Type uint32
}

// TypeName is the TCG name of the event type, such as "EV_SEPARATOR".
func (e ReplayedEvent) TypeName() string { return tcg.EventType(e.Type).TCGString() }

// specIDSignature starts the data of a crypto-agile log's first event (TCG PC Client PFP
// section 10.4.5.1, TCG_EfiSpecIdEvent.signature).
var specIDSignature = []byte("Spec ID Event03\x00")

// startupLocalityPrefix starts a StartupLocality EV_NO_ACTION event on PCR0; the 17th and last
// byte is the locality (TCG PC Client PFP section 10.4.5.3).
const startupLocalityPrefix = "StartupLocality\x00"

// ReplayEventLog parses a TCG PC Client event log (crypto-agile or legacy SHA-1 format, up to
// MaxEventLogSize bytes) and, for every measured event and every bank that both the log
// carries and the TPM has allocated (client.AllocatedPCRs), issues TPM2_PCR_Extend (TPM 2.0
// Part 3 section 22.2) with the event's digest for that bank. EV_NO_ACTION events are skipped.
// Afterwards the TPM's PCRs equal the log's replayed values, so a quote over them verifies
// against the log, exactly as on the machine the log came from.
//
// It is meant for a fresh simulator (OpenTPM("simulator")): extending a real TPM's PCRs with
// another machine's log destroys that TPM's measured state until the next reboot.
//
// Errors: a log that is empty, too large or malformed, or that extends a PCR the TPM does not
// have, is refused before anything is extended. A TPM failure mid-way leaves the PCRs partly
// extended. When the log needs PCR0 to start from a non-zero locality, the whole log is still
// replayed and the complete report returned together with an error wrapping ErrLocality
// (a log that measures nothing into PCR0 is not affected and gets no error).
func ReplayEventLog(rw io.ReadWriter, log []byte) (ReplayReport, error) {
	rep := ReplayReport{StartupLocality: -1}
	if len(log) == 0 {
		return rep, errors.New("attester: empty event log")
	}
	if len(log) > MaxEventLogSize {
		return rep, fmt.Errorf("attester: event log is %d bytes, more than %d", len(log), MaxEventLogSize)
	}
	el, err := tcg.ParseEventLog(log, tcg.ParseOpts{})
	if err != nil {
		return rep, fmt.Errorf("attester: parse event log: %w", err)
	}
	rep.CryptoAgile = isCryptoAgile(log)

	allocated, err := allocatedBanks(rw)
	if err != nil {
		return rep, err
	}
	type bank struct {
		alg    tpm2.Algorithm
		events []tcg.Event
		pcrs   []int
	}
	var banks []bank
	for _, a := range el.Algs {
		alg := a.GoTPMAlg()
		rep.LogBanks = append(rep.LogBanks, alg)
		pcrs, ok := allocated[alg]
		if !ok {
			rep.SkippedBanks = append(rep.SkippedBanks, alg)
			continue
		}
		rep.Banks = append(rep.Banks, alg)
		banks = append(banks, bank{alg: alg, events: el.Events(a), pcrs: pcrs})
	}
	if len(banks) == 0 {
		return rep, fmt.Errorf("attester: the TPM has allocated none of the log's banks %v", rep.LogBanks)
	}

	// Check every event against every bank before extending anything.
	events := banks[0].events
	seq0 := 0
	if rep.CryptoAgile {
		seq0 = 1 // the Spec ID Event is not among el's events
	}
	for i, ev := range events {
		if ev.Type == tcg.NoAction {
			rep.NoAction++
			if ev.Index == 0 && len(ev.Data) == len(startupLocalityPrefix)+1 &&
				bytes.HasPrefix(ev.Data, []byte(startupLocalityPrefix)) {
				rep.StartupLocality = int(ev.Data[len(startupLocalityPrefix)])
			}
			continue
		}
		if ev.Type == tcg.EFIHCRTMEvent {
			rep.HCRTM = true
		}
		for _, b := range banks {
			if !slices.Contains(b.pcrs, ev.Index) {
				return rep, fmt.Errorf("attester: event %d extends PCR %d, which the TPM's %v bank lacks", i+seq0, ev.Index, b.alg)
			}
			d := b.events[i].Digest
			if d == nil {
				continue
			}
			if h, err := b.alg.Hash(); err != nil || len(d) != h.Size() {
				return rep, fmt.Errorf("attester: event %d: %d-byte digest for bank %v", i+seq0, len(d), b.alg)
			}
		}
		rep.Events = append(rep.Events, ReplayedEvent{Seq: i + seq0, PCR: ev.Index, Type: uint32(ev.Type)})
	}

	for _, re := range rep.Events {
		i := re.Seq - seq0
		for _, b := range banks {
			d := b.events[i].Digest
			if d == nil {
				if rep.MissingDigests == nil {
					rep.MissingDigests = map[tpm2.Algorithm]int{}
				}
				rep.MissingDigests[b.alg]++
				continue
			}
			if err := tpm2.PCRExtend(rw, tpmutil.Handle(re.PCR), b.alg, d, ""); err != nil {
				return rep, fmt.Errorf("attester: TPM2_PCR_Extend PCR %d bank %v (event %d): %w", re.PCR, b.alg, re.Seq, err)
			}
			rep.Extends++
		}
	}

	pcr0 := slices.ContainsFunc(rep.Events, func(e ReplayedEvent) bool { return e.PCR == 0 })
	switch {
	case rep.StartupLocality > 0 && pcr0:
		return rep, fmt.Errorf("%w (StartupLocality event: locality %d)", ErrLocality, rep.StartupLocality)
	case rep.HCRTM:
		return rep, fmt.Errorf("%w (EV_EFI_HCRTM_EVENT: H-CRTM from locality 4)", ErrLocality)
	}
	return rep, nil
}

// isCryptoAgile reports whether the log's first event is a Spec ID Event03: a legacy-format
// TCG_PCClientPCREvent (PCR index 4, type 4, SHA-1 digest 20, size 4 bytes) of type
// EV_NO_ACTION whose data starts with the signature.
func isCryptoAgile(log []byte) bool {
	const hdr = 32
	if len(log) < hdr+len(specIDSignature) {
		return false
	}
	typ := uint32(log[4]) | uint32(log[5])<<8 | uint32(log[6])<<16 | uint32(log[7])<<24
	return typ == uint32(tcg.NoAction) && bytes.HasPrefix(log[hdr:], specIDSignature)
}

// allocatedBanks returns the TPM's allocated PCR banks and the PCR indexes of each.
func allocatedBanks(rw io.ReadWriter) (map[tpm2.Algorithm][]int, error) {
	sels, err := client.AllocatedPCRs(rw)
	if err != nil {
		return nil, fmt.Errorf("attester: read allocated PCR banks: %w", err)
	}
	out := make(map[tpm2.Algorithm][]int, len(sels))
	for _, s := range sels {
		out[s.Hash] = s.PCRs
	}
	return out, nil
}
