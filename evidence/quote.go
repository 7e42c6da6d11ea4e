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
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	legacy "github.com/google/go-tpm/legacy/tpm2"

	"github.com/passport-attest/passport/store"
)

// tpmGeneratedValue is TPM_GENERATED_VALUE, the magic that starts every TPMS_ATTEST
// (TPM 2.0 Part 2, section 6.2).
const tpmGeneratedValue = 0xff544347

var tpmGeneratedBytes = []byte{0xff, 0x54, 0x43, 0x47}

// attrNames are the TPMA_OBJECT bits an attestation key must have (TPM 2.0 Part 1 section
// 27.1 and the TCG EK Credential Profile's AK template): a restricted signing key (so the TPM
// signs only digests of data it produced itself, never a forged TPMS_ATTEST) whose private
// part was generated in, and never leaves, the TPM.
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

// attestLen is the length of the canonical encoding of a decoded quote TPMS_ATTEST (TPM 2.0
// Part 2 section 10.12.12): magic, type, TPM2B_NAME, TPM2B_DATA, TPMS_CLOCK_INFO (17 bytes),
// firmwareVersion, then TPMS_QUOTE_INFO: a TPML_PCR_SELECTION of one selection with the
// 3-byte bitmap of a 24-PCR TPM, and a TPM2B_DIGEST. go-tpm's decoder ignores what follows the
// structure, so comparing this with the input's length is what refuses trailing bytes.
func attestLen(ad *legacy.AttestationData) int {
	name := 0
	switch {
	case ad.QualifiedSigner.Digest != nil:
		name = 2 + len(ad.QualifiedSigner.Digest.Value)
	case ad.QualifiedSigner.Handle != nil:
		name = 4
	}
	const clockInfo, sel = 17, 2 + 1 + 3
	return 4 + 2 + (2 + name) + (2 + len(ad.ExtraData)) + clockInfo + 8 +
		4 + sel + (2 + len(ad.AttestedQuoteInfo.PCRDigest))
}

// quoteFacts is what checkQuote reads from the quote's TPMS_ATTEST.
type quoteFacts struct {
	clock    store.ClockInfo
	firmware uint64
}

// checkQuote decodes the appraised quote's TPMS_ATTEST (TPM 2.0 Part 2 section 10.12.12) before
// any signature work and refuses, with CheckQuoteData: a magic other than TPM_GENERATED_VALUE,
// a type other than TPM_ST_ATTEST_QUOTE, bytes after the structure (go-tpm's decoder ignores
// them) or a non-canonical encoding (a PCR bitmap longer than the 3 bytes of a 24-PCR TPM), a
// selection of more than one bank or of another
// bank than the values supplied beside the quote, and supplied values for PCRs outside the
// signed selection; with CheckBinding an extraData other than want (compared in constant time,
// so its length is checked too). Only the quote of the appraised bank is checked: go-tpm-tools
// ignores the others (their signatures are not verified either), and so does the State.
func checkQuote(q *tpmpb.Quote, want []byte) (quoteFacts, error) {
	var facts quoteFacts
	raw := q.GetQuote()
	if len(raw) < 6 || !bytes.Equal(raw[:4], tpmGeneratedBytes) {
		return facts, fail(CheckQuoteData, fmt.Errorf("TPMS_ATTEST magic is not TPM_GENERATED_VALUE (0x%08x)", uint32(tpmGeneratedValue)))
	}
	if typ := uint16(raw[4])<<8 | uint16(raw[5]); typ != uint16(legacy.TagAttestQuote) {
		return facts, fail(CheckQuoteData, fmt.Errorf("TPMS_ATTEST type 0x%04x is not TPM_ST_ATTEST_QUOTE (0x8018)", typ))
	}
	ad, err := legacy.DecodeAttestationData(raw)
	if err != nil {
		return facts, fail(CheckQuoteData, fmt.Errorf("TPMS_ATTEST: %w", err))
	}
	if ad.AttestedQuoteInfo == nil {
		return facts, fail(CheckQuoteData, errors.New("TPMS_ATTEST carries no TPMS_QUOTE_INFO"))
	}
	if n := attestLen(ad); n != len(raw) {
		return facts, fail(CheckQuoteData, fmt.Errorf("TPMS_ATTEST is %d bytes but its fields take %d: %d bytes follow it, or it is not canonically encoded", len(raw), n, len(raw)-n))
	}
	if subtle.ConstantTimeCompare(ad.ExtraData, want) != 1 {
		return facts, fail(CheckBinding, fmt.Errorf("extraData (%d bytes) is not SHA-256(nonce || cnf thumbprint [|| origin]): the evidence was made for another nonce, key or relying party", len(ad.ExtraData)))
	}
	sel := ad.AttestedQuoteInfo.PCRSelection
	if uint16(sel.Hash) != uint16(q.GetPcrs().GetHash()) {
		return facts, fail(CheckQuoteData, fmt.Errorf("PCR values are for bank 0x%04x but the quote selects 0x%04x", uint16(q.GetPcrs().GetHash()), uint16(sel.Hash)))
	}
	supplied := q.GetPcrs().GetPcrs()
	for idx := range supplied {
		if !slices.Contains(sel.PCRs, int(idx)) {
			return facts, &Error{Check: CheckQuoteData, PCR: int(idx), Event: -1, Err: errors.New("PCR value supplied outside the signed selection")}
		}
	}
	if len(supplied) != len(sel.PCRs) {
		return facts, fail(CheckQuoteData, fmt.Errorf("%d PCR values supplied for %d selected PCRs", len(supplied), len(sel.PCRs)))
	}
	return quoteFacts{
		clock:    store.ClockInfo{Clock: ad.ClockInfo.Clock, ResetCount: ad.ClockInfo.ResetCount, RestartCount: ad.ClockInfo.RestartCount},
		firmware: ad.FirmwareVersion,
	}, nil
}
