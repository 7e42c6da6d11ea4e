package evidence_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testenv"
)

// TestFromEventLogMatchesVerify checks that the State built from a bare log equals, on every
// field a policy reads, the State the issuer's Verify establishes from a quote of the same log
// replayed into the simulator.
func TestFromEventLogMatchesVerify(t *testing.T) {
	for _, name := range []string{"ubuntu-2104-no-dbx.bin", "rhel8-uefi.bin", "cos-101-amd-sev.bin"} {
		t.Run(name, func(t *testing.T) {
			log := testenv.EventLog(t, name)
			bare, err := evidence.FromEventLog(log)
			if err != nil {
				t.Fatal(err)
			}
			a := testenv.AttesterFor(t, log)
			v, err := evidence.NewVerifier(evidence.Options{AKTrust: evidence.AnyAK{}})
			if err != nil {
				t.Fatal(err)
			}
			nonce := make([]byte, api.NonceSize)
			rand.Read(nonce)
			req, err := a.Evidence(nonce)
			if err != nil {
				t.Fatal(err)
			}
			quoted, err := v.Verify(context.Background(), nonce, req.CNF, req.Attestation)
			if err != nil {
				t.Fatal(err)
			}
			if len(bare.LoggedPCRs) != len(quoted.LoggedPCRs) {
				t.Fatalf("logged PCRs %v vs %v", bare.LoggedPCRs, quoted.LoggedPCRs)
			}
			for _, idx := range quoted.LoggedPCRs {
				if !bytes.Equal(bare.PCRs[idx], quoted.PCRs[idx]) {
					t.Errorf("PCR %d: replay %x, quote %x", idx, bare.PCRs[idx], quoted.PCRs[idx])
				}
			}
			if !proto.Equal(bare.Machine, quoted.Machine) {
				t.Errorf("machine states differ")
			}
			if bare.AK != nil || bare.AKID != "" || bare.AKTrust != "" {
				t.Errorf("a bare log claims an AK: %+v", bare)
			}
		})
	}
}

func TestFromEventLogRefusals(t *testing.T) {
	if _, err := evidence.FromEventLog(nil); err == nil {
		t.Error("empty log accepted")
	}
	if _, err := evidence.FromEventLog(testenv.EventLog(t, "debian-10.bin")); !errors.Is(err, evidence.ErrNoSHA256) {
		t.Errorf("SHA-1 log: %v, want ErrNoSHA256", err)
	}
	if _, err := evidence.FromEventLog([]byte("not an event log at all")); err == nil {
		t.Error("garbage accepted")
	}
	// arch-linux-workstation is refused by go-tpm-tools' extraction (empty SecureBoot
	// variable), as the issuer refuses it.
	if _, err := evidence.FromEventLog(testenv.EventLog(t, "arch-linux-workstation.bin")); err == nil {
		t.Error("a log the issuer refuses was accepted")
	}
}

func TestFromAttestation(t *testing.T) {
	dir := filepath.Join(testenv.ModuleDir(t, "github.com/google/go-tpm-tools"), "internal/test/attestations")
	for _, f := range []string{"gce-cos-85-no-nonce.pb", "gce-cos-85-nonce9009.pb"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		st, err := evidence.FromAttestation(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if st.AKID == "" || st.AKTrust != "" || len(st.LoggedPCRs) == 0 || !st.SecureBoot() {
			t.Errorf("%s: state %+v", f, st)
		}
		// One flipped bit in the signature: refused.
		bad := bytes.Clone(b)
		i := bytes.LastIndex(bad, st.PCRs[0])
		if i < 0 {
			t.Fatal("PCR0 not found in the encoding")
		}
		bad[i] ^= 1
		if _, err := evidence.FromAttestation(bad); err == nil {
			t.Errorf("%s: a changed PCR value was accepted", f)
		}
	}
}
