package evidence_test

import (
	"bytes"
	"context"
	"crypto"
	"testing"

	"github.com/go-jose/go-jose/v4"
	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/forge"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
)

// libraryAgrees fails t unless go-tpm-tools' server.VerifyAttestation, given the attestation
// raw that st was established from (SHA-256 pinned, the AK trusted), accepts it and returns the
// machine state st carries. Verify makes the library's checks through the library's own calls
// on a log it parses once (evidence.verifyAttestation); this is what holds it to the library.
func libraryAgrees(t testing.TB, st *evidence.State, nonce []byte, cnf *jose.JSONWebKey, raw []byte) {
	t.Helper()
	want, err := api.ExtraData(nonce, cnf)
	if err != nil {
		t.Fatal(err)
	}
	var att pb.Attestation
	if err := proto.Unmarshal(raw, &att); err != nil {
		t.Fatalf("Verify accepted an attestation that does not decode: %v", err)
	}
	ms, err := server.VerifyAttestation(&att, server.VerifyOpts{Nonce: want, TrustedAKs: []crypto.PublicKey{st.AK}, HashAlgo: tpm2.AlgSHA256})
	if err != nil {
		t.Fatalf("Verify accepted what server.VerifyAttestation refuses: %v", err)
	}
	if !proto.Equal(ms, st.Machine) {
		t.Fatal("Verify's machine state differs from server.VerifyAttestation's")
	}
}

// TestLibraryEquivalence: on every real event log, as forged evidence and with its quote, PCR
// values and log altered, whatever Verify accepts go-tpm-tools' server.VerifyAttestation accepts
// too, with an equal MachineState. Verify's extra checks may only refuse more.
func TestLibraryEquivalence(t *testing.T) {
	ak := newForgedAK(t)
	v := verifierFor(t, ak.PublicKey())
	type variant struct {
		name   string
		mutate func(*pb.Attestation)
	}
	variants := []variant{
		{"as made", func(*pb.Attestation) {}},
		{"signature bit", func(a *pb.Attestation) { a.Quotes[0].RawSig[len(a.Quotes[0].RawSig)/2] ^= 1 }},
		{"quote bit", func(a *pb.Attestation) { a.Quotes[0].Quote[len(a.Quotes[0].Quote)-1] ^= 1 }},
		{"PCR 4 value", func(a *pb.Attestation) { a.Quotes[0].Pcrs.Pcrs[4][0] ^= 1 }},
		{"PCR 4 dropped", func(a *pb.Attestation) { delete(a.Quotes[0].Pcrs.Pcrs, 4) }},
	}
	for i := 1; i < 16; i++ {
		variants = append(variants, variant{"log byte", func(a *pb.Attestation) { a.EventLog[len(a.EventLog)*i/16] ^= 0x20 }})
	}
	accepted := 0
	for _, l := range testenv.RealLogs(t) {
		ev, err := ak.Attest(l.Data, forge.Quote{})
		if err != nil {
			continue // a log without SHA-256 digests: nothing to quote
		}
		for _, vr := range variants {
			att := proto.Clone(ev.Att).(*pb.Attestation)
			vr.mutate(att)
			raw, err := proto.Marshal(att)
			if err != nil {
				t.Fatal(err)
			}
			st, err := v.Verify(context.Background(), ev.Nonce, ev.CNF, raw)
			if err != nil {
				continue
			}
			accepted++
			t.Run(l.Name+"/"+vr.name, func(t *testing.T) { libraryAgrees(t, st, ev.Nonce, ev.CNF, raw) })
		}
	}
	if accepted < 12 {
		t.Fatalf("only %d attestations accepted: the comparison says little", accepted)
	}
	t.Logf("%d accepted attestations compared with server.VerifyAttestation", accepted)
}

// TestMiniUEFIVerifies: the short fuzz runs' seed log (logforge.MiniUEFI) verifies, with secure
// boot on and the boot application extracted, and the library agrees: fuzzing from it starts
// from accepted evidence.
func TestMiniUEFIVerifies(t *testing.T) {
	ak := newForgedAK(t)
	ev := forged(t, ak, logforge.MiniUEFI(), forge.Quote{})
	st, err := verify(verifierFor(t, ak.PublicKey()), ev)
	if err != nil {
		t.Fatal(err)
	}
	if !st.SecureBoot() || len(st.Machine.GetEfi().GetApps()) != 1 {
		t.Fatalf("secure boot %v, %d EFI apps; want on and 1", st.SecureBoot(), len(st.Machine.GetEfi().GetApps()))
	}
	libraryAgrees(t, st, ev.Nonce, ev.CNF, ev.Bytes())
	if !bytes.Equal(logforge.MiniUEFI(), logforge.MiniUEFI()) {
		t.Fatal("MiniUEFI differs from call to call")
	}
	if n := len(logforge.MiniUEFI()); n > 3072 {
		t.Fatalf("MiniUEFI is %d bytes: too large for the short fuzz runs", n)
	}
}
