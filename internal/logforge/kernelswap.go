package logforge

import (
	"bytes"
	"errors"

	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/eventlog"
)

// KernelSwapDecoy is the file name KernelSwap gives the real (changed) kernel measurement.
const KernelSwapDecoy = "/boot/grub/fonts/unicode.pf2"

// KernelSwap forges the kernel-swap attack on a GRUB log: the PCR 9 EV_IPL event of the
// kernel (data "/boot/vmlinuz...") is renamed KernelSwapDecoy and its digest changed in every
// bank (an unknown kernel), and a PCR 9 EV_IPL event carrying the original kernel's digests
// and name is appended at the end of the log. Event names are not covered by the quote, so a
// verifier that picks "the kernel" by name sees the good one. It returns the forged log and
// the changed SHA-256 digest; it fails when the log has no such kernel event.
func KernelSwap(log []byte) ([]byte, []byte, error) {
	l, err := eventlog.Parse(log)
	if err != nil {
		return nil, nil, err
	}
	banks, evs := FromLog(l)
	for i, e := range evs {
		if e.PCR != 9 || e.Type != uint32(tcg.Ipl) || !bytes.HasPrefix(e.Data, []byte("/boot/vmlinuz")) {
			continue
		}
		good := Event{PCR: e.PCR, Type: e.Type, Data: bytes.Clone(e.Data), Digests: map[eventlog.Bank][]byte{}}
		for b, d := range e.Digests {
			good.Digests[b] = bytes.Clone(d)
			d[len(d)-1] ^= 0x5a
		}
		evs[i].Data = []byte(KernelSwapDecoy + "\x00")
		return Encode(banks, append(evs, good)), evs[i].Digests[eventlog.SHA256], nil
	}
	return nil, nil, errors.New("logforge: no PCR 9 kernel event")
}
