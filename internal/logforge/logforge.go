// Package logforge writes TCG PC Client crypto-agile event logs (PFP section 10.2.1) for
// tests: re-encoding a parsed real log after a test changed it (a relabelled type, an appended
// event, a vendor event) and building small logs from scratch. It is test support only: the
// product parses logs with go-eventlog and never writes them.
package logforge

import (
	"crypto"
	"encoding/binary"

	"github.com/passport-attest/passport/eventlog"
)

// Event is one event to encode.
type Event struct {
	PCR  uint32
	Type uint32
	// Digests per bank, written in the log's bank order; a bank missing here is left out of
	// the event (a malformed but parseable log).
	Digests map[eventlog.Bank][]byte
	Data    []byte
}

// algID is the TPM_ALG_ID of a bank (TPM 2.0 Part 2 section 6.3).
func algID(b eventlog.Bank) uint16 {
	switch b {
	case eventlog.SHA1:
		return 0x0004
	case eventlog.SHA256:
		return 0x000b
	case eventlog.SHA384:
		return 0x000c
	}
	panic("logforge: unknown bank " + string(b))
}

// Measure returns an event whose digest in every bank is the hash of data (as for
// EV_SEPARATOR or EV_EFI_ACTION).
func Measure(pcr, typ uint32, data []byte, banks ...eventlog.Bank) Event {
	e := Event{PCR: pcr, Type: typ, Data: data, Digests: map[eventlog.Bank][]byte{}}
	for _, b := range banks {
		e.Digests[b] = Hash(b, data)
	}
	return e
}

// Hash returns the hash of data with bank b's algorithm.
func Hash(b eventlog.Bank, data []byte) []byte {
	h := b.Hash().New()
	h.Write(data)
	return h.Sum(nil)
}

// FromLog returns the banks and events of a parsed log, for re-encoding with Encode.
func FromLog(l *eventlog.Log) ([]eventlog.Bank, []Event) {
	out := make([]Event, len(l.Events))
	for i, e := range l.Events {
		d := make(map[eventlog.Bank][]byte, len(e.Digests))
		for b, v := range e.Digests {
			d[b] = append([]byte(nil), v...)
		}
		out[i] = Event{PCR: uint32(e.PCR), Type: uint32(e.Type), Data: append([]byte(nil), e.Data...), Digests: d}
	}
	return append([]eventlog.Bank(nil), l.Banks...), out
}

// Encode writes a crypto-agile log: a Spec ID Event03 declaring banks (PFP 10.4.5.1, in the
// legacy TCG_PCClientPCREvent format) followed by events in TCG_PCR_EVENT2 format.
func Encode(banks []eventlog.Bank, events []Event) []byte {
	le := binary.LittleEndian
	spec := append([]byte("Spec ID Event03\x00"), 0, 0, 0, 0) // signature, platformClass
	spec = append(spec, 0, 2, 0, 2)                           // minor, major, errata, uintnSize
	spec = le.AppendUint32(spec, uint32(len(banks)))
	for _, b := range banks {
		spec = le.AppendUint16(spec, algID(b))
		spec = le.AppendUint16(spec, uint16(b.Hash().Size()))
	}
	spec = append(spec, 0) // vendorInfoSize
	out := le.AppendUint32(nil, 0)
	out = le.AppendUint32(out, 3) // EV_NO_ACTION
	out = append(out, make([]byte, crypto.SHA1.Size())...)
	out = le.AppendUint32(out, uint32(len(spec)))
	out = append(out, spec...)
	for _, e := range events {
		out = le.AppendUint32(out, e.PCR)
		out = le.AppendUint32(out, e.Type)
		n := 0
		for _, b := range banks {
			if _, ok := e.Digests[b]; ok {
				n++
			}
		}
		out = le.AppendUint32(out, uint32(n))
		for _, b := range banks {
			if d, ok := e.Digests[b]; ok {
				out = le.AppendUint16(out, algID(b))
				out = append(out, d...)
			}
		}
		out = le.AppendUint32(out, uint32(len(e.Data)))
		out = append(out, e.Data...)
	}
	return out
}
