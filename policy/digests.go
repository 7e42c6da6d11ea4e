package policy

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-eventlog/tcg"

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

// digestScan is the scratch space of one evaluation's scanDigests, pooled between evaluations.
type digestScan struct {
	seen  []uint64 // bit i: acceptedHex[i] was matched
	maybe []int32  // events whose digest passes the filter of accepted or revoked digests
}

var digestScans = sync.Pool{New: func() any { return new(digestScan) }}

// scanDigests walks every digest of the evidence (PCR values and event digests) once. It
// records in a.ReferenceValues (sorted, unique, as the sets write them) the accepted reference
// values the evidence matched; revoked digests fail the built-in revoked-reference-value rule,
// naming where they appear.
func (p *Policy) scanDigests(s *evidence.State, a *Appraisal) {
	sc := digestScans.Get().(*digestScan)
	defer digestScans.Put(sc)
	words := (len(p.acceptedHex) + 63) / 64
	seen := slices.Grow(sc.seen[:0], words)[:words]
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
	// First, in a loop without calls (the compiler keeps its variables in registers), the few
	// events whose digest's first bytes pass the filter of the accepted or the revoked digests;
	// then the index lookups for those only.
	maybe := slices.Grow(sc.maybe[:0], len(events))[:len(events)]
	nMaybe := 0
	acceptedF, revokedF := &p.accepted.filter, &p.revoked.filter
	for i, e := range events {
		k := digestKey(e.GetDigest())
		if (acceptedF[(k>>6)&63]|revokedF[(k>>6)&63])&(uint64(1)<<(k&63)) != 0 {
			maybe[nMaybe] = int32(i)
			nMaybe++
		}
	}
	sc.maybe = maybe[:nMaybe]
	for _, i := range sc.maybe {
		e := events[i]
		d := e.GetDigest()
		k := digestKey(d)
		if j, ok := p.accepted.get(k, d); ok && seen[j/64]&(1<<(j%64)) == 0 {
			seen[j/64] |= 1 << (j % 64)
			nSeen++
		}
		if anyRevoked {
			if r, ok := p.revoked.get(k, d); ok {
				hits = append(hits, revokedHit{r: r, pcr: int(e.GetPcrIndex()), event: int(i), typ: e.GetUntrustedType()})
			}
		}
	}
	if nSeen > 0 {
		a.ReferenceValues = make([]string, 0, nSeen)
		for w, word := range seen {
			for word != 0 {
				a.ReferenceValues = append(a.ReferenceValues, p.acceptedHex[w*64+bits.TrailingZeros64(word)])
				word &= word - 1
			}
		}
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
