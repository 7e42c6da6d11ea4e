package evidence

import (
	"bytes"
	"fmt"

	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/eventlog"
)

// diagnose explains why a log does not replay to the quoted PCRs of bank b: it returns the
// first PCR (lowest index) whose replay differs and, when one of its events carries a digest
// that cannot be right for its data (boundTypes), that event's index in the log (else its last
// event). It returns ok=false when the log cannot be parsed or every PCR matches (the failure
// was elsewhere). Only used after a refusal, so it may be slow.
func diagnose(raw []byte, b eventlog.Bank, quoted map[uint32][]byte) (pcr, event int, reason string, ok bool) {
	l, err := eventlog.Parse(raw)
	if err != nil {
		return -1, -1, "", false
	}
	if !l.HasBank(b) {
		return -1, -1, fmt.Sprintf("the event log carries no %s digests (banks %v); only the %s PCR bank is appraised", b, l.Banks, b), true
	}
	r, err := l.Replay(b)
	if err != nil {
		return -1, -1, "", false
	}
	for idx := 0; idx < eventlog.NumPCRs; idx++ {
		want, quotedPCR := quoted[uint32(idx)]
		var evs []eventlog.Event
		for _, e := range l.Events {
			if e.PCR == idx && e.Type != tcg.NoAction {
				evs = append(evs, e)
			}
		}
		if !quotedPCR || len(evs) == 0 {
			continue
		}
		if got, replayed := r.PCRs[idx]; replayed && bytes.Equal(got, want) {
			continue
		}
		if idx == 0 && r.StartupLocality > 0 && bytes.Equal(extendFromZero(b, evs), want) {
			return idx, evs[0].Seq, fmt.Sprintf("the log says PCR0 started at locality %d (StartupLocality event) but the quoted PCR0 is the replay from locality 0: the TPM was started from another locality than the log says", r.StartupLocality), true
		}
		for _, e := range evs {
			if d, has := e.Digests[b]; has && boundTypes[e.Type] {
				h := b.Hash().New()
				h.Write(e.Data)
				if !bytes.Equal(h.Sum(nil), d) {
					return idx, e.Seq, fmt.Sprintf("%s event's digest does not match its data", e.TypeName()), true
				}
			}
		}
		last := evs[len(evs)-1]
		if idx == 0 && r.StartupLocality > 0 {
			return idx, evs[0].Seq, fmt.Sprintf("the log says PCR0 started at locality %d (StartupLocality event) but the quoted PCR0 does not match that replay", r.StartupLocality), true
		}
		return idx, last.Seq, fmt.Sprintf("replaying its events %d..%d does not give the quoted value", evs[0].Seq, last.Seq), true
	}
	return -1, -1, "", false
}

// extendFromZero replays events (all on one PCR) from the all-zero reset value.
func extendFromZero(b eventlog.Bank, evs []eventlog.Event) []byte {
	v := make([]byte, b.Hash().Size())
	for _, e := range evs {
		h := b.Hash().New()
		h.Write(v)
		h.Write(e.Digests[b])
		v = h.Sum(nil)
	}
	return v
}
