package eventlog_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/eventlog"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
)

// crafted returns rhel8-uefi.bin with its db variable replaced by value (digests consistent).
func crafted(t *testing.T, value []byte) []byte {
	t.Helper()
	raw, err := logforge.ReplaceVariable(testenv.EventLog(t, "rhel8-uefi.bin"), "db", value)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// dbSeq is the log index of the db driver-config event of raw (parsed without the checks, by
// go-eventlog), for the refusal's event number.
func dbSeq(t *testing.T, raw []byte) int {
	t.Helper()
	el, err := tcg.ParseEventLog(raw, tcg.ParseOpts{})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range el.Events(el.Algs[0]) {
		if e.Type == tcg.EFIVariableDriverConfig && bytes.Contains(e.Data, []byte("d\x00b\x00")) && binary.LittleEndian.Uint64(e.Data[16:24]) == 2 {
			return i + 1 // after the Spec ID Event
		}
	}
	t.Fatal("no db event")
	return -1
}

// malformed asserts err is the structural refusal of the db event of raw, mentioning want.
func malformed(t *testing.T, raw []byte, err error, want string) {
	t.Helper()
	var me *eventlog.MalformedEventError
	if !errors.Is(err, eventlog.ErrMalformedEvent) || !errors.As(err, &me) {
		t.Fatalf("error %v, want a MalformedEventError", err)
	}
	if me.PCR != 7 || me.Type != tcg.EFIVariableDriverConfig || me.Seq != dbSeq(t, raw) {
		t.Fatalf("refusal names event %d (PCR %d, %s), want the db event %d on PCR 7", me.Seq, me.PCR, me.Type, dbSeq(t, raw))
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

// TestZeroSignatureSizeRefused is the security review's D1 input: a db variable holding an
// X.509 EFI_SIGNATURE_LIST with SignatureSize 0, for which go-eventlog allocates ~4 GiB twice.
// Parse and Summarise refuse it before go-eventlog decodes the variable.
func TestZeroSignatureSizeRefused(t *testing.T) {
	raw, err := logforge.ZeroSignatureSizeDB(testenv.EventLog(t, "rhel8-uefi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = eventlog.Parse(raw)
	malformed(t, raw, err, "SignatureSize 0 below the 16-byte SignatureOwner")
	_, err = eventlog.Summarise(raw, eventlog.SHA256)
	malformed(t, raw, err, "SignatureSize 0")
}

// TestSignatureListChecks refuses each EFI_SIGNATURE_LIST size inconsistency and accepts a
// well-formed list, an empty variable and several lists.
func TestSignatureListChecks(t *testing.T) {
	x509 := logforge.X509SignatureType
	withHeader := func(listSize, hdrSize, sigSize uint32, rest int) []byte {
		b := append([]byte(nil), x509[:]...)
		b = binary.LittleEndian.AppendUint32(b, listSize)
		b = binary.LittleEndian.AppendUint32(b, hdrSize)
		b = binary.LittleEndian.AppendUint32(b, sigSize)
		return append(b, make([]byte, rest)...)
	}
	good := logforge.SignatureList(x509, 48, make([]byte, 96))
	for _, c := range []struct {
		name  string
		value []byte
		want  string // "" for accepted
	}{
		{"well formed", good, ""},
		{"empty", nil, ""},
		{"two lists", append(append([]byte(nil), good...), good...), ""},
		{"SignatureSize 15", logforge.SignatureList(x509, 15, make([]byte, 45)), "SignatureSize 15 below"},
		{"SignatureSize 0 no payload but a header", withHeader(28+8, 8, 0, 8), "SignatureSize 0 below"},
		{"SignatureSize huge", withHeader(28+8, 8, 0xfffffff0, 8), "SignatureSize 4294967280 past"},
		{"not whole signatures", logforge.SignatureList(x509, 40, make([]byte, 60)), "not a whole number"},
		{"list past the data", withHeader(1000, 0, 16, 32), "SignatureListSize 1000 past"},
		{"list below its header", withHeader(20, 0, 16, 0), "SignatureListSize 20 below"},
		{"header past the list", withHeader(40, 20, 16, 12), "SignatureListSize 40 below"},
		{"truncated second header", append(append([]byte(nil), good...), 1, 2, 3), "shorter than its 28-byte header"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := crafted(t, c.value)
			_, err := eventlog.Parse(raw)
			if verr := eventlog.Validate(raw); (verr == nil) != (err == nil) || (err != nil && verr.Error() != err.Error()) {
				t.Fatalf("Validate says %v, Parse %v", verr, err)
			}
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			malformed(t, raw, err, c.want)
		})
	}
}

// TestEventStructureChecks refuses UEFI_VARIABLE_DATA lengths past the event data (on every
// UEFI variable event type) and image-load device paths past theirs.
func TestEventStructureChecks(t *testing.T) {
	banks := []eventlog.Bank{eventlog.SHA256}
	guid := [16]byte{1, 2, 3}
	v := logforge.UEFIVariable(guid, "BootOrder", []byte{1, 0})
	longName := append([]byte(nil), v...)
	binary.LittleEndian.PutUint64(longName[16:24], 1<<40)
	longData := append([]byte(nil), v...)
	binary.LittleEndian.PutUint64(longData[24:32], 3)
	imageLoad := func(dpLen uint64, dp []byte) []byte {
		b := make([]byte, 24)
		b = binary.LittleEndian.AppendUint64(b, dpLen)
		return append(b, dp...)
	}
	fileNode := []byte{4, 4, 8, 0, 'a', 0, 0, 0}
	end := []byte{0x7f, 0xff, 4, 0}
	okPath := append(append([]byte(nil), fileNode...), end...)
	for _, c := range []struct {
		name string
		typ  tcg.EventType
		data []byte
		want string
	}{
		{"boot variable", tcg.EFIVariableBoot, v, ""},
		{"boot variable short", tcg.EFIVariableBoot, v[:31], "shorter than its 32-byte header"},
		{"boot2 name past the data", tcg.EFIVariableBoot2, longName, "UnicodeNameLength 1099511627776 past"},
		{"authority data past the event", tcg.EFIVariableAuthority, longData, "VariableDataLength 3 past the 2 bytes left"},
		{"driver config data past the event", tcg.EFIVariableDriverConfig, longData, "VariableDataLength 3 past"},
		{"application", tcg.EFIBootServicesApplication, imageLoad(uint64(len(okPath)), okPath), ""},
		{"application path past the event", tcg.EFIBootServicesApplication, imageLoad(100, okPath), "device path length 100 past"},
		{"driver node length 0", tcg.EFIBootServicesDriver, imageLoad(8, []byte{4, 4, 0, 0, 0x7f, 0xff, 4, 0}), "Length 0, want 4..8"},
		{"runtime driver node past the path", tcg.EFIRuntimeServicesDriver, imageLoad(8, []byte{4, 4, 9, 0, 0x7f, 0xff, 4, 0}), "Length 9, want 4..8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := logforge.Encode(banks, []logforge.Event{
				logforge.Measure(0, uint32(tcg.SCRTMVersion), []byte("v1"), banks...),
				logforge.Measure(2, uint32(c.typ), c.data, banks...),
			})
			_, err := eventlog.Parse(raw)
			if verr := eventlog.Validate(raw); (verr == nil) != (err == nil) || (err != nil && verr.Error() != err.Error()) {
				t.Fatalf("Validate says %v, Parse %v", verr, err)
			}
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var me *eventlog.MalformedEventError
			if !errors.As(err, &me) || me.Seq != 2 || me.PCR != 2 || me.Type != c.typ || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want a MalformedEventError for event 2 (PCR 2) saying %q", err, c.want)
			}
		})
	}
}

// TestPaddingOnlyIfAllFF: bytes after a 0xFFFFFFFF PCR index are accepted only when all of them
// are 0xFF (security review D5); otherwise the events after the marker would vanish.
// ParseForReplay refuses even genuine padding (ErrPadded), as go-tpm-tools does.
func TestPaddingOnlyIfAllFF(t *testing.T) {
	banks := []eventlog.Bank{eventlog.SHA256}
	a := logforge.Measure(0, uint32(tcg.SCRTMVersion), []byte("A"), banks...)
	base := logforge.Encode(banks, []logforge.Event{a})
	hidden := logforge.Encode(banks, []logforge.Event{
		a,
		logforge.Measure(0xffffffff, uint32(tcg.EFIAction), []byte("marker"), banks...),
		logforge.Measure(1, uint32(tcg.EFIAction), []byte("B"), banks...),
		logforge.Measure(2, uint32(tcg.EFIAction), []byte("C"), banks...),
	})
	real := testenv.EventLog(t, "rhel8-uefi.bin")
	for _, c := range []struct {
		name string
		raw  []byte
		ok   bool
		logN []byte // for an accepted log: the unpadded log, whose events it must have
	}{
		{"small log padded", append(append([]byte(nil), base...), bytes.Repeat([]byte{0xff}, 64)...), true, base},
		{"real log padded", append(append([]byte(nil), real...), bytes.Repeat([]byte{0xff}, 4096)...), true, real},
		{"events after the marker", hidden, false, nil},
		{"junk after the marker", append(append(append([]byte(nil), base...), 0xff, 0xff, 0xff, 0xff), []byte("junkjunk")...), false, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := eventlog.Parse(c.raw)
			if !c.ok {
				if !errors.Is(err, eventlog.ErrTrailingData) {
					t.Fatalf("Parse: %v (events %v), want ErrTrailingData", err, l)
				}
				if _, err := eventlog.Summarise(c.raw, eventlog.SHA256); !errors.Is(err, eventlog.ErrTrailingData) {
					t.Fatalf("Summarise: %v, want ErrTrailingData", err)
				}
				if _, err := eventlog.ParseForReplay(c.raw); !errors.Is(err, eventlog.ErrTrailingData) {
					t.Fatalf("ParseForReplay: %v, want ErrTrailingData", err)
				}
				return
			}
			// go-tpm-tools does not parse a padded log, so neither does what replays for it.
			if _, err := eventlog.ParseForReplay(c.raw); !errors.Is(err, eventlog.ErrPadded) {
				t.Fatalf("ParseForReplay: %v, want ErrPadded", err)
			}
			if el, err := eventlog.ParseForReplay(c.logN); err != nil || el == nil {
				t.Fatalf("ParseForReplay of the unpadded log: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			want, err := eventlog.Parse(c.logN)
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Events) != len(want.Events) {
				t.Fatalf("%d events, want %d", len(l.Events), len(want.Events))
			}
		})
	}
}
