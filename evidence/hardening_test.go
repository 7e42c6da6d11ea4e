package evidence_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-eventlog/tcg"
	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/eventlog"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/forge"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
)

func newForgedAK(t testing.TB) *forge.AK {
	t.Helper()
	ak, err := forge.NewECC()
	if err != nil {
		t.Fatal(err)
	}
	return ak
}

func verifierFor(t testing.TB, keys ...crypto.PublicKey) *evidence.Verifier {
	t.Helper()
	al, err := evidence.NewAllowlist(keys...)
	if err != nil {
		t.Fatal(err)
	}
	v, err := evidence.NewVerifier(evidence.Options{AKTrust: al})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func forged(t testing.TB, ak *forge.AK, log []byte, q forge.Quote) *forge.Evidence {
	t.Helper()
	ev, err := ak.Attest(log, q)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// wantRefusal fails unless err is an *evidence.Error of check c (and, when pcr/event >= 0,
// naming that PCR and event).
func wantRefusal(t *testing.T, err error, c evidence.Check, pcr, event int) *evidence.Error {
	t.Helper()
	var ee *evidence.Error
	if !errors.As(err, &ee) {
		t.Fatalf("got %v, want a %s refusal", err, c)
	}
	if ee.Check != c || (pcr >= 0 && ee.PCR != pcr) || (event >= 0 && ee.Event != event) {
		t.Fatalf("got %v (check %s, PCR %d, event %d), want check %s PCR %d event %d", err, ee.Check, ee.PCR, ee.Event, c, pcr, event)
	}
	return ee
}

func verify(v *evidence.Verifier, ev *forge.Evidence) (*evidence.State, error) {
	return v.Verify(context.Background(), ev.Nonce, ev.CNF, ev.Bytes())
}

// TestForgedBaseline: a correctly forged quote over a real log verifies, so every refusal
// below is caused by its one defect.
func TestForgedBaseline(t *testing.T) {
	ak := newForgedAK(t)
	v := verifierFor(t, ak.PublicKey())
	for _, name := range []string{testenv.DefaultLog, "cos-101-amd-sev.bin", "ubuntu-2404-amd-sevsnp.bin"} {
		st, err := verify(v, forged(t, ak, testenv.EventLog(t, name), forge.Quote{}))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Clock.ResetCount != 1 || st.Clock.Clock != 1000 {
			t.Fatalf("clock info %+v not read from the quote", st.Clock)
		}
	}
}

func TestQuoteStructureRefusals(t *testing.T) {
	ak := newForgedAK(t)
	v := verifierFor(t, ak.PublicKey())
	log := testenv.EventLog(t, testenv.DefaultLog)
	cases := []struct {
		name   string
		mutate func([]byte) []byte
		want   string
	}{
		{"wrong magic", func(b []byte) []byte { b[3] ^= 0x01; return b }, "magic"},
		{"certify instead of quote", func(b []byte) []byte { b[5] = 0x17; return b }, "TPM_ST_ATTEST_QUOTE"},
		{"trailing bytes", func(b []byte) []byte { return append(b, 0x00, 0x01) }, "2 bytes follow"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verify(v, forged(t, ak, log, forge.Quote{Mutate: tc.mutate}))
			ee := wantRefusal(t, err, evidence.CheckQuoteData, -1, -1)
			if !strings.Contains(ee.Error(), tc.want) {
				t.Fatalf("%v does not say %q", ee, tc.want)
			}
		})
	}
}

// TestPCRSelection: PCR values supplied beside the quote must be exactly its signed selection.
func TestPCRSelection(t *testing.T) {
	ak := newForgedAK(t)
	v := verifierFor(t, ak.PublicKey())
	log := testenv.EventLog(t, testenv.DefaultLog)
	pcrs, err := forge.PCRsFor(log)
	if err != nil {
		t.Fatal(err)
	}
	delete(pcrs, 16)
	ev := forged(t, ak, log, forge.Quote{PCRs: pcrs})
	if _, err := verify(v, ev); err != nil {
		t.Fatalf("quote over PCRs 0-15,17-23: %v", err)
	}
	ev.Att.Quotes[0].Pcrs.Pcrs[16] = make([]byte, 32) // unsigned value slipped in beside the quote
	_, err = verify(v, ev)
	wantRefusal(t, err, evidence.CheckQuoteData, 16, -1)
}

// TestQuotedPCRWithoutEvents: go-tpm-tools accepts a quoted PCR the log never mentions; we
// refuse it unless it holds its reset value. On the simulator: PCR 15 extended behind the log.
func TestQuotedPCRWithoutEvents(t *testing.T) {
	log := testenv.EventLog(t, testenv.DefaultLog)
	rw, err := attester.OpenTPM("simulator")
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := attester.ReplayEventLog(rw, log); err != nil {
		t.Fatal(err)
	}
	if err := tpm2.PCRExtend(rw, 15, tpm2.AlgSHA256, bytes.Repeat([]byte{7}, 32), ""); err != nil {
		t.Fatal(err)
	}
	a, err := attester.New(attester.Options{TPM: rw, EventLog: log})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	nonce := make([]byte, api.NonceSize)
	rand.Read(nonce)
	req, err := a.Evidence(nonce)
	if err != nil {
		t.Fatal(err)
	}
	_, err = verifierFor(t, a.AKPublic()).Verify(context.Background(), nonce, req.CNF, req.Attestation)
	wantRefusal(t, err, evidence.CheckPCRNoEvent, 15, -1)
}

// TestFlippedBits flips one bit at a time across a real (simulator-made) quote and its
// signature: every variant must be refused, none verified.
func TestFlippedBits(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	v := verifierFor(t, a.AKPublic())
	nonce := make([]byte, api.NonceSize)
	rand.Read(nonce)
	req, err := a.Evidence(nonce)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), nonce, req.CNF, req.Attestation); err != nil {
		t.Fatal(err)
	}
	var base pb.Attestation
	if err := proto.Unmarshal(req.Attestation, &base); err != nil {
		t.Fatal(err)
	}
	qi := slices.IndexFunc(base.Quotes, func(q *tpmpb.Quote) bool { return q.GetPcrs().GetHash() == 0x0b })
	tried := 0
	for _, field := range []string{"quote", "signature"} {
		n := len(base.Quotes[qi].Quote)
		if field == "signature" {
			n = len(base.Quotes[qi].RawSig)
		}
		for i := 0; i < n; i++ {
			bits := []int{i % 8}
			if i < 8 {
				bits = []int{0, 1, 2, 3, 4, 5, 6, 7}
			}
			for _, bit := range bits {
				att := proto.Clone(&base).(*pb.Attestation)
				b := att.Quotes[qi].Quote
				if field == "signature" {
					b = att.Quotes[qi].RawSig
				}
				b[i] ^= 1 << bit
				raw, _ := proto.Marshal(att)
				if _, err := v.Verify(context.Background(), nonce, req.CNF, raw); err == nil {
					t.Fatalf("%s byte %d bit %d flipped: verified", field, i, bit)
				}
				tried++
			}
		}
	}
	t.Logf("%d single-bit variants refused", tried)
}

// TestBindingRefusals: the quote's extraData must be SHA-256(nonce || cnf thumbprint).
func TestBindingRefusals(t *testing.T) {
	ak := newForgedAK(t)
	v := verifierFor(t, ak.PublicKey())
	log := testenv.EventLog(t, testenv.DefaultLog)
	ev := forged(t, ak, log, forge.Quote{})
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, err := v.Verify(context.Background(), ev.Nonce, &jose.JSONWebKey{Key: &other.PublicKey}, ev.Bytes())
	wantRefusal(t, err, evidence.CheckBinding, -1, -1)

	_, err = v.Verify(context.Background(), append(ev.Nonce, 0), ev.CNF, ev.Bytes())
	wantRefusal(t, err, evidence.CheckDecode, -1, -1) // a nonce longer than 32 bytes

	want, _ := api.ExtraData(ev.Nonce, ev.CNF)
	long := forged(t, ak, log, forge.Quote{ExtraData: append(want, 0)})
	_, err = v.Verify(context.Background(), ev.Nonce, ev.CNF, withEvidence(long, ev))
	wantRefusal(t, err, evidence.CheckBinding, -1, -1) // 33-byte extraData starting with the binding
}

// withEvidence returns long's attestation bytes; long was forged for its own nonce, but its
// extraData was set explicitly, so only the bytes matter.
func withEvidence(long, _ *forge.Evidence) []byte { return long.Bytes() }

func TestEmptyEventLog(t *testing.T) {
	ak := newForgedAK(t)
	v := verifierFor(t, ak.PublicKey())
	ev := forged(t, ak, testenv.EventLog(t, testenv.DefaultLog), forge.Quote{})
	ev.Att.EventLog = nil
	_, err := verify(v, ev)
	if !errors.Is(err, evidence.ErrEmptyEventLog) {
		t.Fatalf("empty log: %v", err)
	}
}

// TestAKAttributes: a pinned key whose public area is not a restricted signing key is refused.
func TestAKAttributes(t *testing.T) {
	ak := newForgedAK(t)
	ak.Public.Attributes &^= tpm2.FlagRestricted
	v := verifierFor(t, ak.PublicKey())
	_, err := verify(v, forged(t, ak, testenv.EventLog(t, testenv.DefaultLog), forge.Quote{}))
	ee := wantRefusal(t, err, evidence.CheckAKKey, -1, -1)
	if !strings.Contains(ee.Error(), "restricted") {
		t.Fatal(ee)
	}
}

// TestAKCertificateForAnotherKey: an AK certificate that chains to a trusted root but certifies
// another key than the AK that signed the quote is refused end to end (AK trust by chain).
func TestAKCertificateForAnotherKey(t *testing.T) {
	gce := gceAttestation(t, "gce-cos-85-nonce9009.pb")
	ak := newForgedAK(t)
	chain := &evidence.CertChain{Roots: server.GceEKRoots, Intermediates: server.GceEKIntermediates}
	v, err := evidence.NewVerifier(evidence.Options{AKTrust: chain})
	if err != nil {
		t.Fatal(err)
	}
	ev := forged(t, ak, testenv.EventLog(t, testenv.DefaultLog), forge.Quote{})
	ev.Att.AkCert, ev.Att.IntermediateCerts = gce.AkCert, gce.IntermediateCerts
	_, err = verify(v, ev)
	wantRefusal(t, err, evidence.CheckAKTrust, -1, -1)
	if !errors.Is(err, evidence.ErrAKCertKey) {
		t.Fatalf("%v does not wrap ErrAKCertKey", err)
	}
}

// relog parses a real log, lets f change its events, and re-encodes it.
func relog(t *testing.T, name string, f func(evs []logforge.Event) []logforge.Event) []byte {
	t.Helper()
	l, err := eventlog.Parse(testenv.EventLog(t, name))
	if err != nil {
		t.Fatal(err)
	}
	banks, evs := logforge.FromLog(l)
	return logforge.Encode(banks, f(evs))
}

func find(evs []logforge.Event, pcr uint32, typ tcg.EventType) int {
	return slices.IndexFunc(evs, func(e logforge.Event) bool { return e.PCR == pcr && e.Type == uint32(typ) })
}

// TestEventRules: logs changed in ways go-tpm-tools accepts (each case first shows that the
// library alone accepts the forged evidence) and that checkEvents refuses, naming the PCR and
// the event's index in the log (the Spec ID Event is 0, so slice index i is event i+1).
func TestEventRules(t *testing.T) {
	ak := newForgedAK(t)
	v := verifierFor(t, ak.PublicKey())
	cases := []struct {
		name  string
		check evidence.Check
		pcr   int
		edit  func(t *testing.T, evs []logforge.Event) ([]logforge.Event, int)
	}{
		{"boot application relabelled EV_EFI_ACTION", evidence.CheckEventType, 4, func(t *testing.T, evs []logforge.Event) ([]logforge.Event, int) {
			i := find(evs, 4, tcg.EFIBootServicesApplication)
			evs[i].Type = uint32(tcg.EFIAction)
			return evs, i
		}},
		{"PCR3 separator relabelled EV_POST_CODE", evidence.CheckEventType, 3, func(t *testing.T, evs []logforge.Event) ([]logforge.Event, int) {
			i := find(evs, 3, tcg.Separator)
			evs[i].Type = uint32(tcg.PostCode)
			return evs, i
		}},
		{"GPT event data rewritten", evidence.CheckEventType, 5, func(t *testing.T, evs []logforge.Event) ([]logforge.Event, int) {
			i := find(evs, 5, tcg.EFIGPTEvent)
			evs[i].Data = append([]byte(nil), evs[i].Data...)
			evs[i].Data[len(evs[i].Data)-1] ^= 1
			return evs, i
		}},
		{"PCR6 separator data rewritten, digest recomputed", evidence.CheckEventType, 6, func(t *testing.T, evs []logforge.Event) ([]logforge.Event, int) {
			// The digest is H(data), so rule 1 holds, and it is no well-known digest; go-eventlog
			// checks separator data only in PCRs 0, 2, 4, 5 and 7. Only the EV_SEPARATOR data
			// check (00000000h or FFFFFFFFh, PFP 10.4.1) refuses it.
			i := find(evs, 6, tcg.Separator)
			evs[i] = logforge.Measure(6, uint32(tcg.Separator), []byte{0, 0, 0, 1}, eventlog.SHA1, eventlog.SHA256, eventlog.SHA384)
			return evs, i
		}},
		{"PCR5 ExitBootServices success action relabelled EV_EFI_GPT_EVENT", evidence.CheckEventType, 5, func(t *testing.T, evs []logforge.Event) ([]logforge.Event, int) {
			// EV_EFI_GPT_EVENT is a bound type whose digest is still H(data) and is allowed after
			// PCR5's separator, so rules 1 and 3 hold, and go-eventlog stops reading PCR5 at the
			// ExitBootServices invocation: only the well-known EV_EFI_ACTION digest rule refuses it.
			i := slices.IndexFunc(evs, func(e logforge.Event) bool {
				return e.PCR == 5 && e.Type == uint32(tcg.EFIAction) && string(e.Data) == "Exit Boot Services Returned with Success"
			})
			if i < 0 {
				t.Fatal("log has no PCR5 \"Exit Boot Services Returned with Success\" action")
			}
			evs[i].Type = uint32(tcg.EFIGPTEvent)
			return evs, i
		}},
		{"event appended to PCR0 after its separator", evidence.CheckEventOrder, 0, func(t *testing.T, evs []logforge.Event) ([]logforge.Event, int) {
			return append(evs, logforge.Measure(0, uint32(tcg.PostCode), []byte("late code"), eventlog.SHA1, eventlog.SHA256, eventlog.SHA384)), len(evs)
		}},
		{"second separator in PCR6", evidence.CheckEventOrder, 6, func(t *testing.T, evs []logforge.Event) ([]logforge.Event, int) {
			return append(evs, logforge.Measure(6, uint32(tcg.Separator), []byte{0, 0, 0, 0}, eventlog.SHA1, eventlog.SHA256, eventlog.SHA384)), len(evs)
		}},
		{"vendor event type (go-eventlog panics on it)", evidence.CheckEventType, 1, func(t *testing.T, evs []logforge.Event) ([]logforge.Event, int) {
			e := logforge.Measure(1, 0x800000E1, []byte("SPDM blob"), eventlog.SHA1, eventlog.SHA256, eventlog.SHA384)
			return slices.Insert(evs, 3, e), 3
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var idx int
			log := relog(t, testenv.DefaultLog, func(evs []logforge.Event) []logforge.Event {
				out, i := tc.edit(t, evs)
				idx = i
				return out
			})
			ev := forged(t, ak, log, forge.Quote{})
			if tc.name != "vendor event type (go-eventlog panics on it)" {
				want, _ := api.ExtraData(ev.Nonce, ev.CNF)
				if _, err := server.VerifyAttestation(ev.Att, server.VerifyOpts{Nonce: want, TrustedAKs: []crypto.PublicKey{ak.PublicKey()}, HashAlgo: tpm2.AlgSHA256}); err != nil {
					t.Fatalf("go-tpm-tools already refuses this log, so the case proves nothing of ours: %v", err)
				}
			}
			_, err := verify(v, ev)
			wantRefusal(t, err, tc.check, tc.pcr, idx+1)
		})
	}
}
