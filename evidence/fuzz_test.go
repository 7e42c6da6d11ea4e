package evidence_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/go-jose/go-jose/v4"
	pb "github.com/google/go-tpm-tools/proto/attest"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/forge"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
)

// fuzzBinding is a fixed nonce and cnf key, so that fuzzed evidence can get past the binding
// check into the quote, the library and the event rules.
func fuzzBinding(t testing.TB) ([]byte, *jose.JSONWebKey) {
	t.Helper()
	// The P-256 example key of RFC 7517 appendix A.1: fixed across fuzz worker processes.
	var cnf jose.JSONWebKey
	if err := cnf.UnmarshalJSON([]byte(`{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}`)); err != nil {
		t.Fatal(err)
	}
	return bytes.Repeat([]byte{0x42}, api.NonceSize), &cnf
}

// seedLogs returns the event logs the evidence fuzz targets start from, each well-formed, and a
// crafted one the structure checks refuse (the security review's D1 input: a db
// EFI_SIGNATURE_LIST with SignatureSize 0). With -short (the short run in `make test`) they are
// logforge.MiniUEFI and its crafted variant, small enough for the fuzzer to mutate and minimize
// fast; otherwise (`make fuzz`) real logs of 30-50 KB.
func seedLogs(f *testing.F, names ...string) (logs [][]byte, crafted []byte) {
	f.Helper()
	if testing.Short() {
		crafted, err := logforge.ZeroSignatureSizeDB(logforge.MiniUEFI())
		if err != nil {
			f.Fatal(err)
		}
		return [][]byte{logforge.MiniUEFI()}, crafted
	}
	for _, name := range names {
		logs = append(logs, testenv.EventLog(f, name))
	}
	crafted, _ = zeroSignatureSizeLog(f)
	return logs, crafted
}

// FuzzVerify feeds arbitrary attestation bytes to Verifier.Verify (trusting any AK, so that the
// fuzzer reaches every check), seeded with correctly forged evidence over real logs (over
// logforge.MiniUEFI with -short) and over a crafted log. Nothing
// may panic; a refusal must be an *evidence.Error; an acceptance must carry an AK and PCRs, and
// go-tpm-tools' server.VerifyAttestation must accept the same bytes with the same machine state.
func FuzzVerify(f *testing.F) {
	nonce, cnf := fuzzBinding(f)
	ak, err := forge.NewECC()
	if err != nil {
		f.Fatal(err)
	}
	logs, crafted := seedLogs(f, testenv.DefaultLog, "cos-101-amd-sev.bin", "gdc-host.bin")
	for _, log := range append(logs, crafted) {
		ev, err := ak.AttestFor(nonce, cnf, log, forge.Quote{})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ev.Bytes())
	}
	v, err := evidence.NewVerifier(evidence.Options{AKTrust: evidence.AnyAK{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, att []byte) {
		st, err := v.Verify(context.Background(), nonce, cnf, att)
		if err != nil {
			if _, ok := err.(*evidence.Error); !ok {
				t.Fatalf("refusal %v (%T) is not an *evidence.Error", err, err)
			}
			return
		}
		if st.AK == nil || len(st.PCRs) == 0 || len(st.LoggedPCRs) == 0 {
			t.Fatalf("accepted state without AK or PCRs: %+v", st)
		}
		libraryAgrees(t, st, nonce, cnf, att)
	})
}

// FuzzVerifyParts fuzzes the attestation's fields separately (AK public area, quote, signature,
// event log), which a whole-protobuf fuzzer rarely keeps well-formed enough to reach. What
// Verify accepts, server.VerifyAttestation must accept with the same machine state. Seeds as
// FuzzVerify's (logforge.MiniUEFI with -short).
func FuzzVerifyParts(f *testing.F) {
	nonce, cnf := fuzzBinding(f)
	ak, err := forge.NewECC()
	if err != nil {
		f.Fatal(err)
	}
	logs, crafted := seedLogs(f, testenv.DefaultLog, "ubuntu-2404-amd-sevsnp.bin")
	for _, log := range append(logs, crafted) {
		ev, err := ak.AttestFor(nonce, cnf, log, forge.Quote{})
		if err != nil {
			f.Fatal(err)
		}
		q := ev.Att.Quotes[0]
		f.Add(ev.Att.AkPub, q.Quote, q.RawSig, ev.Att.EventLog)
	}
	v, err := evidence.NewVerifier(evidence.Options{AKTrust: evidence.AnyAK{}})
	if err != nil {
		f.Fatal(err)
	}
	base, err := ak.AttestFor(nonce, cnf, logs[0], forge.Quote{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, akPub, quote, sig, log []byte) {
		att := proto.Clone(base.Att).(*pb.Attestation)
		att.AkPub, att.Quotes[0].Quote, att.Quotes[0].RawSig, att.EventLog = akPub, quote, sig, log
		raw, err := proto.Marshal(att)
		if err != nil {
			return
		}
		st, err := v.Verify(context.Background(), nonce, cnf, raw)
		if err != nil {
			if _, ok := err.(*evidence.Error); !ok {
				t.Fatalf("refusal %v (%T) is not an *evidence.Error", err, err)
			}
			return
		}
		libraryAgrees(t, st, nonce, cnf, raw)
	})
}

// FuzzVerifyLog fuzzes the event log alone and signs a fresh quote over whatever PCR values the
// fuzzed log replays to (forge.AK.AttestFor), so that every log the parser takes gets past the
// signature and PCR digest into verifyAttestation's replay and extraction on the once-parsed
// log, the part of server.VerifyAttestation Verify remakes. FuzzVerify and FuzzVerifyParts keep
// the signed quote, so their fuzzed logs reach extraction only when no quoted PCR's digests
// change. What Verify accepts, server.VerifyAttestation must accept with the same machine state.
func FuzzVerifyLog(f *testing.F) {
	nonce, cnf := fuzzBinding(f)
	ak, err := forge.NewECC()
	if err != nil {
		f.Fatal(err)
	}
	logs, crafted := seedLogs(f, testenv.DefaultLog, "ubuntu-2404-amd-sevsnp.bin")
	for _, log := range append(logs, crafted) {
		f.Add(log)
	}
	v, err := evidence.NewVerifier(evidence.Options{AKTrust: evidence.AnyAK{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, log []byte) {
		ev, err := ak.AttestFor(nonce, cnf, log, forge.Quote{})
		if err != nil {
			return // no SHA-256 replay to quote
		}
		raw := ev.Bytes()
		st, err := v.Verify(context.Background(), nonce, cnf, raw)
		if err != nil {
			if _, ok := err.(*evidence.Error); !ok {
				t.Fatalf("refusal %v (%T) is not an *evidence.Error", err, err)
			}
			return
		}
		libraryAgrees(t, st, nonce, cnf, raw)
	})
}
