package evidence_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/eventlog"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/forge"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
)

// zeroSignatureSizeLog is the security review's D1 input: rhel8-uefi.bin whose PCR7 db
// variable holds an X.509 EFI_SIGNATURE_LIST with SignatureSize 0 (digests consistent), and
// the index in the log of that db event.
func zeroSignatureSizeLog(t testing.TB) ([]byte, int) {
	t.Helper()
	raw, err := logforge.ZeroSignatureSizeDB(testenv.EventLog(t, "rhel8-uefi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	el, err := tcg.ParseEventLog(raw, tcg.ParseOpts{})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range el.Events(el.Algs[0]) {
		if e.Type == tcg.EFIVariableDriverConfig && binary.LittleEndian.Uint64(e.Data[16:24]) == 2 && bytes.Equal(e.Data[32:36], []byte("d\x00b\x00")) {
			return raw, i + 1 // the Spec ID Event is event 0
		}
	}
	t.Fatal("no db event in the crafted log")
	return nil, -1
}

// wantMalformedDB checks a refusal of the crafted db event: an event_log *Error naming PCR 7
// and the db event, wrapping eventlog.ErrMalformedEvent.
func wantMalformedDB(t *testing.T, err error, seq int) {
	t.Helper()
	wantRefusal(t, err, evidence.CheckEventLog, 7, seq)
	if !errors.Is(err, eventlog.ErrMalformedEvent) || !strings.Contains(err.Error(), "SignatureSize 0") {
		t.Fatalf("refusal %v does not say the signature list is malformed", err)
	}
}

// TestZeroSignatureSizeVerify: Verify refuses the crafted log (correctly quoted by a trusted AK)
// before go-tpm-tools extracts the db variable (which would allocate ~8 GiB).
func TestZeroSignatureSizeVerify(t *testing.T) {
	raw, seq := zeroSignatureSizeLog(t)
	ak := newForgedAK(t)
	v, err := evidence.NewVerifier(evidence.Options{AKTrust: evidence.AnyAK{}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = verify(v, forged(t, ak, raw, forge.Quote{}))
	wantMalformedDB(t, err, seq)
}

// TestZeroSignatureSizeOffline: FromEventLog (policy learn/eval on a bare log) and
// FromAttestation (on an attestation file) refuse the crafted log the same way.
func TestZeroSignatureSizeOffline(t *testing.T) {
	raw, seq := zeroSignatureSizeLog(t)
	_, err := evidence.FromEventLog(raw)
	wantMalformedDB(t, err, seq)
	_, err = evidence.FromAttestation(forged(t, newForgedAK(t), raw, forge.Quote{}).Bytes())
	wantMalformedDB(t, err, seq)
}

// TestPaddedLogRefused: a log that go-eventlog parses only by stopping at 0xFF padding is
// refused as an event_log fault, even genuine padding, as go-tpm-tools refuses to parse it (the
// library's check, now made on Verify's one parse); hidden events after the marker too.
func TestPaddedLogRefused(t *testing.T) {
	ak := newForgedAK(t)
	v := verifierFor(t, ak.PublicKey())
	padded := append(logforge.MiniUEFI(), bytes.Repeat([]byte{0xff}, 64)...)
	_, err := verify(v, forged(t, ak, padded, forge.Quote{PCRs: mustPCRs(t, logforge.MiniUEFI())}))
	wantRefusal(t, err, evidence.CheckEventLog, -1, -1)
	if !errors.Is(err, eventlog.ErrPadded) {
		t.Fatalf("refusal %v does not say the log is padded", err)
	}
	hidden := append(append(logforge.MiniUEFI(), 0xff, 0xff, 0xff, 0xff), []byte("junkjunk")...)
	_, err = verify(v, forged(t, ak, hidden, forge.Quote{PCRs: mustPCRs(t, logforge.MiniUEFI())}))
	wantRefusal(t, err, evidence.CheckEventLog, -1, -1)
	if !errors.Is(err, eventlog.ErrTrailingData) {
		t.Fatalf("refusal %v does not name the trailing data", err)
	}
}

func mustPCRs(t *testing.T, log []byte) map[uint32][]byte {
	t.Helper()
	p, err := forge.PCRsFor(log)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
