package evidence

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"

	pb "github.com/google/go-tpm-tools/proto/attest"
	legacy "github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpm2"

	"github.com/passport-attest/passport/store"
)

// tpmGeneratedValue is TPM_GENERATED_VALUE, the magic that starts every TPMS_ATTEST
// (TPM 2.0 Part 2, section 6.2).
const tpmGeneratedValue = 0xff544347

var tpmGeneratedBytes = []byte{0xff, 0x54, 0x43, 0x47}

// akAttributes are the TPMA_OBJECT bits an attestation key must have (TPM 2.0 Part 1 section
// 27.1 and the TCG EK Credential Profile's AK template): a restricted signing key (so the TPM
// signs only digests of data it produced itself, never a forged TPMS_ATTEST) whose private
// part was generated in, and never leaves, the TPM.
const akAttributes = legacy.FlagSign | legacy.FlagRestricted | legacy.FlagFixedTPM |
	legacy.FlagFixedParent | legacy.FlagSensitiveDataOrigin

var attrNames = []struct {
	f    legacy.KeyProp
	name string
}{
	{legacy.FlagFixedTPM, "fixedTPM"}, {legacy.FlagFixedParent, "fixedParent"},
	{legacy.FlagSensitiveDataOrigin, "sensitiveDataOrigin"}, {legacy.FlagRestricted, "restricted"},
	{legacy.FlagSign, "sign"},
}

// decodeAK decodes the attestation's AK public area (TPMT_PUBLIC) and checks that it describes
// a restricted, non-duplicable signing key that cannot also decrypt (CheckAKKey). These
// attributes are only claims until something binds them: the AK's name in MakeCredential
// (enrollment) or a certificate; here they stop an operator from trusting, by mistake, a key
// the attester says is an ordinary signing key, which could sign a forged quote.
func decodeAK(att *pb.Attestation) (legacy.Public, crypto.PublicKey, error) {
	pub, err := legacy.DecodePublic(att.GetAkPub())
	if err != nil {
		return pub, nil, fail(CheckDecode, fmt.Errorf("AK public area: %w", err))
	}
	k, err := pub.Key()
	if err != nil {
		return pub, nil, fail(CheckDecode, fmt.Errorf("AK public key: %w", err))
	}
	if err := CheckAKAttributes(pub); err != nil {
		return pub, nil, fail(CheckAKKey, err)
	}
	return pub, k, nil
}

// CheckAKAttributes returns an error naming the TPMA_OBJECT attributes that keep pub from
// being an attestation key: it must be a restricted signing key with fixedTPM, fixedParent and
// sensitiveDataOrigin, and must not have decrypt (TPM 2.0 Part 2 section 8.3).
func CheckAKAttributes(pub legacy.Public) error {
	var missing []string
	for _, a := range attrNames {
		if pub.Attributes&a.f == 0 {
			missing = append(missing, a.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("AK public area lacks %s: not a restricted TPM-resident signing key", strings.Join(missing, ", "))
	}
	if pub.Attributes&legacy.FlagDecrypt != 0 {
		return errors.New("AK public area has decrypt set: an attestation key only signs")
	}
	return nil
}

// quoteFacts is what checkQuotes reads from the last quote's TPMS_ATTEST.
type quoteFacts struct {
	clock    store.ClockInfo
	firmware uint64
}

// checkQuotes decodes every quote's TPMS_ATTEST (TPM 2.0 Part 2 section 10.12.12) before any
// signature work and refuses, with CheckQuoteData: a magic other than TPM_GENERATED_VALUE, a
// type other than TPM_ST_ATTEST_QUOTE, bytes after the structure (go-tpm's decoders ignore
// them), a selection of more than one bank or of another bank than the values supplied beside
// the quote, and supplied values for PCRs outside the signed selection; with CheckBinding an
// extraData other than want (compared in constant time, so its length is checked too).
func checkQuotes(att *pb.Attestation, want []byte) (quoteFacts, error) {
	var facts quoteFacts
	if len(att.GetQuotes()) == 0 {
		return facts, fail(CheckQuoteData, errors.New("attestation carries no quote"))
	}
	for i, q := range att.GetQuotes() {
		raw := q.GetQuote()
		if len(raw) < 6 || !bytes.Equal(raw[:4], tpmGeneratedBytes) {
			return facts, fail(CheckQuoteData, fmt.Errorf("quote %d: TPMS_ATTEST magic is not TPM_GENERATED_VALUE (0x%08x)", i, uint32(tpmGeneratedValue)))
		}
		if typ := uint16(raw[4])<<8 | uint16(raw[5]); typ != uint16(tpm2.TPMSTAttestQuote) {
			return facts, fail(CheckQuoteData, fmt.Errorf("quote %d: TPMS_ATTEST type 0x%04x is not TPM_ST_ATTEST_QUOTE (0x8018)", i, typ))
		}
		ad, err := tpm2.Unmarshal[tpm2.TPMSAttest](raw)
		if err != nil {
			return facts, fail(CheckQuoteData, fmt.Errorf("quote %d: TPMS_ATTEST: %w", i, err))
		}
		if n := len(tpm2.Marshal(*ad)); n != len(raw) {
			return facts, fail(CheckQuoteData, fmt.Errorf("quote %d: %d bytes follow the %d-byte TPMS_ATTEST", i, len(raw)-n, n))
		}
		qi, err := ad.Attested.Quote()
		if err != nil {
			return facts, fail(CheckQuoteData, fmt.Errorf("quote %d: %w", i, err))
		}
		if subtle.ConstantTimeCompare(ad.ExtraData.Buffer, want) != 1 {
			return facts, fail(CheckBinding, fmt.Errorf("quote %d: extraData (%d bytes) is not SHA-256(nonce || cnf thumbprint): the evidence was made for another nonce or key", i, len(ad.ExtraData.Buffer)))
		}
		if err := checkSelection(i, qi.PCRSelect, uint16(q.GetPcrs().GetHash()), q.GetPcrs().GetPcrs()); err != nil {
			return facts, err
		}
		facts = quoteFacts{
			clock:    store.ClockInfo{Clock: ad.ClockInfo.Clock, ResetCount: ad.ClockInfo.ResetCount, RestartCount: ad.ClockInfo.RestartCount},
			firmware: ad.FirmwareVersion,
		}
	}
	return facts, nil
}

// checkSelection checks that a quote selects exactly one bank, the bank of the supplied PCR
// values, and exactly the supplied PCRs.
func checkSelection(i int, sel tpm2.TPMLPCRSelection, hash uint16, supplied map[uint32][]byte) error {
	if len(sel.PCRSelections) != 1 {
		return fail(CheckQuoteData, fmt.Errorf("quote %d selects %d PCR banks, want 1", i, len(sel.PCRSelections)))
	}
	s := sel.PCRSelections[0]
	if uint16(s.Hash) != hash {
		return fail(CheckQuoteData, fmt.Errorf("quote %d: PCR values are for bank 0x%04x but the quote selects 0x%04x", i, hash, uint16(s.Hash)))
	}
	var selected []uint32
	for byteIdx, b := range s.PCRSelect {
		for bit := 0; bit < 8; bit++ {
			if b&(1<<bit) != 0 {
				selected = append(selected, uint32(byteIdx*8+bit))
			}
		}
	}
	for idx := range supplied {
		if !slices.Contains(selected, idx) {
			return &Error{Check: CheckQuoteData, PCR: int(idx), Event: -1, Err: fmt.Errorf("quote %d: PCR value supplied outside the signed selection", i)}
		}
	}
	if len(supplied) != len(selected) {
		return fail(CheckQuoteData, fmt.Errorf("quote %d: %d PCR values supplied for %d selected PCRs", i, len(supplied), len(selected)))
	}
	return nil
}
