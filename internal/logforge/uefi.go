package logforge

import (
	"encoding/binary"
	"errors"
	"unicode/utf16"

	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/eventlog"
)

// X509SignatureType is EFI_CERT_X509_GUID (a5c059a1-94e4-4aa7-87b5-ab155c2bf072, UEFI 2.x
// section 32.4.1) in its on-disk (mixed-endian) byte order.
var X509SignatureType = [16]byte{0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72}

// UEFIVariable encodes a UEFI_VARIABLE_DATA (PFP 10.4.4) with lengths matching name and data.
func UEFIVariable(guid [16]byte, name string, data []byte) []byte {
	u := utf16.Encode([]rune(name))
	out := append([]byte(nil), guid[:]...)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(u)))
	out = binary.LittleEndian.AppendUint64(out, uint64(len(data)))
	for _, c := range u {
		out = binary.LittleEndian.AppendUint16(out, c)
	}
	return append(out, data...)
}

// SignatureList encodes one EFI_SIGNATURE_LIST (UEFI 2.x section 32.4.1) of type typ with no
// signature header, declaring sigSize as its SignatureSize whatever the payload holds, and
// SignatureListSize 28 + len(payload).
func SignatureList(typ [16]byte, sigSize uint32, payload []byte) []byte {
	out := append([]byte(nil), typ[:]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(28+len(payload)))
	out = binary.LittleEndian.AppendUint32(out, 0)
	out = binary.LittleEndian.AppendUint32(out, sigSize)
	return append(out, payload...)
}

// ReplaceVariable re-encodes log with the data of its first EV_EFI_VARIABLE_DRIVER_CONFIG
// event for UEFI variable name replaced by UEFI_VARIABLE_DATA of the same GUID and name holding
// value, every digest being the hash of the new event data (as PFP 10.4.4 measures
// driver-config variables, so that go-eventlog's digest check passes and it parses the value).
func ReplaceVariable(log []byte, name string, value []byte) ([]byte, error) {
	l, err := eventlog.Parse(log)
	if err != nil {
		return nil, err
	}
	banks, events := FromLog(l)
	for i, e := range events {
		if e.Type != uint32(tcg.EFIVariableDriverConfig) || len(e.Data) < 32 || !hasName(e.Data, name) {
			continue
		}
		var guid [16]byte
		copy(guid[:], e.Data)
		events[i] = Measure(e.PCR, e.Type, UEFIVariable(guid, name, value), banks...)
		return Encode(banks, events), nil
	}
	return nil, errors.New("logforge: the log has no driver-config event for variable " + name)
}

func hasName(data []byte, name string) bool {
	u := utf16.Encode([]rune(name))
	if binary.LittleEndian.Uint64(data[16:24]) != uint64(len(u)) || len(data) < 32+2*len(u) {
		return false
	}
	for i, c := range u {
		if binary.LittleEndian.Uint16(data[32+2*i:]) != c {
			return false
		}
	}
	return true
}

// ZeroSignatureSizeDB returns log with its db variable replaced by one X.509 EFI_SIGNATURE_LIST
// whose SignatureSize is 0 over 48 bytes of signatures: go-eventlog's parser (pinned version)
// allocates SignatureSize-16, wrapped to about 4 GiB, for it. Digests are consistent with the
// new data. The security review's D1 input.
func ZeroSignatureSizeDB(log []byte) ([]byte, error) {
	return ReplaceVariable(log, "db", SignatureList(X509SignatureType, 0, make([]byte, 48)))
}
