package evidence

import (
	"bytes"
	"crypto"
	"fmt"
	"slices"
	"sync"

	"github.com/google/go-eventlog/tcg"
	pb "github.com/google/go-tpm-tools/proto/attest"

	"github.com/passport-attest/passport/eventlog"
)

// What the event checks can and cannot see. An event's digest is extended into its PCR; its
// type and data are not. A quote therefore proves the sequence of digests per PCR and nothing
// about the labels: anyone who hands over a log can relabel an event or rewrite its data
// without changing a PCR. Appraisal that reads types or data (secure boot state, boot loader,
// kernel command line) must only believe labels it can check against the digest:
//
//  1. Digest binds data (CheckEventType). For the types below, TCG PC Client PFP section 10.4.1
//     defines the digest as the hash of the event data, so type and data can be checked: an
//     event of such a type whose digest is not H(data) was relabelled (e.g. an
//     EV_EFI_BOOT_SERVICES_APPLICATION renamed EV_EFI_ACTION, which go-eventlog would then
//     silently drop from the list of boot applications) or had its data rewritten. Every real
//     log we have satisfies this for these types; EV_EFI_VARIABLE_BOOT (digest of the variable
//     data only on many firmwares) and EV_EVENT_TAG / EV_PLATFORM_CONFIG_FLAGS (vendor-defined
//     digests, violated by real logs) are deliberately not in the list.
//  2. Well-known digests keep their type (CheckEventType). In PCRs 0-7 a digest equal to
//     H(separator data) must be an EV_SEPARATOR and one equal to H(one of the EV_EFI_ACTION
//     strings of PFP table 17) an EV_EFI_ACTION: a separator relabelled as something else would
//     hide the pre-OS/OS boundary that rule 3 relies on.
//  3. Nothing but the firmware's own post-boundary events after a separator (CheckEventOrder).
//     PFP section 3.3.4 has the firmware extend EV_SEPARATOR into PCRs 0-7 once, when it
//     hands over to the OS loader; after it only a few kinds of events are legitimate (boot
//     applications in PCR4, ExitBootServices and GPT in PCR5, authorities in PCR7, boot
//     variables and handoff tables in PCR1: see allowedAfterSeparator, established on every
//     real log we have). Anything else there, and a second separator, was appended by the OS
//     (which can extend PCRs 0-7 at locality 0) to dress up the firmware's measurements.
//  4. Known types only (CheckEventType). An event type the TCG does not define cannot be
//     interpreted (and makes go-eventlog panic); in a quoted PCR it is refused.
//
// Not detectable, hence not claimed: relabelling between types whose digest is a hash of
// something other than the data (code and firmware measurements: EV_EFI_BOOT_SERVICES_*,
// EV_POST_CODE, EV_IPL, ...). Against those only the PCR values themselves, appraised against
// reference values, protect; the token's measurements claim carries them.

// boundTypes are the event types whose digest is the hash of their data (rule 1).
var boundTypes = map[tcg.EventType]bool{
	tcg.Separator:               true, // PFP 10.4.1: 00000000h or FFFFFFFFh, digest of it
	tcg.EFIAction:               true, // digest of the action string
	tcg.EFIVariableDriverConfig: true, // digest of the UEFI_VARIABLE_DATA
	tcg.EFIVariableAuthority:    true, // digest of the UEFI_VARIABLE_DATA (shim's extra byte tolerated)
	tcg.EFIGPTEvent:             true, // digest of the UEFI_GPT_DATA
	tcg.SCRTMVersion:            true, // digest of the version string
	tcg.NonhostInfo:             true, // digest of the event data
	tcg.OmitBootDeviceEvents:    true, // digest of the event string
}

// actionStrings are the EV_EFI_ACTION event strings of PFP table 17.
var actionStrings = []string{
	tcg.CallingEFIApplication, tcg.ReturningFromEFIApplication, tcg.ExitBootServicesInvocation,
	"Exit Boot Services Returned with Failure", "Exit Boot Services Returned with Success",
}

// allowedAfterSeparator lists, for PCRs 0-7, the event types legitimately measured after that
// PCR's EV_SEPARATOR (rule 3). PCRs 0, 2, 3 and 6 receive nothing after it.
var allowedAfterSeparator = map[uint32][]tcg.EventType{
	1: {tcg.EFIVariableBoot, tcg.EFIVariableBoot2, tcg.EFIHandoffTables, tcg.EFIHandoffTables2},
	4: {tcg.EFIBootServicesApplication, tcg.EFIBootServicesDriver, tcg.EFIAction},
	5: {tcg.EFIAction, tcg.EFIGPTEvent},
	7: {tcg.EFIVariableAuthority},
}

type wellKnown struct{ separator, action [][]byte }

var (
	wellKnownMu sync.Mutex
	wellKnownBy = map[crypto.Hash]*wellKnown{}
)

func wellKnownDigests(h crypto.Hash) *wellKnown {
	wellKnownMu.Lock()
	defer wellKnownMu.Unlock()
	if w, ok := wellKnownBy[h]; ok {
		return w
	}
	sum := func(b []byte) []byte { x := h.New(); x.Write(b); return x.Sum(nil) }
	w := &wellKnown{separator: [][]byte{sum([]byte{0, 0, 0, 0}), sum([]byte{0xff, 0xff, 0xff, 0xff})}}
	for _, s := range actionStrings {
		w.action = append(w.action, sum([]byte(s)))
	}
	wellKnownBy[h] = w
	return w
}

func containsDigest(set [][]byte, d []byte) bool {
	return slices.ContainsFunc(set, func(s []byte) bool { return bytes.Equal(s, d) })
}

// eventFault is a refusal by checkEvents: the k-th verified event (go-tpm-tools' RawEvents,
// which skip EV_NO_ACTION and unquoted PCRs) broke a rule.
type eventFault struct {
	k     int
	check Check
	why   string
}

// checkEvents applies rules 1-4 above to the events go-tpm-tools verified against the quote
// (in log order, digests in bank h). It reads only what the library already computed
// (DigestVerified is H(data) == digest), so its cost is a few comparisons per event.
func checkEvents(events []*pb.Event, h crypto.Hash) *eventFault {
	wk := wellKnownDigests(h)
	var sepSeen [8]bool
	for k, e := range events {
		t := tcg.EventType(e.GetUntrustedType())
		pcr := e.GetPcrIndex()
		if _, ok := t.KnownName(); !ok {
			return &eventFault{k, CheckEventType, fmt.Sprintf("event type %s is not one the TCG defines", t.TCGString())}
		}
		if boundTypes[t] && !e.GetDigestVerified() && !shimAuthority(t, e, h) {
			return &eventFault{k, CheckEventType, fmt.Sprintf("%s event's digest is not the hash of its data: relabelled type or rewritten data", t.TCGString())}
		}
		if t == tcg.Separator && !bytes.Equal(e.GetData(), []byte{0, 0, 0, 0}) && !bytes.Equal(e.GetData(), []byte{0xff, 0xff, 0xff, 0xff}) {
			return &eventFault{k, CheckEventType, "EV_SEPARATOR data is neither 00000000h nor FFFFFFFFh"}
		}
		if pcr > 7 {
			continue
		}
		switch {
		case t != tcg.Separator && containsDigest(wk.separator, e.GetDigest()):
			return &eventFault{k, CheckEventType, fmt.Sprintf("%s event carries the separator digest: a relabelled EV_SEPARATOR", t.TCGString())}
		case t != tcg.EFIAction && containsDigest(wk.action, e.GetDigest()):
			return &eventFault{k, CheckEventType, fmt.Sprintf("%s event carries the digest of an EV_EFI_ACTION string: a relabelled EV_EFI_ACTION", t.TCGString())}
		}
		if sepSeen[pcr] {
			if t == tcg.Separator {
				return &eventFault{k, CheckEventOrder, "second EV_SEPARATOR in the PCR: the firmware measures one"}
			}
			if !slices.Contains(allowedAfterSeparator[pcr], t) {
				return &eventFault{k, CheckEventOrder, fmt.Sprintf("%s event after the PCR's EV_SEPARATOR: appended after the firmware handed over to the OS", t.TCGString())}
			}
		}
		if t == tcg.Separator {
			sepSeen[pcr] = true
		}
	}
	return nil
}

// shimAuthority reports whether an EV_EFI_VARIABLE_AUTHORITY event matches its data without
// the last byte: shim before commit 8a27a48 measured one byte more than it logged (the
// workaround go-eventlog applies too, go-attestation issue 157).
func shimAuthority(t tcg.EventType, e *pb.Event, h crypto.Hash) bool {
	d := e.GetData()
	if t != tcg.EFIVariableAuthority || len(d) == 0 {
		return false
	}
	x := h.New()
	x.Write(d[:len(d)-1])
	return bytes.Equal(x.Sum(nil), e.GetDigest())
}

// logIndex maps the k-th verified event (go-tpm-tools skips EV_NO_ACTION events and the PCRs
// outside the quote) to its position in the log, for error messages. It re-parses the log, so
// it only runs after a refusal; it returns -1 when the log cannot be matched (e.g. the
// library applied one of its log workarounds).
func logIndex(raw []byte, quoted map[uint32][]byte, k int, want *pb.Event) int {
	l, err := eventlog.Parse(raw)
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range l.Events {
		if e.Type == tcg.NoAction {
			continue
		}
		if _, ok := quoted[uint32(e.PCR)]; !ok {
			continue
		}
		if n == k {
			if uint32(e.PCR) == want.GetPcrIndex() && uint32(e.Type) == want.GetUntrustedType() && bytes.Equal(e.Data, want.GetData()) {
				return e.Seq
			}
			return -1
		}
		n++
	}
	return -1
}

// unknownTypeEvent finds the first event of a quoted PCR whose type the TCG does not define
// (what makes go-eventlog panic), for the refusal message.
func unknownTypeEvent(raw []byte, quoted map[uint32][]byte) (pcr, seq int, typ string, ok bool) {
	l, err := eventlog.Parse(raw)
	if err != nil {
		return -1, -1, "", false
	}
	for _, e := range l.Events {
		if _, q := quoted[uint32(e.PCR)]; !q || e.Type == tcg.NoAction {
			continue
		}
		if _, known := e.Type.KnownName(); !known {
			return e.PCR, e.Seq, e.TypeName(), true
		}
	}
	return -1, -1, "", false
}
