package eventlog_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/eventlog"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
)

// agree checks, with go-eventlog's own replay verifier, that raw replays to r's values.
func agree(t *testing.T, raw []byte, r *eventlog.Replayed) {
	t.Helper()
	var mrs []register.MR
	for _, p := range r.Indexes() {
		mrs = append(mrs, register.PCR{Index: p, Digest: r.PCRs[p], DigestAlg: r.Bank.Hash()})
	}
	if _, err := tcg.ParseAndReplay(raw, mrs, tcg.ParseOpts{AllowPadding: true}); err != nil {
		t.Fatalf("go-eventlog does not replay the log to our %s values: %v", r.Bank, err)
	}
}

// TestReplayRealLogs replays every real log on every bank it carries and checks each value
// with go-eventlog's verifier (which applies StartupLocality and H-CRTM itself).
func TestReplayRealLogs(t *testing.T) {
	for _, rl := range testenv.RealLogs(t) {
		t.Run(rl.Name, func(t *testing.T) {
			l, err := eventlog.Parse(rl.Data)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range l.Banks {
				r, err := l.Replay(b)
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Unparsed) != 0 {
					t.Errorf("%s: unexpected unparsed events %v", b, r.Unparsed)
				}
				agree(t, rl.Data, r)
			}
		})
	}
}

func TestStartupLocality(t *testing.T) {
	raw := testenv.EventLog(t, "gdc-host.bin")
	l, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Replay(eventlog.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if r.StartupLocality != 3 {
		t.Fatalf("StartupLocality %d, want 3", r.StartupLocality)
	}
	// The same log without its StartupLocality event replays PCR0 from zero: a different value.
	banks, evs := logforge.FromLog(l)
	evs = slices.DeleteFunc(evs, func(e logforge.Event) bool {
		return e.Type == uint32(tcg.NoAction) && bytes.HasPrefix(e.Data, []byte("StartupLocality"))
	})
	l0, err := eventlog.Parse(logforge.Encode(banks, evs))
	if err != nil {
		t.Fatal(err)
	}
	r0, err := l0.Replay(eventlog.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(r0.PCRs[0], r.PCRs[0]) || r0.StartupLocality != 0 {
		t.Fatal("PCR0 does not depend on the StartupLocality event")
	}
	for p, v := range r.PCRs {
		if p != 0 && !bytes.Equal(v, r0.PCRs[p]) {
			t.Fatalf("PCR%d changed without the locality event", p)
		}
	}
	agree(t, raw, r)
}

func TestLegacySHA1(t *testing.T) {
	l, err := eventlog.Parse(testenv.EventLog(t, "debian-10.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if l.CryptoAgile || !slices.Equal(l.Banks, []eventlog.Bank{eventlog.SHA1}) {
		t.Fatalf("debian-10 parsed as crypto-agile %v with banks %v, want a legacy SHA-1 log", l.CryptoAgile, l.Banks)
	}
	if l.Events[0].Seq != 0 {
		t.Fatalf("a legacy log's first event is %d, want 0", l.Events[0].Seq)
	}
	if _, err := l.Replay(eventlog.SHA256); !errors.Is(err, eventlog.ErrNoBank) {
		t.Fatalf("SHA-256 replay of a SHA-1 log: %v, want ErrNoBank", err)
	}
}

var sep = []byte{0, 0, 0, 0}

func TestNoActionIsNotExtended(t *testing.T) {
	banks := []eventlog.Bank{eventlog.SHA256}
	noAction := logforge.Measure(1, uint32(tcg.NoAction), []byte("vendor note"), eventlog.SHA256)
	raw := logforge.Encode(banks, []logforge.Event{noAction, logforge.Measure(1, uint32(tcg.Separator), sep, eventlog.SHA256)})
	l, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := l.Replay(eventlog.SHA256)
	want := extendFromZero(logforge.Hash(eventlog.SHA256, sep))
	if !bytes.Equal(r.PCRs[1], want) || r.Measured != 1 {
		t.Fatalf("PCR1 %x (%d measured), want %x: EV_NO_ACTION must not extend", r.PCRs[1], r.Measured, want)
	}
	if l.Events[0].Seq != 1 {
		t.Fatalf("first event after the Spec ID Event is %d, want 1", l.Events[0].Seq)
	}
	agree(t, raw, r)
}

func extendFromZero(digests ...[]byte) []byte {
	v := make([]byte, sha256.Size)
	for _, d := range digests {
		s := sha256.Sum256(append(v, d...))
		v = s[:]
	}
	return v
}

func TestHCRTM(t *testing.T) {
	banks := []eventlog.Bank{eventlog.SHA256}
	hcrtm := logforge.Event{PCR: 0, Type: uint32(tcg.EFIHCRTMEvent), Data: []byte("HCRTM"),
		Digests: map[eventlog.Bank][]byte{eventlog.SHA256: logforge.Hash(eventlog.SHA256, []byte("h-crtm code"))}}
	raw := logforge.Encode(banks, []logforge.Event{hcrtm, logforge.Measure(0, uint32(tcg.Separator), sep, eventlog.SHA256)})
	l, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := l.Replay(eventlog.SHA256)
	start := make([]byte, sha256.Size)
	start[31] = 4
	s1 := sha256.Sum256(append(start, hcrtm.Digests[eventlog.SHA256]...))
	s2 := sha256.Sum256(append(s1[:], logforge.Hash(eventlog.SHA256, sep)...))
	if !r.HCRTM || !bytes.Equal(r.PCRs[0], s2[:]) {
		t.Fatalf("H-CRTM PCR0 %x, want it to start at 0x00..04", r.PCRs[0])
	}
	agree(t, raw, r)
}

// TestVendorEvents: an event type the TCG does not define is replayed like any other and left
// out of the summary (go-eventlog's extractors would panic on it), with a warning.
func TestVendorEvents(t *testing.T) {
	l, err := eventlog.Parse(testenv.EventLog(t, testenv.DefaultLog))
	if err != nil {
		t.Fatal(err)
	}
	banks, evs := logforge.FromLog(l)
	vendor := logforge.Measure(1, 0x800000E1, []byte("SPDM firmware blob"), banks...)
	evs = slices.Insert(evs, 5, vendor)
	raw := logforge.Encode(banks, evs)
	l2, err := eventlog.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := l2.Replay(eventlog.SHA256)
	r0, _ := l.Replay(eventlog.SHA256)
	if bytes.Equal(r.PCRs[1], r0.PCRs[1]) {
		t.Fatal("the vendor event was not extended into PCR1")
	}
	agree(t, raw, r)
	s, err := eventlog.Summarise(raw, eventlog.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(s.Warnings, func(w string) bool { return strings.Contains(w, "vendor event type EventType(0x800000e1)") }) {
		t.Fatalf("no warning for the vendor event: %v", s.Warnings)
	}
	if s.SecureBoot == nil || s.Kernel == nil {
		t.Fatal("the vendor event stopped the summary")
	}
}

// TestUnparsedEvents: an event without a digest for a bank is reported, and its PCR left out
// of that bank only.
func TestUnparsedEvents(t *testing.T) {
	l, err := eventlog.Parse(testenv.EventLog(t, testenv.DefaultLog))
	if err != nil {
		t.Fatal(err)
	}
	banks, evs := logforge.FromLog(l)
	var idx int
	for i, e := range evs {
		if e.PCR == 9 {
			idx = i
			delete(evs[i].Digests, eventlog.SHA384)
			break
		}
	}
	l2, err := eventlog.Parse(logforge.Encode(banks, evs))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := l2.Replay(eventlog.SHA384)
	if len(r.Unparsed) != 1 || r.Unparsed[0].Seq != idx+1 || r.Unparsed[0].PCR != 9 {
		t.Fatalf("unparsed %v, want event %d on PCR 9", r.Unparsed, idx+1)
	}
	if _, ok := r.PCRs[9]; ok {
		t.Fatal("PCR 9 printed although one of its events could not be replayed")
	}
	if r256, _ := l2.Replay(eventlog.SHA256); len(r256.Unparsed) != 0 || r256.PCRs[9] == nil {
		t.Fatal("the SHA-256 bank suffered from a missing SHA-384 digest")
	}
}

func TestMalformed(t *testing.T) {
	if _, err := eventlog.Parse(nil); !errors.Is(err, eventlog.ErrEmpty) {
		t.Fatalf("empty log: %v", err)
	}
	if _, err := eventlog.Parse(make([]byte, eventlog.MaxSize+1)); !errors.Is(err, eventlog.ErrTooLarge) {
		t.Fatalf("oversized log: %v", err)
	}
	raw := testenv.EventLog(t, testenv.DefaultLog)
	for _, n := range []int{1, 31, 40, 100, 1000, len(raw) - 1} {
		if _, err := eventlog.Parse(raw[:n]); err == nil {
			t.Errorf("log truncated to %d bytes parsed", n)
		}
	}
	// A size field claiming 4 GiB must fail fast, without allocating it.
	banks := []eventlog.Bank{eventlog.SHA256}
	bad := logforge.Encode(banks, []logforge.Event{logforge.Measure(0, uint32(tcg.Separator), sep, eventlog.SHA256)})
	copy(bad[len(bad)-8:], []byte{0xff, 0xff, 0xff, 0xff})
	if _, err := eventlog.Parse(bad); err == nil {
		t.Fatal("event size past the end accepted")
	}
}

func TestSummaryRealLogs(t *testing.T) {
	for _, rl := range testenv.RealLogs(t) {
		l, err := eventlog.Parse(rl.Data)
		if err != nil {
			t.Fatal(err)
		}
		b := l.Banks[0]
		if l.HasBank(eventlog.SHA256) {
			b = eventlog.SHA256
		}
		if _, err := eventlog.Summarise(rl.Data, b); err != nil {
			t.Errorf("%s: %v", rl.Name, err)
		}
	}
	s, err := eventlog.Summarise(testenv.EventLog(t, "ubuntu-2104-no-dbx.bin"), eventlog.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case s.SecureBoot == nil || s.SecureBoot.Enabled || len(s.SecureBoot.Variables) != 5:
		t.Fatalf("secure boot %+v, want off with 5 variables", s.SecureBoot)
	case s.Firmware == nil || s.Firmware.GCEVersion != 1:
		t.Fatalf("firmware %+v, want GCE version 1", s.Firmware)
	case s.BootLoader == nil || len(s.BootLoader.Applications) != 2 || !strings.HasSuffix(s.BootLoader.Applications[0].Path, `shimx64.efi`):
		t.Fatalf("boot loader %+v, want shim then GRUB", s.BootLoader)
	case s.Kernel == nil || s.Kernel.Path != "/boot/vmlinuz-5.11.0-1008-gcp" || !strings.Contains(s.Kernel.CommandLine, "root=PARTUUID="):
		t.Fatalf("kernel %+v", s.Kernel)
	}
	s, err = eventlog.Summarise(testenv.EventLog(t, "cos-101-amd-sev.bin"), eventlog.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if s.SecureBoot == nil || !s.SecureBoot.Enabled || len(s.SecureBoot.Authorities) == 0 {
		t.Fatalf("COS 101 secure boot %+v, want on with authorities", s.SecureBoot)
	}
}

func ExampleLog_Replay() {
	// A two-event log: a separator on PCR 7 and a StartupLocality 3 note for PCR 0 that,
	// having no PCR0 event after it, changes nothing.
	sep := []byte{0, 0, 0, 0}
	raw := logforge.Encode([]eventlog.Bank{eventlog.SHA256}, []logforge.Event{
		{PCR: 0, Type: uint32(tcg.NoAction), Data: []byte("StartupLocality\x00\x03"), Digests: map[eventlog.Bank][]byte{eventlog.SHA256: make([]byte, 32)}},
		logforge.Measure(7, uint32(tcg.Separator), sep, eventlog.SHA256),
	})
	l, err := eventlog.Parse(raw)
	if err != nil {
		panic(err)
	}
	r, err := l.Replay(eventlog.SHA256)
	if err != nil {
		panic(err)
	}
	fmt.Println(l.CryptoAgile, r.StartupLocality, r.Indexes(), hex.EncodeToString(r.PCRs[7])[:16])
	// Output: true 3 [7] 3d458cfe55cc03ea
}
