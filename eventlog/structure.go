package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"

	"github.com/google/go-eventlog/tcg"
)

// ErrMalformedEvent is wrapped by every *MalformedEventError: an event whose data go-eventlog
// would decode (a UEFI variable, a signature list, an image-load event and its device path)
// has size fields that do not fit the data. Such data is refused before any go-eventlog or
// go-tpm-tools extraction sees it: go-eventlog allocates what those size fields say
// (EFI_SIGNATURE_LIST SignatureSize-16 wraps to 4 GiB for a SignatureSize below 16).
var ErrMalformedEvent = errors.New("eventlog: malformed event data")

// ErrTrailingData is returned (wrapped) by Parse for a crypto-agile log holding bytes after a
// 0xFFFFFFFF PCR index that are not all 0xFF padding: go-eventlog's parser stops there, so
// events after it would be silently dropped from the replay.
var ErrTrailingData = errors.New("eventlog: bytes after the padding marker are not padding")

// MalformedEventError names the event whose data failed the structural checks of Parse.
// errors.Is(err, ErrMalformedEvent) is true for it.
type MalformedEventError struct {
	// Seq is the event's position in the log (as Event.Seq), PCR its PCR index, Type its type.
	Seq  int
	PCR  int
	Type tcg.EventType
	// Err says which field is wrong.
	Err error
}

// Error says "eventlog: malformed event data: event N (PCR p, TYPE): cause".
func (e *MalformedEventError) Error() string {
	return fmt.Sprintf("%v: event %d (PCR %d, %s): %v", ErrMalformedEvent, e.Seq, e.PCR, e.Type.TCGString(), e.Err)
}

// Unwrap returns ErrMalformedEvent and the cause.
func (e *MalformedEventError) Unwrap() []error { return []error{ErrMalformedEvent, e.Err} }

// Sizes of the fixed parts of the structures checked (UEFI 2.x and PFP section 10.4).
const (
	uefiVariableHeader = 32 // UEFI_VARIABLE_DATA: VariableName GUID, UnicodeNameLength, VariableDataLength
	sigListHeader      = 28 // EFI_SIGNATURE_LIST: SignatureType GUID, ListSize, HeaderSize, SignatureSize
	sigDataOwner       = 16 // EFI_SIGNATURE_DATA: SignatureOwner GUID
	imageLoadHeader    = 32 // UEFI_IMAGE_LOAD_EVENT: LoadAddr, Length, LinkAddr, LengthOfDevicePath
	devicePathHeader   = 4  // EFI_DEVICE_PATH_PROTOCOL: Type, SubType, Length[2]
	endOfDevicePath    = 0x7f
)

// signatureDatabases are the UEFI variables whose data is a list of EFI_SIGNATURE_LISTs (UEFI
// 2.x section 32.4.1, 32.6): go-eventlog's extract.SecureBootState parses PK, KEK, db and dbx
// as such; dbt and dbr are the other signature databases a descriptive tool may decode.
var signatureDatabases = map[string]bool{"PK": true, "KEK": true, "db": true, "dbx": true, "dbt": true, "dbr": true}

// IsSignatureDatabase reports whether a UEFI variable named name holds EFI_SIGNATURE_LISTs
// (PK, KEK, db, dbx, dbt, dbr): the variables whose data Parse walks list by list.
func IsSignatureDatabase(name string) bool { return signatureDatabases[name] }

// checkStructure checks every event whose data go-eventlog decodes (see checkEvent).
func (l *Log) checkStructure() error {
	for _, e := range l.Events {
		if err := checkEvent(e.Type, e.Data); err != nil {
			return &MalformedEventError{Seq: e.Seq, PCR: e.PCR, Type: e.Type, Err: err}
		}
	}
	return nil
}

// checkEvent checks, against len(data), the size fields of the structures go-eventlog's tcg
// package reads from an event of type typ, so that none of its allocations can exceed the
// event's own size:
//   - UEFI variable events (EV_EFI_VARIABLE_DRIVER_CONFIG, _BOOT, _BOOT2, _AUTHORITY; PFP
//     10.4.4 UEFI_VARIABLE_DATA): the name and data lengths fit the event data; for a
//     driver-config signature database (IsSignatureDatabase) every EFI_SIGNATURE_LIST fits too
//     (checkSignatureLists).
//   - image-load events (EV_EFI_BOOT_SERVICES_APPLICATION, _DRIVER, EV_EFI_RUNTIME_SERVICES_DRIVER;
//     PFP 10.2.3 UEFI_IMAGE_LOAD_EVENT): the device path length fits the event data and every
//     device path node's Length is at least 4 and fits what is left (UEFI 2.x section 10.3.1).
//     Data shorter than the image-load header is left to go-eventlog (it fails reading it).
func checkEvent(typ tcg.EventType, data []byte) error {
	switch typ {
	case tcg.EFIVariableDriverConfig, tcg.EFIVariableBoot, tcg.EFIVariableBoot2, tcg.EFIVariableAuthority:
		name, value, err := uefiVariable(data)
		if err != nil {
			return err
		}
		if typ == tcg.EFIVariableDriverConfig && IsSignatureDatabase(name) {
			if err := checkSignatureLists(value); err != nil {
				return fmt.Errorf("UEFI variable %q: %w", name, err)
			}
		}
	case tcg.EFIBootServicesApplication, tcg.EFIBootServicesDriver, tcg.EFIRuntimeServicesDriver:
		if len(data) < imageLoadHeader {
			return nil
		}
		n := binary.LittleEndian.Uint64(data[24:32])
		if n > uint64(len(data)-imageLoadHeader) {
			return fmt.Errorf("UEFI_IMAGE_LOAD_EVENT device path length %d past the %d bytes left", n, len(data)-imageLoadHeader)
		}
		return checkDevicePath(data[imageLoadHeader : imageLoadHeader+int(n)])
	}
	return nil
}

// uefiVariable checks a UEFI_VARIABLE_DATA (PFP 10.4.4: VariableName GUID, UINT64
// UnicodeNameLength in UTF-16 code units, UINT64 VariableDataLength, the name, the data) and
// returns its name and data. Bytes after the data are tolerated (a shim bug logs one more).
func uefiVariable(data []byte) (string, []byte, error) {
	if len(data) < uefiVariableHeader {
		return "", nil, fmt.Errorf("UEFI_VARIABLE_DATA is %d bytes, shorter than its %d-byte header", len(data), uefiVariableHeader)
	}
	nameLen := binary.LittleEndian.Uint64(data[16:24])
	dataLen := binary.LittleEndian.Uint64(data[24:32])
	rest := uint64(len(data) - uefiVariableHeader)
	if nameLen > rest/2 {
		return "", nil, fmt.Errorf("UEFI_VARIABLE_DATA UnicodeNameLength %d past the %d bytes left", nameLen, rest)
	}
	rest -= 2 * nameLen
	if dataLen > rest {
		return "", nil, fmt.Errorf("UEFI_VARIABLE_DATA VariableDataLength %d past the %d bytes left", dataLen, rest)
	}
	u := make([]uint16, nameLen)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(data[uefiVariableHeader+2*i:])
	}
	start := uefiVariableHeader + 2*int(nameLen)
	return string(utf16.Decode(u)), data[start : start+int(dataLen)], nil
}

// checkSignatureLists walks the EFI_SIGNATURE_LISTs of a signature database (UEFI 2.x section
// 32.4.1) and requires of each: a whole 28-byte header; SignatureListSize at least 28 plus
// SignatureHeaderSize and within the bytes left; SignatureSize at least 16 (the owner GUID) and
// no larger than the list's payload; and the signatures filling the rest of the list exactly.
// An empty variable (no list) is fine.
func checkSignatureLists(b []byte) error {
	for off, i := 0, 0; off < len(b); i++ {
		left := len(b) - off
		if left < sigListHeader {
			return fmt.Errorf("EFI_SIGNATURE_LIST %d: %d bytes left, shorter than its %d-byte header", i, left, sigListHeader)
		}
		h := b[off:]
		listSize := uint64(binary.LittleEndian.Uint32(h[16:20]))
		hdrSize := uint64(binary.LittleEndian.Uint32(h[20:24]))
		sigSize := uint64(binary.LittleEndian.Uint32(h[24:28]))
		switch {
		case listSize > uint64(left):
			return fmt.Errorf("EFI_SIGNATURE_LIST %d: SignatureListSize %d past the %d bytes left", i, listSize, left)
		case listSize < sigListHeader+hdrSize:
			return fmt.Errorf("EFI_SIGNATURE_LIST %d: SignatureListSize %d below the header's %d bytes plus SignatureHeaderSize %d", i, listSize, sigListHeader, hdrSize)
		case sigSize < sigDataOwner:
			return fmt.Errorf("EFI_SIGNATURE_LIST %d: SignatureSize %d below the %d-byte SignatureOwner", i, sigSize, sigDataOwner)
		case listSize > sigListHeader && sigSize > listSize-sigListHeader:
			return fmt.Errorf("EFI_SIGNATURE_LIST %d: SignatureSize %d past the list's %d bytes of signatures", i, sigSize, listSize-sigListHeader)
		case (listSize-sigListHeader-hdrSize)%sigSize != 0:
			return fmt.Errorf("EFI_SIGNATURE_LIST %d: %d bytes of signatures are not a whole number of %d-byte signatures", i, listSize-sigListHeader-hdrSize, sigSize)
		}
		off += int(listSize)
	}
	return nil
}

// checkDevicePath walks the nodes of an EFI device path (UEFI 2.x section 10.3.1: Type,
// SubType, a UINT16 Length counting the 4-byte header) up to the end node, as go-eventlog's
// EFIImageLoad.DevicePath reads them.
func checkDevicePath(p []byte) error {
	for off := 0; off < len(p); {
		left := len(p) - off
		if left < devicePathHeader {
			return fmt.Errorf("device path node at offset %d: %d bytes left, shorter than its %d-byte header", off, left, devicePathHeader)
		}
		n := int(binary.LittleEndian.Uint16(p[off+2 : off+4]))
		if n < devicePathHeader || n > left {
			return fmt.Errorf("device path node at offset %d: Length %d, want %d..%d", off, n, devicePathHeader, left)
		}
		if p[off] == endOfDevicePath {
			return nil
		}
		off += n
	}
	return nil
}
