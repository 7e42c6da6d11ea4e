package policy

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-eventlog/tcg"
	pb "github.com/google/go-tpm-tools/proto/attest"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/refvalues"
)

// digestIndex maps raw digests to values. Every event digest of a log (hundreds per
// evaluation) is looked up, and nearly all miss: a 4096-bit filter on the digest's first bytes
// answers most misses without touching the map.
type digestIndex[V any] struct {
	filter [64]uint64
	m      map[uint64][]digestEntry[V]
}

type digestEntry[V any] struct {
	raw string
	val V
}

func digestKey(raw []byte) uint64 {
	if len(raw) >= 8 {
		return binary.BigEndian.Uint64(raw)
	}
	var k uint64
	for _, c := range raw {
		k = k<<8 | uint64(c)
	}
	return k
}

func (x *digestIndex[V]) put(raw []byte, v V) {
	k := digestKey(raw)
	if x.m == nil {
		x.m = map[uint64][]digestEntry[V]{}
	}
	x.filter[(k>>6)&63] |= 1 << (k & 63)
	x.m[k] = append(x.m[k], digestEntry[V]{raw: string(raw), val: v})
}

// get returns the value of raw, whose digestKey is k.
func (x *digestIndex[V]) get(k uint64, raw []byte) (V, bool) {
	var zero V
	if x.filter[(k>>6)&63]&(1<<(k&63)) == 0 {
		return zero, false
	}
	for _, e := range x.m[k] {
		if e.raw == string(raw) {
			return e.val, true
		}
	}
	return zero, false
}

func (x *digestIndex[V]) len() int { return len(x.m) }

// maxRecordedPCR is the last PCR whose event digests an appraisal records (PCRs 0-9: firmware,
// boot loaders, GRUB, kernel; PCRs 10 and above hold runtime logs such as IMA's).
const maxRecordedPCR = 9

// digestScan is the scratch space of one evaluation's scanDigests, pooled between evaluations.
type digestScan struct {
	ds    []rawDigest
	first []bool      // first[i]: ds[i] is the first of its run of equal digests (hexSorted)
	maybe []candidate // events whose digest passes the filter of accepted or revoked digests
	seen  []uint64
	buf   []byte
	// short: some digest in ds has fewer than 8 bytes (its key does not order it).
	short bool
	// known maps each event recorded in Measured to its digest's encoding there, when that is
	// lowercase hex (an accepted value may be written in upper case in its set): buildInput
	// hands out the same string instead of encoding the digest again.
	known encodings
}

// encodings are the hex encodings of some events' digests: strs[at[i]-1] for event i when
// at[i] > 0. at holds no pointer, so filling and clearing it costs no GC write barrier.
type encodings struct {
	strs []string
	at   []int32
}

// of returns the encoding of event's digest, "" when there is none.
func (e encodings) of(event int) string {
	if event < len(e.at) {
		if k := e.at[event]; k > 0 {
			return e.strs[k-1]
		}
	}
	return ""
}

var digestScans = sync.Pool{New: func() any { return new(digestScan) }}

// release clears the references sc holds and returns it to the pool.
func (sc *digestScan) release() {
	sc.ds, sc.first, sc.buf, sc.maybe = sc.ds[:0], sc.first[:0], sc.buf[:0], sc.maybe[:0]
	sc.known = encodings{at: sc.known.at[:0]}
	sc.short = false
	digestScans.Put(sc)
}

// scanDigests walks every digest of the evidence (PCR values and event digests) once. It
// records in a.ReferenceValues (sorted, unique, lowercase hex) the accepted reference values
// the evidence matched and, when some rule reads a reference-value set, every event digest of
// PCRs 0-9 (what those rules and the pinned PCRs appraised), so that a token can be found by
// any measurement it vouched for once that measurement is revoked. Revoked digests fail the
// built-in revoked-reference-value rule, naming where they appear. It returns its scratch
// space, which holds the hex encoding of the recorded event digests (release it after use).
func (p *Policy) scanDigests(s *evidence.State, a *Appraisal) *digestScan {
	sc := digestScans.Get().(*digestScan)
	words := (len(p.acceptedHex) + 63) / 64
	seen := slices.Grow(sc.seen[:0], words)[:words] // bit i: acceptedHex[i] was matched
	clear(seen)
	sc.seen = seen
	nSeen := 0
	var hits []revokedHit
	anyRevoked := p.revoked.len() > 0
	for _, idx := range s.LoggedPCRs {
		v, ok := s.PCRs[idx]
		if !ok {
			continue
		}
		if i, ok := p.accepted.get(digestKey(v), v); ok && seen[i/64]&(1<<(i%64)) == 0 {
			seen[i/64] |= 1 << (i % 64)
			nSeen++
		}
		if anyRevoked {
			if r, ok := p.revoked.get(digestKey(v), v); ok {
				hits = append(hits, revokedHit{r: r, pcr: int(idx), event: -1, pcrValue: true})
			}
		}
	}
	events := s.Machine.GetRawEvents()
	// First, in a loop without calls (the compiler keeps its variables in registers), the
	// digests to record and the few whose first bytes pass the filter of the accepted or the
	// revoked digests; then the index lookups for those only.
	record := p.prog.usesSets
	measured := slices.Grow(sc.ds[:0], len(events))[:len(events)] // event digests of PCRs 0-9, when recorded
	maybe := slices.Grow(sc.maybe[:0], len(events))[:len(events)]
	nm, nMaybe, short := 0, 0, false
	acceptedF, revokedF := &p.accepted.filter, &p.revoked.filter
	for i, e := range events {
		d := e.GetDigest()
		k := digestKey(d)
		w, bit := (k>>6)&63, uint64(1)<<(k&63)
		pos := int32(-1)
		if record && e.GetPcrIndex() <= maxRecordedPCR {
			measured[nm] = rawDigest{key: k, event: int32(i), accepted: -1}
			pos = int32(nm)
			nm++
			short = short || len(d) < 8
		}
		if (acceptedF[w]|revokedF[w])&bit != 0 {
			maybe[nMaybe] = candidate{event: int32(i), pos: pos}
			nMaybe++
		}
	}
	measured, sc.maybe, sc.short = measured[:nm], maybe[:nMaybe], short
	for _, c := range sc.maybe {
		e := events[c.event]
		d := e.GetDigest()
		k := digestKey(d)
		if j, ok := p.accepted.get(k, d); ok {
			if c.pos >= 0 {
				measured[c.pos].accepted = int32(j)
			}
			if seen[j/64]&(1<<(j%64)) == 0 {
				seen[j/64] |= 1 << (j % 64)
				nSeen++
			}
		}
		if anyRevoked {
			if r, ok := p.revoked.get(k, d); ok {
				hits = append(hits, revokedHit{r: r, pcr: int(e.GetPcrIndex()), event: int(c.event), typ: e.GetUntrustedType()})
			}
		}
	}
	sc.ds = measured
	if nSeen > 0 {
		a.ReferenceValues = make([]string, 0, nSeen)
		for w, word := range seen {
			for word != 0 {
				a.ReferenceValues = append(a.ReferenceValues, p.acceptedHex[w*64+bits.TrailingZeros64(word)])
				word &= word - 1
			}
		}
	}
	if len(measured) > 0 {
		a.Measured = p.hexSorted(events, sc)
	}
	if len(hits) > 0 {
		msgs := make([]string, len(hits))
		for i, h := range hits {
			if h.event >= 0 {
				h.event = s.EventPosition(h.event) // the log's numbering (tpm2_eventlog's)
			}
			msgs[i] = h.String()
		}
		slices.Sort(msgs)
		msgs = slices.Compact(msgs)
		combine(a.Vector, p.prog.revClaim, p.prog.revValue)
		a.Failures = append(a.Failures, Failure{Rule: RevokedRule, Claim: p.prog.revClaim, Value: p.prog.revValue,
			Reason: "the evidence contains a revoked reference value: " + strings.Join(msgs, "; ")})
	}
	return sc
}

// candidate is an event whose digest may be accepted or revoked, and the position of its
// digest in digestScan.ds (-1 when not recorded).
type candidate struct{ event, pos int32 }

// rawDigest is an event digest: its digestKey, the event's index and the index of the digest
// in acceptedHex (-1 when not accepted). It holds no pointer, so sorting moves no pointers.
type rawDigest struct {
	key             uint64
	event, accepted int32
}

// hexSorted returns the distinct digests of sc.ds (digests of events) in byte order (the order
// of their lowercase hex), hex-encoded: accepted reference values reuse their encoding, the
// others are substrings of one string (two allocations, whatever the number of digests). It
// records in sc.known the encoding of every event of sc.ds.
func (p *Policy) hexSorted(events []*pb.Event, sc *digestScan) []string {
	ds := sortDigests(sc, events)
	first := slices.Grow(sc.first[:0], len(ds))[:len(ds)]
	sc.first = first
	n, unique := 0, 0
	for i, d := range ds {
		first[i] = i == 0 || ds[i-1].key != d.key || !bytes.Equal(events[ds[i-1].event].GetDigest(), events[d.event].GetDigest())
		if first[i] {
			unique++
			if d.accepted < 0 {
				n += 2 * len(events[d.event].GetDigest())
			}
		}
	}
	buf := slices.Grow(sc.buf[:0], n)[:n]
	sc.buf = buf
	off := 0
	for i, d := range ds {
		if first[i] && d.accepted < 0 {
			off += hex.Encode(buf[off:], events[d.event].GetDigest())
		}
	}
	all := string(buf) // one copy: buf is reused
	out := make([]string, 0, unique)
	at := slices.Grow(sc.known.at[:0], len(events))[:len(events)]
	clear(at)
	off = 0
	lower := true // the last digest of out is encoded in lowercase, as the input encodes it
	for i, d := range ds {
		if first[i] {
			if d.accepted >= 0 {
				out = append(out, p.acceptedHex[d.accepted]) // already encoded (as the set has it)
				lower = p.acceptedLower[d.accepted]
			} else {
				l := 2 * len(events[d.event].GetDigest())
				out = append(out, all[off:off+l])
				off += l
				lower = true
			}
		}
		if lower {
			at[d.event] = int32(len(out))
		}
	}
	sc.known = encodings{strs: out, at: at}
	return out
}

// sortDigests sorts sc.ds by digest bytes (slices.SortFunc; the key, the first 8 bytes
// big-endian, decides first when every digest has 8 bytes or more) and returns it.
func sortDigests(sc *digestScan, events []*pb.Event) []rawDigest {
	slices.SortFunc(sc.ds, func(x, y rawDigest) int {
		if !sc.short && x.key != y.key {
			return cmp.Compare(x.key, y.key)
		}
		return bytes.Compare(events[x.event].GetDigest(), events[y.event].GetDigest())
	})
	return sc.ds
}

// revokedHit is one place a revoked digest appears: a PCR value (pcr >= 0, event -1 and typ 0)
// or an event (its position in the log, -1 when unknown).
type revokedHit struct {
	r     refvalues.Revocation
	pcr   int
	event int
	typ   uint32
	// pcrValue: the digest is the PCR's value, not an event's.
	pcrValue bool
}

func (h revokedHit) String() string {
	where := "PCR " + strconv.Itoa(h.pcr)
	switch {
	case h.pcrValue:
	case h.event >= 0:
		where = fmt.Sprintf("event %d (PCR %d, %s)", h.event, h.pcr, tcg.EventType(h.typ).TCGString())
	default:
		where = fmt.Sprintf("an event (PCR %d, %s)", h.pcr, tcg.EventType(h.typ).TCGString())
	}
	msg := fmt.Sprintf("%s is revoked (%s)", where, h.r.Digest)
	if h.r.Reason != "" {
		msg += ": " + h.r.Reason
	}
	return msg
}
