// Package faketpm is a software stand-in for a TPM's quote, for load tests where thousands of
// attestations per second must not wait for a TPM (the in-process simulator takes ~3 ms per
// quote). It holds an ECC P-256 attestation key in memory and a short synthetic TCG
// crypto-agile event log, and produces evidence in exactly the shape the attester sends: a
// go-tpm-tools attest.Attestation with the AK's TPMT_PUBLIC, one SHA-256 quote (a real
// TPMS_ATTEST encoded with go-tpm's structures, magic 0xFF544347, type TPM_ST_ATTEST_QUOTE,
// extraData = api.ExtraData(nonce, cnf), PCR digest over the selected PCRs), its TPMT_SIGNATURE
// (ECDSA over SHA-256) and the event log. The issuer verifies it with the same code as a real
// quote; only the trust in the AK differs, so the issuer must be given the AK (AKPublic) in its
// allowlist.
//
// It is for tests and benchmarks: nothing about it is hardware-backed.
package faketpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/go-jose/go-jose/v4"
	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
)

// TCG event types used by the synthetic log (TCG PC Client PFP, section 10.4.1).
const (
	evNoAction                   = 0x00000003
	evSeparator                  = 0x00000004
	evSCRTMVersion               = 0x00000008
	evPostCode                   = 0x00000001
	evEFIPlatformFirmware        = 0x80000008
	evEFIAction                  = 0x80000007
	tpmAlgSHA256          uint16 = 0x000B
)

// TPM is one simulated attester's TPM: an AK, PCRs explained by an event log, and a clock that
// advances with every quote. It is safe for concurrent use, but quotes must then be submitted
// in the order they were made (the issuer refuses a TPM clock that goes backwards).
type TPM struct {
	ak     *ecdsa.PrivateKey
	akPub  []byte // TPMT_PUBLIC
	akName tpm2.Name
	log    []byte
	pcrs   map[uint32][]byte
	sel    []int
	digest []byte // SHA-256 over the selected PCR values in order

	mu    sync.Mutex
	clock uint64
}

// New returns a TPM with a fresh AK and a synthetic event log of about events measurements
// (at least the eight separators of PCRs 0-7; real firmware logs carry 50-150 events).
func New(events int) (*TPM, error) {
	ak, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub := tpm2.Public{
		Type:    tpm2.AlgECC,
		NameAlg: tpm2.AlgSHA256,
		Attributes: tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin |
			tpm2.FlagUserWithAuth | tpm2.FlagRestricted | tpm2.FlagSign,
		ECCParameters: &tpm2.ECCParams{
			Sign:    &tpm2.SigScheme{Alg: tpm2.AlgECDSA, Hash: tpm2.AlgSHA256},
			CurveID: tpm2.CurveNISTP256,
			Point:   tpm2.ECPoint{XRaw: pad32(ak.X.Bytes()), YRaw: pad32(ak.Y.Bytes())},
		},
	}
	akPub, err := pub.Encode()
	if err != nil {
		return nil, fmt.Errorf("faketpm: encode AK public: %w", err)
	}
	name, err := pub.Name()
	if err != nil {
		return nil, fmt.Errorf("faketpm: AK name: %w", err)
	}
	t := &TPM{ak: ak, akPub: akPub, akName: name, pcrs: map[uint32][]byte{}}
	t.log = t.synthLog(events)
	h := sha256.New()
	for i := 0; i < 8; i++ {
		t.sel = append(t.sel, i)
		h.Write(t.pcrs[uint32(i)])
	}
	t.digest = h.Sum(nil)
	return t, nil
}

func pad32(b []byte) []byte { return append(make([]byte, 32-len(b)), b...) }

// AKPublic returns the attestation key's public key (for the issuer's allowlist).
func (t *TPM) AKPublic() *ecdsa.PublicKey { return &t.ak.PublicKey }

// EventLog returns the synthetic event log.
func (t *TPM) EventLog() []byte { return t.log }

// synthLog writes a crypto-agile log (TCG PC Client PFP section 10.2: a SHA-1-format Spec ID
// header, then TCG_PCR_EVENT2 records with one SHA-256 digest each) and extends t.pcrs as a
// TPM would.
func (t *TPM) synthLog(events int) []byte {
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	// Header: TCG_PCR_EVENT with a TCG_EfiSpecIDEvent.
	var spec bytes.Buffer
	spec.WriteString("Spec ID Event03\x00")
	_ = binary.Write(&spec, binary.LittleEndian, uint32(0))    // platformClass
	spec.Write([]byte{0, 2, 0, 2})                             // minor, major, errata, uintnSize
	_ = binary.Write(&spec, binary.LittleEndian, uint32(1))    // numberOfAlgorithms
	_ = binary.Write(&spec, binary.LittleEndian, tpmAlgSHA256) // algorithmId
	_ = binary.Write(&spec, binary.LittleEndian, uint16(32))   // digestSize
	spec.WriteByte(0)                                          // vendorInfoSize
	le(uint32(0))
	le(uint32(evNoAction))
	b.Write(make([]byte, 20))
	le(uint32(spec.Len()))
	b.Write(spec.Bytes())

	for i := 0; i < 8; i++ {
		t.pcrs[uint32(i)] = make([]byte, 32)
	}
	add := func(pcr, typ uint32, data []byte) {
		d := sha256.Sum256(data)
		le(pcr)
		le(typ)
		le(uint32(1))
		le(tpmAlgSHA256)
		b.Write(d[:])
		le(uint32(len(data)))
		b.Write(data)
		ext := sha256.Sum256(append(append([]byte{}, t.pcrs[pcr]...), d[:]...))
		t.pcrs[pcr] = ext[:]
	}
	add(0, evSCRTMVersion, utf16z("passport-faketpm 1.0"))
	for i := 0; i < events-9; i++ {
		add(uint32(i%7), evPostCode, []byte(fmt.Sprintf("POST CODE %04d", i)))
	}
	add(4, evEFIAction, []byte("Calling EFI Application from Boot Option"))
	for i := uint32(0); i < 8; i++ {
		add(i, evSeparator, []byte{0, 0, 0, 0})
	}
	return b.Bytes()
}

func utf16z(s string) []byte {
	out := make([]byte, 0, 2*len(s)+2)
	for _, r := range s {
		out = append(out, byte(r), byte(r>>8))
	}
	return append(out, 0, 0)
}

// Evidence returns the attest request for nonce, bound to cnf: a fresh quote signed by the AK.
func (t *TPM) Evidence(nonce []byte, cnf *jose.JSONWebKey) (*api.AttestRequest, error) {
	extra, err := api.ExtraData(nonce, cnf)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.clock += 10
	clock := t.clock
	t.mu.Unlock()
	ad := tpm2.AttestationData{
		Magic:           0xff544347,
		Type:            tpm2.TagAttestQuote,
		QualifiedSigner: t.akName,
		ExtraData:       extra,
		ClockInfo:       tpm2.ClockInfo{Clock: clock, ResetCount: 1, RestartCount: 0, Safe: 1},
		FirmwareVersion: 0x2020_0001,
		AttestedQuoteInfo: &tpm2.QuoteInfo{
			PCRSelection: tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: t.sel},
			PCRDigest:    t.digest,
		},
	}
	quote, err := ad.Encode()
	if err != nil {
		return nil, fmt.Errorf("faketpm: encode TPMS_ATTEST: %w", err)
	}
	sum := sha256.Sum256(quote)
	r, s, err := ecdsa.Sign(rand.Reader, t.ak, sum[:])
	if err != nil {
		return nil, err
	}
	sig, err := tpm2.Signature{Alg: tpm2.AlgECDSA, ECC: &tpm2.SignatureECC{HashAlg: tpm2.AlgSHA256, R: r, S: s}}.Encode()
	if err != nil {
		return nil, fmt.Errorf("faketpm: encode TPMT_SIGNATURE: %w", err)
	}
	pcrs := make(map[uint32][]byte, len(t.pcrs))
	for k, v := range t.pcrs {
		pcrs[k] = v
	}
	att, err := proto.Marshal(&pb.Attestation{
		AkPub:    t.akPub,
		Quotes:   []*tpmpb.Quote{{Quote: quote, RawSig: sig, Pcrs: &tpmpb.PCRs{Hash: tpmpb.HashAlgo_SHA256, Pcrs: pcrs}}},
		EventLog: t.log,
	})
	if err != nil {
		return nil, err
	}
	pubCNF := cnf.Public()
	return &api.AttestRequest{Nonce: nonce, Attestation: att, CNF: &pubCNF}, nil
}
