package logforge

import (
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"time"
	"unicode/utf16"

	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/eventlog"
)

// GUIDs in their on-disk (mixed-endian) byte order (UEFI 2.x sections 3.3, 32.4.1, 32.6.1).
var (
	// EFIGlobalVariable is EFI_GLOBAL_VARIABLE (8be4df61-93ca-11d2-aa0d-00e098032b8c): SecureBoot, PK, KEK.
	EFIGlobalVariable = [16]byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}
	// ImageSecurityDatabase is EFI_IMAGE_SECURITY_DATABASE_GUID (d719b2cb-3d3a-4596-a3bc-dad00e67656f): db, dbx.
	ImageSecurityDatabase = [16]byte{0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f}
	// SHA256SignatureType is EFI_CERT_SHA256_GUID (c1c41626-504c-4092-aca9-41f936934328).
	SHA256SignatureType = [16]byte{0x26, 0x16, 0xc4, 0xc1, 0x4c, 0x50, 0x92, 0x40, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28}
)

// MiniUEFI returns a small (under 3 KB) SHA-1 + SHA-256 crypto-agile log of a UEFI boot with
// Secure Boot on, for the short fuzz runs: it holds what go-eventlog decodes in a real log (an
// S-CRTM version, the SecureBoot, PK, KEK, db and dbx variables with EFI_SIGNATURE_LISTs, the
// EV_SEPARATORs of PCRs 0-7, EV_EFI_ACTION strings, a boot application's
// UEFI_IMAGE_LOAD_EVENT with a device path, the EV_EFI_VARIABLE_AUTHORITY of the db certificate
// that verified it) at a size the fuzzer mutates and minimizes in microseconds, where a real
// 30-70 KB log takes it minutes. Every event's digest is the hash of its data; evidence forged
// over it verifies. The bytes are the same on every call.
func MiniUEFI() []byte {
	banks := []eventlog.Bank{eventlog.SHA1, eventlog.SHA256}
	m := func(pcr uint32, typ tcg.EventType, data []byte) Event {
		return Measure(pcr, uint32(typ), data, banks...)
	}
	hashList := func(n int) []byte { // n SHA-256 signatures: SignatureOwner GUID + 32-byte hash each
		return SignatureList(SHA256SignatureType, 16+32, make([]byte, n*(16+32)))
	}
	dbCert := append(make([]byte, 16), miniCert()...) // EFI_SIGNATURE_DATA: SignatureOwner, X.509 DER
	dbList := SignatureList(X509SignatureType, uint32(len(dbCert)), dbCert)
	evs := []Event{
		m(0, tcg.SCRTMVersion, utf16z("mini firmware 1.0")),
		m(7, tcg.EFIVariableDriverConfig, UEFIVariable(EFIGlobalVariable, "SecureBoot", []byte{1})),
		m(7, tcg.EFIVariableDriverConfig, UEFIVariable(EFIGlobalVariable, "PK", hashList(1))),
		m(7, tcg.EFIVariableDriverConfig, UEFIVariable(EFIGlobalVariable, "KEK", hashList(1))),
		m(7, tcg.EFIVariableDriverConfig, UEFIVariable(ImageSecurityDatabase, "db", append(dbList, hashList(1)...))),
		m(7, tcg.EFIVariableDriverConfig, UEFIVariable(ImageSecurityDatabase, "dbx", hashList(1))),
	}
	for pcr := uint32(0); pcr < 8; pcr++ {
		evs = append(evs, m(pcr, tcg.Separator, []byte{0, 0, 0, 0}))
	}
	evs = append(evs,
		m(4, tcg.EFIAction, []byte(tcg.CallingEFIApplication)),
		m(7, tcg.EFIVariableAuthority, UEFIVariable(ImageSecurityDatabase, "db", dbCert)),
		m(4, tcg.EFIBootServicesApplication, imageLoad(`\EFI\BOOT\BOOTX64.EFI`)),
		m(5, tcg.EFIAction, []byte(tcg.ExitBootServicesInvocation)),
		m(5, tcg.EFIAction, []byte("Exit Boot Services Returned with Success")),
	)
	return Encode(banks, evs)
}

// utf16z encodes s as NUL-terminated UTF-16LE.
func utf16z(s string) []byte {
	var out []byte
	for _, c := range utf16.Encode([]rune(s + "\x00")) {
		out = binary.LittleEndian.AppendUint16(out, c)
	}
	return out
}

// imageLoad encodes a UEFI_IMAGE_LOAD_EVENT (PFP 10.2.3) whose device path is one media file
// path node (UEFI 2.x section 10.3.5.4) and the end node.
func imageLoad(path string) []byte {
	le := binary.LittleEndian
	name := utf16z(path)
	dp := []byte{0x04, 0x04} // MEDIA_DEVICE_PATH, MEDIA_FILEPATH_DP
	dp = le.AppendUint16(dp, uint16(4+len(name)))
	dp = append(dp, name...)
	dp = append(dp, 0x7f, 0xff, 4, 0)       // END_ENTIRE_DEVICE_PATH
	out := le.AppendUint64(nil, 0x7f000000) // ImageLocationInMemory
	out = le.AppendUint64(out, 0x10000)     // ImageLengthInMemory
	out = le.AppendUint64(out, 0)           // ImageLinkTimeAddress
	out = le.AppendUint64(out, uint64(len(dp)))
	return append(out, dp...)
}

// miniCert returns a fixed self-signed Ed25519 certificate (Ed25519 signing is deterministic),
// standing for the db certificate that verified the boot application.
func miniCert() []byte {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "logforge db"},
		NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic("logforge: " + err.Error())
	}
	return der
}
