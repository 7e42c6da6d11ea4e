package evidence

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
)

// digestOfData lists event types whose SHA-256 digest must equal the hash of the event data
// (TCG PC Client Platform Firmware Profile section 10.4.1 and 10.4.4): a mismatch there
// points at the exact event that was tampered with.
var digestOfData = map[tcg.EventType]bool{
	tcg.Separator:               true,
	tcg.EFIAction:               true,
	tcg.EFIVariableDriverConfig: true,
	tcg.EFIVariableAuthority:    true,
}

// diagnose explains why a log does not replay to the quoted SHA-256 PCRs: it returns the
// first PCR (lowest index) whose replay differs and, when one of its events carries a digest
// that cannot be right for its data, that event's index in the log (else its last event). It
// returns ok=false when the log cannot be parsed or every PCR matches (the failure was
// elsewhere). Only used after a refusal, so it may be slow.
func diagnose(log []byte, quoted map[uint32][]byte) (pcr, event int, reason string, ok bool) {
	el, err := tcg.ParseEventLog(log, tcg.ParseOpts{})
	if err != nil {
		return -1, -1, "", false
	}
	// A log with SHA-256 digests is crypto-agile: its Spec ID Event is event 0 and is not in
	// Events, so the i-th returned event is event i+1 of the log.
	type numbered struct {
		tcg.Event
		n int
	}
	events := el.Events(register.HashSHA256)
	if !slices.Contains(el.Algs, register.HashSHA256) {
		return -1, -1, "the event log carries no SHA-256 digests (a legacy SHA-1 log); only the SHA-256 PCR bank is appraised", true
	}
	locality := -1
	replay := map[int][]byte{}
	byPCR := map[int][]numbered{}
	for i, e := range events {
		if e.Type == tcg.NoAction {
			if e.Index == 0 && bytes.HasPrefix(e.Data, []byte("StartupLocality\x00")) && len(e.Data) == 17 {
				v := make([]byte, sha256.Size)
				v[sha256.Size-1] = e.Data[16]
				replay[0] = v
				locality = int(e.Data[16])
			}
			continue
		}
		if len(e.Digest) != sha256.Size {
			continue
		}
		cur, ok := replay[e.Index]
		if !ok {
			cur = make([]byte, sha256.Size)
		}
		h := sha256.New()
		h.Write(cur)
		h.Write(e.Digest)
		replay[e.Index] = h.Sum(nil)
		byPCR[e.Index] = append(byPCR[e.Index], numbered{e, i + 1})
	}
	for idx := 0; idx < 24; idx++ {
		got, logged := replay[idx]
		want, quotedPCR := quoted[uint32(idx)]
		if !logged || !quotedPCR || bytes.Equal(got, want) {
			continue
		}
		evs := byPCR[idx]
		for _, e := range evs {
			if digestOfData[e.Type] {
				if d := sha256.Sum256(e.Data); !bytes.Equal(d[:], e.Digest) {
					return idx, e.n, fmt.Sprintf("%s event's digest does not match its data", e.Type), true
				}
			}
		}
		if len(evs) == 0 {
			return idx, -1, "PCR starts from a non-zero locality that the log does not explain", true
		}
		last := evs[len(evs)-1]
		if idx == 0 && locality > 0 {
			return idx, evs[0].n, fmt.Sprintf("the log says PCR0 started at locality %d (StartupLocality event) but the quoted PCR0 does not match that replay", locality), true
		}
		return idx, last.n, fmt.Sprintf("replaying its events %d..%d does not give the quoted value", evs[0].n, last.n), true
	}
	return -1, -1, "", false
}
