package eventlog_test

import (
	"errors"
	"testing"

	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/eventlog"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
)

// FuzzParse feeds arbitrary bytes to Parse, Validate, ParseForReplay, Replay and Summarise,
// seeded with every real log (with -short, the short run in `make test`: logforge.MiniUEFI
// instead, which the fuzzer mutates and minimizes far faster) and a few small forged ones.
// Nothing may panic, Validate must return Parse's error and ParseForReplay too (except that it
// refuses padded logs), a parsed log must replay on every bank it declares, and no replayed
// value may have the wrong length.
func FuzzParse(f *testing.F) {
	base := logforge.MiniUEFI()
	if !testing.Short() {
		for _, rl := range testenv.RealLogs(f) {
			f.Add(rl.Data)
		}
		base = testenv.EventLog(f, "rhel8-uefi.bin")
	}
	f.Add(logforge.MiniUEFI())
	banks := []eventlog.Bank{eventlog.SHA1, eventlog.SHA256}
	f.Add(logforge.Encode(banks, []logforge.Event{
		{PCR: 0, Type: uint32(tcg.NoAction), Data: []byte("StartupLocality\x00\x03"), Digests: map[eventlog.Bank][]byte{eventlog.SHA256: make([]byte, 32)}},
		logforge.Measure(0, uint32(tcg.EFIHCRTMEvent), []byte("HCRTM"), banks...),
		logforge.Measure(7, 0x800000E1, []byte("vendor"), eventlog.SHA256),
	}))
	// The security review's inputs: a db EFI_SIGNATURE_LIST with SignatureSize 0 (D1) and
	// events hidden after a 0xFFFFFFFF PCR index (D5).
	crafted, err := logforge.ZeroSignatureSizeDB(base)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(crafted)
	f.Add(logforge.Encode(banks, []logforge.Event{
		logforge.Measure(0, uint32(tcg.SCRTMVersion), []byte("A"), banks...),
		logforge.Measure(0xffffffff, uint32(tcg.EFIAction), []byte("marker"), banks...),
		logforge.Measure(1, uint32(tcg.EFIAction), []byte("B"), banks...),
	}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		l, err := eventlog.Parse(raw)
		if verr := eventlog.Validate(raw); (verr == nil) != (err == nil) || (err != nil && verr.Error() != err.Error()) {
			t.Fatalf("Validate says %v, Parse %v", verr, err)
		}
		el, rerr := eventlog.ParseForReplay(raw)
		switch {
		case errors.Is(rerr, eventlog.ErrPadded):
			if err != nil {
				t.Fatalf("ParseForReplay says %v where Parse says %v", rerr, err)
			}
		case (rerr == nil) != (err == nil) || (err != nil && rerr.Error() != err.Error()):
			t.Fatalf("ParseForReplay says %v, Parse %v", rerr, err)
		case rerr == nil && (el == nil || len(el.Events(el.Algs[0])) != len(l.Events)):
			t.Fatal("ParseForReplay's parse holds other events than Parse's")
		}
		if err != nil {
			return
		}
		for _, b := range l.Banks {
			r, err := l.Replay(b)
			if err != nil {
				t.Fatalf("parsed log does not replay on its own bank %s: %v", b, err)
			}
			for p, v := range r.PCRs {
				if len(v) != b.Hash().Size() || p < 0 || p >= eventlog.NumPCRs {
					t.Fatalf("PCR %d: %d-byte value", p, len(v))
				}
			}
			if _, err := eventlog.Summarise(raw, b); err != nil {
				t.Fatalf("summary of a parsed log: %v", err)
			}
		}
	})
}
