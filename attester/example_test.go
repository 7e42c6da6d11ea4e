package attester_test

import (
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log"

	"github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
)

// ExampleAttester_Evidence produces evidence on the simulator and checks it the way the issuer
// does. On a real machine, open "/dev/tpmrm0", skip the replay and leave Options.EventLog nil
// so that the firmware's own log is read.
func ExampleAttester_Evidence() {
	tpm, err := attester.OpenTPM("simulator")
	if err != nil {
		log.Fatal(err)
	}
	defer tpm.Close()

	// Make the simulator's PCRs match a (here synthetic) firmware event log.
	eventLog := exampleEventLog()
	rep, err := attester.ReplayEventLog(tpm, eventLog)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("replayed banks:", len(rep.Banks), "events:", len(rep.Events))

	a, err := attester.New(attester.Options{TPM: tpm, EventLog: eventLog})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	nonce := make([]byte, api.NonceSize) // in real use: Client.Challenge
	rand.Read(nonce)
	req, err := a.Evidence(nonce)
	if err != nil {
		log.Fatal(err)
	}

	// The issuer's side: recompute the binding and verify quote, PCRs and log.
	var att attest.Attestation
	if err := proto.Unmarshal(req.Attestation, &att); err != nil {
		log.Fatal(err)
	}
	extraData, err := api.ExtraData(req.Nonce, req.CNF)
	if err != nil {
		log.Fatal(err)
	}
	_, err = server.VerifyAttestation(&att, server.VerifyOpts{
		Nonce:      extraData,
		TrustedAKs: []crypto.PublicKey{a.AKPublic()},
		HashAlgo:   tpm2.AlgSHA256,
	})
	fmt.Println("quotes:", len(att.GetQuotes()))
	fmt.Println("verified:", err == nil)
	// Output:
	// replayed banks: 2 events: 9
	// quotes: 4
	// verified: true
}

// exampleEventLog builds a small crypto-agile TCG event log (TCG PC Client Platform Firmware
// Profile section 10): a Spec ID Event03 declaring SHA-1 and SHA-256, an EV_S_CRTM_VERSION in
// PCR0 and an EV_SEPARATOR in each of PCRs 0-7.
func exampleEventLog() []byte {
	le := binary.LittleEndian
	spec := []byte("Spec ID Event03\x00")
	spec = le.AppendUint32(spec, 0)                         // platformClass: client
	spec = append(spec, 0, 2, 0, 2)                         // version 2.0, errata 0, UINT64
	spec = le.AppendUint32(spec, 2)                         // numberOfAlgorithms
	spec = le.AppendUint16(le.AppendUint16(spec, 0x04), 20) // TPM_ALG_SHA1, 20 bytes
	spec = le.AppendUint16(le.AppendUint16(spec, 0x0B), 32) // TPM_ALG_SHA256, 32 bytes
	spec = append(spec, 0)                                  // vendorInfoSize

	b := le.AppendUint32(le.AppendUint32(nil, 0), 0x03) // PCR0, EV_NO_ACTION (legacy format)
	b = append(b, make([]byte, sha1.Size)...)
	b = append(le.AppendUint32(b, uint32(len(spec))), spec...)
	event := func(pcr, typ uint32, data []byte) {
		s1, s256 := sha1.Sum(data), sha256.Sum256(data)
		b = le.AppendUint32(le.AppendUint32(le.AppendUint32(b, pcr), typ), 2)
		b = append(le.AppendUint16(b, 0x04), s1[:]...)
		b = append(le.AppendUint16(b, 0x0B), s256[:]...)
		b = append(le.AppendUint32(b, uint32(len(data))), data...)
	}
	event(0, 0x08, []byte("example firmware 1.0\x00")) // EV_S_CRTM_VERSION
	for pcr := range uint32(8) {
		event(pcr, 0x04, []byte{0, 0, 0, 0}) // EV_SEPARATOR
	}
	return b
}
