package attester_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
)

// testLog is a real crypto-agile log (SHA-1, SHA-256, SHA-384 banks) that verifies after replay.
const testLog = "ubuntu-2104-no-secure-boot.bin"

// newSimAttester opens a fresh simulator, replays testLog into it and returns an Attester
// presenting that log. Everything is closed at the end of the test.
func newSimAttester(t testing.TB, cnf *ecdsa.PrivateKey) (*attester.Attester, io.ReadWriteCloser) {
	t.Helper()
	log := readLog(t, testLog)
	sim, err := attester.OpenTPM("simulator")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	if _, err := attester.ReplayEventLog(sim, log); err != nil {
		t.Fatal(err)
	}
	a, err := attester.New(attester.Options{TPM: sim, EventLog: log, CNFKey: cnf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, sim
}

func randomNonce(t testing.TB) []byte {
	t.Helper()
	n := make([]byte, api.NonceSize)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	return n
}

func decodeAttestation(t testing.TB, req *api.AttestRequest) *attest.Attestation {
	t.Helper()
	var att attest.Attestation
	if err := proto.Unmarshal(req.Attestation, &att); err != nil {
		t.Fatalf("attestation does not decode: %v", err)
	}
	return &att
}

func verifyOpts(a *attester.Attester, extra []byte) server.VerifyOpts {
	return server.VerifyOpts{
		Nonce:      extra,
		TrustedAKs: []crypto.PublicKey{a.AKPublic()},
		HashAlgo:   tpm2.AlgSHA256,
	}
}

// TestEvidenceBinding checks that every quote's extraData is api.ExtraData(nonce, cnf), that
// the evidence verifies with that value and not with another key's, and what it carries.
func TestEvidenceBinding(t *testing.T) {
	cnfKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, sim := newSimAttester(t, cnfKey)
	if a.CNFPrivate() != cnfKey {
		t.Fatal("CNFPrivate is not the key passed in Options")
	}
	if !a.CNF().IsPublic() {
		t.Fatal("CNF is not a public JWK")
	}

	nonce := randomNonce(t)
	req, err := a.Evidence(nonce)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(req.Nonce, nonce) {
		t.Fatal("request nonce differs from the challenge")
	}
	wantTP, _ := (&jose.JSONWebKey{Key: &cnfKey.PublicKey}).Thumbprint(crypto.SHA256)
	gotTP, _ := req.CNF.Thumbprint(crypto.SHA256)
	if !bytes.Equal(wantTP, gotTP) {
		t.Fatal("request cnf is not the attester's key")
	}
	extra, err := api.ExtraData(nonce, req.CNF)
	if err != nil {
		t.Fatal(err)
	}

	att := decodeAttestation(t, req)
	sels, err := client.AllocatedPCRs(sim)
	if err != nil {
		t.Fatal(err)
	}
	if len(att.GetQuotes()) != len(sels) {
		t.Fatalf("%d quotes for %d allocated banks", len(att.GetQuotes()), len(sels))
	}
	for _, q := range att.GetQuotes() {
		ad, err := tpm2.DecodeAttestationData(q.GetQuote())
		if err != nil {
			t.Fatal(err)
		}
		if ad.Magic != 0xFF544347 || ad.Type != tpm2.TagAttestQuote {
			t.Fatalf("TPMS_ATTEST magic %#x type %#x", ad.Magic, ad.Type)
		}
		if !bytes.Equal(ad.ExtraData, extra) {
			t.Fatalf("quote extraData %x, want api.ExtraData %x", ad.ExtraData, extra)
		}
	}
	if !bytes.Equal(att.GetEventLog(), readLog(t, testLog)) {
		t.Fatal("attestation does not carry the presented event log")
	}

	if _, err := server.VerifyAttestation(att, verifyOpts(a, extra)); err != nil {
		t.Fatalf("evidence does not verify: %v", err)
	}
	// The same quote under another cnf key, or under the bare nonce, must not verify.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherExtra, _ := api.ExtraData(nonce, &jose.JSONWebKey{Key: &other.PublicKey})
	if _, err := server.VerifyAttestation(att, verifyOpts(a, otherExtra)); err == nil {
		t.Fatal("evidence verified for another cnf key")
	}
	if _, err := server.VerifyAttestation(att, verifyOpts(a, nonce)); err == nil {
		t.Fatal("evidence verified for the bare nonce")
	}

	// The JSON wire form round-trips.
	wire, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var back api.AttestRequest
	if err := json.Unmarshal(wire, &back); err != nil {
		t.Fatal(err)
	}
	backExtra, err := api.ExtraData(back.Nonce, back.CNF)
	if err != nil || !bytes.Equal(backExtra, extra) || !bytes.Equal(back.Attestation, req.Attestation) {
		t.Fatalf("JSON round trip changed the evidence (%v)", err)
	}
}

func TestEvidenceRefusesBadNonce(t *testing.T) {
	a, _ := newSimAttester(t, nil)
	for _, n := range [][]byte{nil, make([]byte, api.NonceSize-1), make([]byte, api.NonceSize+1)} {
		if _, err := a.Evidence(n); err == nil {
			t.Errorf("Evidence accepted a %d-byte nonce", len(n))
		}
	}
}

func TestEvidenceConcurrent(t *testing.T) {
	a, _ := newSimAttester(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nonce := make([]byte, api.NonceSize)
			rand.Read(nonce)
			req, err := a.Evidence(nonce)
			if err != nil {
				errs <- err
				return
			}
			var att attest.Attestation
			if err := proto.Unmarshal(req.Attestation, &att); err != nil {
				errs <- err
				return
			}
			extra, _ := api.ExtraData(nonce, req.CNF)
			if _, err := server.VerifyAttestation(&att, verifyOpts(a, extra)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCloseThenEvidence(t *testing.T) {
	a, _ := newSimAttester(t, nil)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.Evidence(randomNonce(t)); !errors.Is(err, attester.ErrClosed) {
		t.Fatalf("Evidence after Close: %v, want ErrClosed", err)
	}
}

func TestNewOptions(t *testing.T) {
	sim, err := attester.OpenTPM("")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	log := readLog(t, testLog)

	if _, err := attester.New(attester.Options{EventLog: log}); err == nil {
		t.Error("New without a TPM succeeded")
	}
	if _, err := attester.New(attester.Options{TPM: sim, EventLog: []byte{}}); err == nil {
		t.Error("New with an empty event log succeeded")
	}
	if _, err := attester.New(attester.Options{TPM: sim, EventLog: make([]byte, attester.MaxEventLogSize+1)}); err == nil {
		t.Error("New with an oversized event log succeeded")
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if _, err := attester.New(attester.Options{TPM: sim, EventLog: log, CNFKey: p224}); err == nil {
		t.Error("New with a P-224 cnf key succeeded")
	}

	// Defaults: a fresh P-256 cnf key; the log is copied.
	logCopy := append([]byte(nil), log...)
	a, err := attester.New(attester.Options{TPM: sim, EventLog: logCopy})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.CNFPrivate().Curve != elliptic.P256() {
		t.Errorf("default cnf key on %s", a.CNFPrivate().Curve.Params().Name)
	}
	if _, ok := a.AKPublic().(*ecdsa.PublicKey); !ok {
		t.Errorf("AK public key is %T, want *ecdsa.PublicKey", a.AKPublic())
	}
	logCopy[0] ^= 0xFF
	if !bytes.Equal(a.EventLog(), log) {
		t.Error("Attester shares the caller's event log slice")
	}
}

func TestOpenTPMSpecs(t *testing.T) {
	if _, err := attester.OpenTPM("mssim:127.0.0.1:2321"); !errors.Is(err, attester.ErrUnknownTPMSpec) {
		t.Errorf("unknown spec: %v, want ErrUnknownTPMSpec", err)
	}
	if _, err := attester.OpenTPM("/nonexistent/tpmrm0"); err == nil || errors.Is(err, attester.ErrUnknownTPMSpec) {
		t.Errorf("missing device: %v, want an open error", err)
	}
	// Each simulator open is a fresh TPM, whatever the previous one did.
	for i := range 2 {
		sim, err := attester.OpenTPM("simulator")
		if err != nil {
			t.Fatal(err)
		}
		if err := assertFreshPCRs(sim); err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if err := tpm2.PCRExtend(sim, 0, tpm2.AlgSHA256, make([]byte, 32), ""); err != nil {
			t.Fatal(err)
		}
		sim.Close()
	}
}

// BenchmarkEvidence measures one Evidence call on the simulator: the binding hash, one
// TPM2_Quote per allocated bank (4 on the simulator: SHA-1, SHA-256, SHA-384, SHA-512), the protobuf encoding, with a 38 KB log.
func BenchmarkEvidence(b *testing.B) {
	a, sim := newSimAttester(b, nil)
	sels, err := client.AllocatedPCRs(sim)
	if err != nil {
		b.Fatal(err)
	}
	nonce := randomNonce(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Evidence(nonce); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(sels)), "quotes/op")
}

// verifyAttestation is the issuer's check in the tests: go-tpm-tools verification with the
// attester's AK trusted directly and SHA-256 pinned.
func verifyAttestation(a *attester.Attester, att *attest.Attestation, extra []byte) (*attest.MachineState, error) {
	return server.VerifyAttestation(att, verifyOpts(a, extra))
}
