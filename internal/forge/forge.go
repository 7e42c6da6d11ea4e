// Package forge builds TPM evidence in software for tests and benchmarks: an attestation key
// whose private half is an ordinary Go key, TPMS_ATTEST quotes over PCR values computed from
// an event log, signed the way a TPM signs them (TPM 2.0 Part 3 section 18.4). With the forged
// AK trusted, a test can hand the verifier a correctly signed quote that is wrong in exactly
// one way (magic, type, trailing bytes, PCR selection, extraData, clock) and so prove that the
// check for that one thing exists. Test support only.
package forge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/eventlog"
)

// AK is a software attestation key.
type AK struct {
	Signer crypto.Signer
	// Public is its TPMT_PUBLIC (restricted signing key attributes unless changed).
	Public tpm2.Public
}

// NewECC returns a P-256 ECDSA AK with the attributes of go-tpm-tools' AK template.
func NewECC() (*AK, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &AK{Signer: k, Public: tpm2.Public{
		Type: tpm2.AlgECC, NameAlg: tpm2.AlgSHA256, Attributes: tpm2.FlagSignerDefault,
		ECCParameters: &tpm2.ECCParams{
			Sign:    &tpm2.SigScheme{Alg: tpm2.AlgECDSA, Hash: tpm2.AlgSHA256},
			CurveID: tpm2.CurveNISTP256,
			Point:   tpm2.ECPoint{XRaw: k.X.FillBytes(make([]byte, 32)), YRaw: k.Y.FillBytes(make([]byte, 32))},
		},
	}}, nil
}

// NewRSA returns a 2048-bit RSASSA AK.
func NewRSA() (*AK, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &AK{Signer: k, Public: tpm2.Public{
		Type: tpm2.AlgRSA, NameAlg: tpm2.AlgSHA256, Attributes: tpm2.FlagSignerDefault,
		RSAParameters: &tpm2.RSAParams{
			Sign:       &tpm2.SigScheme{Alg: tpm2.AlgRSASSA, Hash: tpm2.AlgSHA256},
			KeyBits:    2048,
			ModulusRaw: k.N.Bytes(),
		},
	}}, nil
}

// PublicKey returns the AK's public key.
func (a *AK) PublicKey() crypto.PublicKey { return a.Signer.Public() }

// Quote describes one quote to forge. Zero fields take a TPM's values.
type Quote struct {
	Bank      tpm2.Algorithm          // default SHA-256
	PCRs      map[uint32][]byte       // the values quoted (and supplied beside the quote)
	ExtraData []byte                  // qualifyingData
	Clock     tpm2.ClockInfo          // TPMS_CLOCK_INFO
	Mutate    func(raw []byte) []byte // changes the encoded TPMS_ATTEST before signing
}

// Sign encodes q as a TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE and signs it with SHA-256.
func (a *AK) Sign(q Quote) (*tpmpb.Quote, error) {
	if q.Bank == 0 {
		q.Bank = tpm2.AlgSHA256
	}
	name, err := a.Public.Name()
	if err != nil {
		return nil, err
	}
	idx := make([]int, 0, len(q.PCRs))
	for i := range q.PCRs {
		idx = append(idx, int(i))
	}
	slices.Sort(idx)
	h := sha256.New()
	for _, i := range idx {
		h.Write(q.PCRs[uint32(i)])
	}
	ad := tpm2.AttestationData{
		Magic: 0xff544347, Type: tpm2.TagAttestQuote, QualifiedSigner: name, ExtraData: q.ExtraData,
		ClockInfo: q.Clock, FirmwareVersion: 0x20240101,
		AttestedQuoteInfo: &tpm2.QuoteInfo{PCRSelection: tpm2.PCRSelection{Hash: q.Bank, PCRs: idx}, PCRDigest: h.Sum(nil)},
	}
	raw, err := ad.Encode()
	if err != nil {
		return nil, err
	}
	if q.Mutate != nil {
		raw = q.Mutate(raw)
	}
	digest := sha256.Sum256(raw)
	sig := tpm2.Signature{}
	switch k := a.Signer.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			return nil, err
		}
		sig.Alg, sig.ECC = tpm2.AlgECDSA, &tpm2.SignatureECC{HashAlg: tpm2.AlgSHA256, R: r, S: s}
	case *rsa.PrivateKey:
		s, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:])
		if err != nil {
			return nil, err
		}
		sig.Alg, sig.RSA = tpm2.AlgRSASSA, &tpm2.SignatureRSA{HashAlg: tpm2.AlgSHA256, Signature: s}
	default:
		return nil, fmt.Errorf("forge: unsupported key %T", k)
	}
	rawSig, err := sig.Encode()
	if err != nil {
		return nil, err
	}
	pcrs := make(map[uint32][]byte, len(q.PCRs))
	for i, v := range q.PCRs {
		pcrs[i] = v
	}
	return &tpmpb.Quote{Quote: raw, RawSig: rawSig, Pcrs: &tpmpb.PCRs{Hash: tpmpb.HashAlgo(q.Bank), Pcrs: pcrs}}, nil
}

// PCRsFor returns the 24 SHA-256 PCR values a TPM holds after booting with log: the log's
// replayed values, and the reset value (zero) for the PCRs it does not touch. A log whose event
// data eventlog.Parse refuses as malformed (eventlog.ErrMalformedEvent) is still replayed, from
// go-eventlog's parse of its framing, so that tests can quote it and show the verifier refuses it.
func PCRsFor(log []byte) (map[uint32][]byte, error) {
	l, err := eventlog.Parse(log)
	if errors.Is(err, eventlog.ErrMalformedEvent) {
		l, err = unchecked(log)
	}
	if err != nil {
		return nil, err
	}
	r, err := l.Replay(eventlog.SHA256)
	if err != nil {
		return nil, err
	}
	out := make(map[uint32][]byte, eventlog.NumPCRs)
	for i := 0; i < eventlog.NumPCRs; i++ {
		v, ok := r.PCRs[i]
		if !ok {
			v = make([]byte, sha256.Size)
		}
		out[uint32(i)] = v
	}
	return out, nil
}

// Evidence is a forged attestation and what it was made for.
type Evidence struct {
	Nonce []byte
	CNF   *jose.JSONWebKey
	Att   *pb.Attestation
}

// Bytes returns the binary attestation protobuf.
func (e *Evidence) Bytes() []byte {
	b, err := proto.Marshal(e.Att)
	if err != nil {
		panic(err)
	}
	return b
}

// Attest forges evidence for a fresh random nonce and cnf key: see AttestFor.
func (a *AK) Attest(log []byte, q Quote) (*Evidence, error) {
	nonce := make([]byte, api.NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	ck, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return a.AttestFor(nonce, &jose.JSONWebKey{Key: &ck.PublicKey}, log, q)
}

// AttestFor forges evidence for nonce and cnf: one SHA-256 quote over all 24 PCRs as they
// stand after log, with extraData = api.ExtraData(nonce, cnf). q may preset or mutate the
// quote (its PCRs, ExtraData and Clock are filled in when empty).
func (a *AK) AttestFor(nonce []byte, cnf *jose.JSONWebKey, log []byte, q Quote) (*Evidence, error) {
	var err error
	if q.PCRs == nil {
		if q.PCRs, err = PCRsFor(log); err != nil {
			return nil, err
		}
	}
	if q.ExtraData == nil {
		if q.ExtraData, err = api.ExtraData(nonce, cnf); err != nil {
			return nil, err
		}
	}
	if q.Clock == (tpm2.ClockInfo{}) {
		q.Clock = tpm2.ClockInfo{Clock: 1000, ResetCount: 1, RestartCount: 0, Safe: 1}
	}
	quote, err := a.Sign(q)
	if err != nil {
		return nil, err
	}
	pub, err := a.Public.Encode()
	if err != nil {
		return nil, err
	}
	return &Evidence{Nonce: nonce, CNF: cnf, Att: &pb.Attestation{AkPub: pub, Quotes: []*tpmpb.Quote{quote}, EventLog: log}}, nil
}

// unchecked builds the SHA-256 events of a crypto-agile log from go-eventlog's parse alone,
// skipping eventlog.Parse's checks of the event data.
func unchecked(log []byte) (*eventlog.Log, error) {
	el, err := tcg.ParseEventLog(log, tcg.ParseOpts{})
	if err != nil {
		return nil, err
	}
	l := &eventlog.Log{CryptoAgile: true, Banks: []eventlog.Bank{eventlog.SHA256}}
	for i, e := range el.Events(register.HashSHA256) {
		l.Events = append(l.Events, eventlog.Event{Seq: i + 1, PCR: e.Index, Type: e.Type, Data: e.Data,
			Digests: map[eventlog.Bank][]byte{eventlog.SHA256: e.Digest}})
	}
	return l, nil
}
