package eventlog

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/google/go-eventlog/tcg"
)

// NumPCRs is the number of PCRs of a PC Client TPM (PC Client Platform TPM Profile section
// 4.6.1): indexes 0 to 23.
const NumPCRs = 24

// startupLocality is the data of a StartupLocality EV_NO_ACTION event on PCR0 without its last
// byte, the locality (PFP section 10.4.5.3, TCG_EfiStartupLocalityEvent).
var startupLocality = []byte("StartupLocality\x00")

// Replayed is the result of replaying a log on one bank.
type Replayed struct {
	// Bank is the bank replayed.
	Bank Bank
	// PCRs maps each PCR the log extends on this bank to its final value. A PCR with an event
	// that could not be replayed (see Unparsed) is left out: its value is unknown.
	PCRs map[int][]byte
	// Unparsed lists the events that could not be replayed, in log order.
	Unparsed []Unparsed
	// StartupLocality is the locality PCR0 started from (0 to 4: the last byte of PCR0's reset
	// value), from the log's StartupLocality event; 0 when there is none.
	StartupLocality int
	// HCRTM is true when the log records an H-CRTM sequence (EV_EFI_HCRTM_EVENT): PCR0 was
	// reset to 0x00..04 by _TPM_Hash_Start before its first extend.
	HCRTM bool
	// Measured counts the events extended (EV_NO_ACTION and unparsed events excluded).
	Measured int
}

// Unparsed is an event that Replay could not use, with the reason.
type Unparsed struct {
	Seq    int    `json:"event"`
	PCR    int    `json:"pcr"`
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// Replay computes the PCR values that l extends bank b to: every PCR starts at zero (PCR0 at
// its StartupLocality, PFP 10.4.5.3), each measured event extends its PCR with its digest for
// b (new = H(old || digest), TPM 2.0 Part 1 section 17.2), EV_NO_ACTION events extend nothing
// (PFP 10.4.1), and an EV_EFI_HCRTM_EVENT first in PCR0 restarts it at 0x00..04 (PFP 10.4.5.4).
// These are go-eventlog's replay rules; it only checks a log against given values, so the
// chain itself is computed here.
//
// Events that cannot be replayed are listed in Unparsed and their PCR is left out of PCRs: an
// event with no digest for b, a digest of the wrong length, a PCR index past NumPCRs, and an
// H-CRTM event that is not PCR0's first. Replay fails with ErrNoBank when l does not declare b.
func (l *Log) Replay(b Bank) (*Replayed, error) {
	if !l.HasBank(b) {
		return nil, fmt.Errorf("%w: %s (the log has %v)", ErrNoBank, b, l.Banks)
	}
	h := b.Hash()
	r := &Replayed{Bank: b, PCRs: map[int][]byte{}}
	broken := map[int]bool{}
	skip := func(e Event, why string) {
		r.Unparsed = append(r.Unparsed, Unparsed{Seq: e.Seq, PCR: e.PCR, Type: e.TypeName(), Reason: why})
		if e.PCR >= 0 && e.PCR < NumPCRs {
			broken[e.PCR] = true
		}
	}
	locality := byte(0)
	for _, e := range l.Events {
		if e.Type == tcg.NoAction {
			if e.PCR == 0 && len(e.Data) == len(startupLocality)+1 && bytes.HasPrefix(e.Data, startupLocality) {
				locality = e.Data[len(startupLocality)]
				r.StartupLocality = int(locality)
			}
			continue
		}
		if e.PCR < 0 || e.PCR >= NumPCRs {
			skip(e, fmt.Sprintf("PCR index %d is past the %d PCRs of a PC Client TPM", e.PCR, NumPCRs))
			continue
		}
		d, ok := e.Digests[b]
		switch {
		case !ok:
			skip(e, "the event carries no "+string(b)+" digest")
			continue
		case len(d) != h.Size():
			skip(e, fmt.Sprintf("%d-byte %s digest, want %d", len(d), b, h.Size()))
			continue
		}
		cur, seen := r.PCRs[e.PCR]
		if e.Type == tcg.EFIHCRTMEvent {
			if seen || e.PCR != 0 {
				skip(e, "EV_EFI_HCRTM_EVENT must be the first event of PCR0")
				continue
			}
			cur = make([]byte, h.Size())
			cur[h.Size()-1] = 4
			seen = true
			r.HCRTM = true
		}
		if !seen {
			cur = make([]byte, h.Size())
			if e.PCR == 0 {
				cur[h.Size()-1] = locality
			}
		}
		hh := h.New()
		hh.Write(cur)
		hh.Write(d)
		r.PCRs[e.PCR] = hh.Sum(nil)
		r.Measured++
	}
	for p := range broken {
		delete(r.PCRs, p)
	}
	return r, nil
}

// Indexes returns the PCR indexes of r.PCRs in ascending order.
func (r *Replayed) Indexes() []int {
	out := make([]int, 0, len(r.PCRs))
	for p := range r.PCRs {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
