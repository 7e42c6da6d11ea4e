package policy

import (
	"encoding/hex"
	"slices"
	"sync"

	pb "github.com/google/go-tpm-tools/proto/attest"
)

// The evaluation's input lives in a pooled inputBox: buildInput fills it, Appraise releases it.

// inputBox holds one evaluation's input and the scratch space buildInput needs, so that an
// evaluation allocates neither: boxes are pooled and their lists and maps reused (release).
type inputBox struct {
	in    input
	tpm   TPM
	ak    AK
	clock Clock
	boot  Boot
	act   activation
	cel   fieldCache
	// byType collects the digests of each event type read (Boot.Events); free keeps the lists
	// of earlier evaluations for reuse.
	byType map[uint32]*[]string
	free   []*[]string
	pcr9   []int
}

var inputBoxes = sync.Pool{New: func() any { return new(inputBox) }}

// release returns the box of in (from buildInput) to the pool: nothing of the input may be used
// afterwards. Its lists keep their capacity; every reference they hold is cleared.
func (in *input) release() {
	x := in.box
	if x == nil {
		return
	}
	b := &x.boot
	for _, l := range []*[]string{&b.Firmware, &b.EFIApps, &b.Bootloaders, &b.GRUBFiles} {
		clear(*l)
		*l = (*l)[:0]
	}
	for _, l := range x.byType {
		clear(*l)
		*l = (*l)[:0]
		x.free = append(x.free, l)
	}
	clear(x.byType)
	clear(b.Events)
	*b = Boot{Firmware: b.Firmware, EFIApps: b.EFIApps, Bootloaders: b.Bootloaders, GRUBFiles: b.GRUBFiles, Events: b.Events}
	x.tpm = TPM{LoggedPCRs: x.tpm.LoggedPCRs[:0]}
	x.in, x.ak, x.clock, x.act, x.cel = input{}, AK{}, Clock{}, activation{}, fieldCache{}
	x.pcr9 = x.pcr9[:0]
	inputBoxes.Put(x)
}

// walk sorts the events into the lists of the Boot (firmware, EFI applications, boot
// loaders, GRUB files, events by type) and collects in x.pcr9 GRUB's PCR 9 events; it
// returns the last kernel command line event of PCR 8 (-1 when none), its text and how many
// there are. (A function of its own: the compiler keeps its few variables in registers.)
func (x *inputBox) walk(events []*pb.Event, n needs, h *hexer) (cmd int, cmdText []byte, cmdlines int) {
	b := &x.boot
	grubSeen := false
	pcr9 := x.pcr9[:0]
	cmd = -1
	grubFiles, kernel, allTypes, someTypes := n.grubFiles, n.kernel, n.events, n.eventTypes
	for i, e := range events {
		idx, typ := e.GetPcrIndex(), e.GetUntrustedType()
		switch {
		case idx == 0 && typ != evSep:
			h.toSlice(&b.Firmware, e.GetDigest())
		case idx == 4 && typ == evBSA:
			h.toSlice(&b.EFIApps, e.GetDigest())
			if !grubSeen {
				h.toSlice(&b.Bootloaders, e.GetDigest())
			}
		case idx == 9 && typ == evIPL:
			grubSeen = true
			if grubFiles {
				h.toSlice(&b.GRUBFiles, e.GetDigest())
			}
			if kernel {
				pcr9 = append(pcr9, i)
			}
		case idx == 8 && typ == evIPL:
			grubSeen = true
			// Most PCR 8 events are GRUB commands ("grub_cmd: ..."): tell them from command
			// lines here, without a call (cmdlineText checks the same two bytes first).
			if data := e.GetData(); kernel && len(data) >= 6 && (data[0] == 'k' || data[5] == 'k') {
				if text, ok := cmdlineText(data); ok {
					cmd, cmdText = i, text
					cmdlines++
				}
			}
		}
		if allTypes || (len(someTypes) > 0 && slices.Contains(someTypes, typ)) {
			x.addTyped(h, typ, e.GetDigest())
		}
	}
	x.pcr9 = pcr9
	return cmd, cmdText, cmdlines
}

// addTyped adds the digest d of an event of type typ to the list of its type (Boot.Events).
func (x *inputBox) addTyped(h *hexer, typ uint32, d []byte) {
	l, ok := x.byType[typ]
	if !ok {
		if k := len(x.free); k > 0 {
			l, x.free = x.free[k-1], x.free[:k-1]
		} else {
			l = new([]string)
		}
		x.byType[typ] = l
	}
	h.toSlice(l, d)
}

// hexer hex-encodes digests into one buffer and, on flush, hands out substrings of one string:
// one allocation for all of an evaluation's digests. Hexers are pooled (the buffer is copied
// into the string, so it can be reused).
type hexer struct {
	buf  []byte
	refs []hexRef
}

// hexRef is where one encoded digest goes: a slot of a list sized in advance or a string field.
type hexRef struct {
	list       *[]string
	i          int
	str        *string
	start, end int
}

var hexers = sync.Pool{New: func() any { return &hexer{buf: make([]byte, 0, 32*64), refs: make([]hexRef, 0, 32)} }}

// release clears h and returns it to the pool.
func (h *hexer) release() {
	clear(h.refs) // drop references to lists
	h.buf, h.refs = h.buf[:0], h.refs[:0]
	hexers.Put(h)
}

func (h *hexer) add(r hexRef, d []byte) {
	r.start = len(h.buf)
	h.buf = slices.Grow(h.buf, 2*len(d))[:r.start+2*len(d)]
	r.end = r.start + hex.Encode(h.buf[r.start:], d)
	h.refs = append(h.refs, r)
}

// toSlice appends to *l a placeholder for the encoding of digest d, filled by flush (which
// reads *l then, so appends in between are fine).
func (h *hexer) toSlice(l *[]string, d []byte) {
	*l = append(*l, "")
	h.add(hexRef{list: l, i: len(*l) - 1}, d)
}

// toString sets *dst to the encoding of digest d on flush.
func (h *hexer) toString(dst *string, d []byte) {
	h.add(hexRef{str: dst}, d)
}

func (h *hexer) flush() {
	if len(h.refs) == 0 {
		return
	}
	all := string(h.buf)
	for _, r := range h.refs {
		v := all[r.start:r.end]
		if r.list != nil {
			(*r.list)[r.i] = v
		} else {
			*r.str = v
		}
	}
}
