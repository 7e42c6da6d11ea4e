package policy

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"
	"github.com/google/go-eventlog/tcg"
	pb "github.com/google/go-tpm-tools/proto/attest"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/token"
)

// Policy is a compiled Program bound to reference values: the Appraiser the issuer runs.
// Appraise is pure (no I/O, no clock) and safe for concurrent use; a Policy never changes (the
// Engine swaps whole Policies).
type Policy struct {
	prog *Program
	// refs is the CEL value of the variable refs: set name -> map digest -> true; sets holds
	// the same maps for native checks.
	refs ref.Val
	sets map[string]map[string]any
	// counts is the size of each effective set (for explanations).
	counts map[string]int
	// accepted maps every value of every set that is not revoked to its index in acceptedHex
	// (sorted, unique); revoked maps every revoked digest to its revocation.
	accepted    digestIndex[int]
	acceptedHex []string
	revoked     digestIndex[refvalues.Revocation]
	refsHash    string
	id          string
}

var _ Appraiser = (*Policy)(nil)

// New compiles f and binds it to the reference values of snap (nil for none beyond the file's).
func New(f *File, snap *refvalues.Snapshot) (*Policy, error) {
	p, err := Compile(f)
	if err != nil {
		return nil, err
	}
	return p.Bind(snap)
}

// Bind returns a Policy evaluating p with reference values: for every set, the file's values
// and snap's, minus every revoked digest (the file's revoked list and snap's). Sets only snap
// has are bound too. Its ID is "sha256:" + hex(SHA-256(policy digest || "\n" || reference
// values digest)): it changes whenever the rules or the accepted or revoked values change.
func (p *Program) Bind(snap *refvalues.Snapshot) (*Policy, error) {
	if snap == nil {
		snap = &refvalues.Snapshot{}
	}
	revoked := map[string]refvalues.Revocation{}
	for _, r := range p.file.Revoked {
		revoked[r.Digest] = r
	}
	for d, r := range snap.Revoked {
		if _, ok := revoked[d]; !ok {
			revoked[d] = r
		}
	}
	sets := map[string][]string{}
	for name, vals := range p.file.ReferenceValues {
		sets[name] = append(sets[name], vals...)
	}
	for name, vals := range snap.Sets {
		sets[name] = append(sets[name], vals...)
	}
	pol := &Policy{prog: p, counts: map[string]int{}, sets: map[string]map[string]any{}}
	eff := &refvalues.Snapshot{Sets: map[string][]string{}, Revoked: revoked}
	celSets := make(map[string]any, len(sets))
	var all []string
	for name, vals := range sets {
		slices.Sort(vals)
		vals = slices.Compact(vals)
		keep := vals[:0]
		m := make(map[string]any, len(vals))
		for _, v := range vals {
			if _, ok := revoked[v]; ok {
				continue
			}
			if _, err := hex.DecodeString(v); err != nil {
				return nil, &LoadError{Field: "reference_values." + name, Err: fmt.Errorf("%w: %q", refvalues.ErrBadDigest, v)}
			}
			keep = append(keep, v)
			m[v] = true
			all = append(all, v)
		}
		eff.Sets[name] = keep
		pol.counts[name] = len(keep)
		celSets[name] = types.NewStringInterfaceMap(types.DefaultTypeAdapter, m)
		pol.sets[name] = m
	}
	slices.Sort(all)
	pol.acceptedHex = slices.Compact(all)
	for i, v := range pol.acceptedHex {
		raw, _ := hex.DecodeString(v) // checked above
		pol.accepted.put(raw, i)
	}
	for d, r := range revoked {
		raw, err := hex.DecodeString(d)
		if err != nil {
			return nil, &LoadError{Field: "revoked", Err: fmt.Errorf("%w: %q", refvalues.ErrBadDigest, d)}
		}
		pol.revoked.put(raw, r)
	}
	pol.refs = types.NewStringInterfaceMap(types.DefaultTypeAdapter, celSets)
	pol.refsHash = eff.Digest()
	sum := sha256.Sum256([]byte(p.digest + "\n" + pol.refsHash))
	pol.id = "sha256:" + hex.EncodeToString(sum[:])
	return pol, nil
}

// ID returns the policy identifier carried as ear_appraisal_policy_id (see Bind).
func (p *Policy) ID() string { return p.id }

// Program returns the compiled rules.
func (p *Policy) Program() *Program { return p.prog }

// ReferenceValuesDigest returns the SHA-256 (hex) of the effective reference values (accepted
// sets and revoked digests) bound to the policy.
func (p *Policy) ReferenceValuesDigest() string { return p.refsHash }

// Revoked returns the revoked digests in force (the file's and the store's), sorted by digest.
func (p *Policy) Revoked() []refvalues.Revocation {
	s := refvalues.Snapshot{Revoked: map[string]refvalues.Revocation{}}
	for _, es := range p.revoked.m {
		for _, e := range es {
			s.Revoked[e.val.Digest] = e.val
		}
	}
	return s.RevokedList()
}

// SetSizes returns the number of accepted (not revoked) digests of each bound set.
func (p *Policy) SetSizes() map[string]int { return maps.Clone(p.counts) }

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

func (x *digestIndex[V]) get(raw []byte) (V, bool) {
	var zero V
	k := digestKey(raw)
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

// activation resolves the input variables for one evaluation (one goroutine), converting each
// to CEL on first use only.
type activation struct {
	in                               *input
	pcrs, tpm, boot, ak, clock, refs ref.Val
}

func (a *activation) ResolveName(name string) (any, bool) {
	ad := env.CELTypeAdapter()
	switch name {
	case varBoot:
		if a.boot == nil {
			a.boot = ad.NativeToValue(a.in.boot)
		}
		return a.boot, true
	case varPCRs:
		if a.pcrs == nil {
			pcrs := make(map[string]any, len(a.in.pcrs))
			for bank, m := range a.in.pcrs {
				pcrs[bank] = types.NewStringStringMap(ad, m)
			}
			a.pcrs = types.NewStringInterfaceMap(ad, pcrs)
		}
		return a.pcrs, true
	case varRefs:
		return a.refs, true
	case varAK:
		if a.ak == nil {
			a.ak = ad.NativeToValue(a.in.ak)
		}
		return a.ak, true
	case varClock:
		if a.clock == nil {
			a.clock = ad.NativeToValue(a.in.clock)
		}
		return a.clock, true
	case varTPM:
		if a.tpm == nil {
			a.tpm = ad.NativeToValue(a.in.tpm)
		}
		return a.tpm, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

func (p *Policy) activation(in *input) *activation { return &activation{in: in, refs: p.refs} }

// Appraise evaluates every rule over s and returns the appraisal: the trustworthiness vector
// (each claim keeps the worst value any rule set for it; a "none" value such as no_claim only
// where no rule said more, see combine), one Failure per failed rule with its reason, the
// built-in revoked-reference-value failure when the evidence carries a revoked digest, the
// reference values the evidence matched, and Status = Finish(): never better than the worst
// claim. A rule that cannot be evaluated (e.g. a PCR missing from the quote) fails. Failures
// are listed contraindicated first, then warnings, then those that made no claim, in rule order
// within each.
func (p *Policy) Appraise(s *evidence.State) *Appraisal {
	a := &Appraisal{PolicyID: p.id, Vector: token.TrustworthinessVector{}}
	if s == nil || s.Machine == nil {
		a.Vector[p.prog.revClaim] = token.ValueUnexpectedEvidence
		a.Failures = append(a.Failures, Failure{Rule: "evidence", Claim: p.prog.revClaim, Value: token.ValueContraindicated, Reason: errNoState.Error()})
		a.Finish()
		a.Status = token.TierContraindicated
		return a
	}
	p.scanDigests(s, a)
	in := buildInput(s, p.prog.needs)
	act := p.activation(in)
	for _, r := range p.prog.rules {
		if r.native != nil && r.native.holds(in, p.sets) {
			if r.OnSuccess != nil {
				combine(a.Vector, r.Claim, int8(*r.OnSuccess))
			}
			continue
		}
		out, _, err := r.prg.Eval(act)
		if err == nil && out == types.True {
			if r.OnSuccess != nil {
				combine(a.Vector, r.Claim, int8(*r.OnSuccess))
			}
			continue
		}
		combine(a.Vector, r.Claim, int8(r.OnFailure))
		a.Failures = append(a.Failures, Failure{Rule: r.Name, Claim: r.Claim, Value: int8(r.OnFailure), Reason: p.reason(r, act, out, err)})
	}
	// Refusals first, then warnings, then rules that made no claim (an operator reads from the
	// top); rule order within each.
	slices.SortStableFunc(a.Failures, func(x, y Failure) int { return listOrder(x.Value) - listOrder(y.Value) })
	return a.Finish()
}

func listOrder(v int8) int {
	switch token.TierOf(v) {
	case token.TierContraindicated:
		return 0
	case token.TierWarning:
		return 1
	}
	return 2
}

// combine sets claim to v unless it already holds a worse value, so the claim keeps the worst
// value any rule set, whatever the rule order: affirming < warning < contraindicated, the
// larger value within one tier. A "none" value (no_claim, unexpected_evidence) only fills a
// claim no rule has said anything about (or that holds another "none" value): it never erases
// an affirming, warning or contraindicated value, so the status (the worst tier among the
// claims, Appraisal.Finish) is never better than the worst value a rule set.
func combine(vec token.TrustworthinessVector, claim string, v int8) {
	old, ok := vec[claim]
	if !ok {
		vec[claim] = v
		return
	}
	to, tv := token.TierOf(old), token.TierOf(v)
	switch {
	case tv == token.TierNone && to != token.TierNone:
		// Neutral: keeps what the other rules said.
	case to == token.TierNone && tv != token.TierNone:
		vec[claim] = v
	case tv.Worse(to) || (tv == to && v > old):
		vec[claim] = v
	}
}

// maxRecordedPCR is the last PCR whose event digests an appraisal records (PCRs 0-9: firmware,
// boot loaders, GRUB, kernel; PCRs 10 and above hold runtime logs such as IMA's).
const maxRecordedPCR = 9

// scanDigests walks every digest of the evidence (PCR values and event digests) once. It
// records in a.ReferenceValues (sorted, unique, lowercase hex) the accepted reference values
// the evidence matched and, when some rule reads a reference-value set, every event digest of
// PCRs 0-9 (what those rules and the pinned PCRs appraised), so that a token can be found by
// any measurement it vouched for once that measurement is revoked. Revoked digests fail the
// built-in revoked-reference-value rule, naming where they appear.
func (p *Policy) scanDigests(s *evidence.State, a *Appraisal) {
	var seen []uint64 // bit i: acceptedHex[i] was matched
	nSeen := 0
	match := func(raw []byte) int {
		i, ok := p.accepted.get(raw)
		if !ok {
			return -1
		}
		if seen == nil {
			seen = make([]uint64, (len(p.acceptedHex)+63)/64)
		}
		if seen[i/64]&(1<<(i%64)) == 0 {
			seen[i/64] |= 1 << (i % 64)
			nSeen++
		}
		return i
	}
	var hits []revokedHit
	anyRevoked := p.revoked.len() > 0
	for _, idx := range s.LoggedPCRs {
		v, ok := s.PCRs[idx]
		if !ok {
			continue
		}
		match(v)
		if anyRevoked {
			if r, ok := p.revoked.get(v); ok {
				hits = append(hits, revokedHit{r: r, pcr: int(idx), event: -1, pcrValue: true})
			}
		}
	}
	events := s.Machine.GetRawEvents()
	var measured []rawDigest // raw event digests of PCRs 0-9, when recorded
	if p.prog.usesSets {
		measured = make([]rawDigest, 0, len(events))
	}
	for i, e := range events {
		d := e.GetDigest()
		acc := match(d)
		if p.prog.usesSets && e.GetPcrIndex() <= maxRecordedPCR {
			measured = append(measured, rawDigest{key: digestKey(d), event: int32(i), accepted: int32(acc)})
		}
		if anyRevoked {
			if r, ok := p.revoked.get(d); ok {
				hits = append(hits, revokedHit{r: r, pcr: int(e.GetPcrIndex()), event: i, typ: e.GetUntrustedType()})
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
	if len(measured) > 0 {
		a.Measured = p.hexSorted(events, measured)
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

// rawDigest is an event digest: its digestKey, the event's index and the index of the digest
// in acceptedHex (-1 when not accepted). It holds no pointer, so sorting moves no pointers.
type rawDigest struct {
	key             uint64
	event, accepted int32
}

// hexSorted returns the distinct digests of ds (digests of events) in byte order (the order of
// their lowercase hex), hex-encoded: accepted reference values reuse their encoding, the others
// are substrings of one string (two allocations, whatever the number of digests). It sorts ds.
func (p *Policy) hexSorted(events []*pb.Event, ds []rawDigest) []string {
	raw := func(d rawDigest) []byte { return events[d.event].GetDigest() }
	long := true // every digest has 8 bytes or more: its key orders it (real digests do)
	for _, d := range ds {
		long = long && len(raw(d)) >= 8
	}
	slices.SortFunc(ds, func(x, y rawDigest) int {
		if long && x.key != y.key {
			return cmp.Compare(x.key, y.key) // the first 8 bytes, big-endian: byte order
		}
		return bytes.Compare(raw(x), raw(y))
	})
	ds = slices.CompactFunc(ds, func(x, y rawDigest) bool { return x.key == y.key && bytes.Equal(raw(x), raw(y)) })
	n := 0
	for _, d := range ds {
		if d.accepted < 0 {
			n += hex.EncodedLen(len(raw(d)))
		}
	}
	var sb strings.Builder
	sb.Grow(n)
	var tmp [128]byte // SHA-512 in hex
	for _, d := range ds {
		if d.accepted < 0 {
			sb.Write(hex.AppendEncode(tmp[:0], raw(d)))
		}
	}
	all := sb.String()
	out := make([]string, len(ds))
	off := 0
	for i, d := range ds {
		if d.accepted >= 0 {
			out[i] = p.acceptedHex[d.accepted] // already encoded
			continue
		}
		l := hex.EncodedLen(len(raw(d)))
		out[i] = all[off : off+l]
		off += l
	}
	return out
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

// reason explains a failed rule: its message (or its expression), then what was seen: the
// evaluation error, the value of its explain expression, or the values of the input terms it
// reads and the sizes of the reference-value sets it uses.
func (p *Policy) reason(r *compiledRule, act *activation, out ref.Val, err error) string {
	msg := r.Message
	if msg == "" {
		msg = "expected " + r.Expr
	}
	var seen []string
	if err != nil {
		seen = append(seen, "could not be evaluated: "+err.Error())
	} else if out != types.False {
		seen = append(seen, "evaluated to "+render(out))
	}
	if r.explain != nil {
		if v, _, err := r.explain.Eval(act); err == nil {
			if s, ok := v.(types.String); ok {
				seen = append(seen, string(s)) // the rule's own words
			} else {
				seen = append(seen, r.Explain+" = "+render(v))
			}
		} else {
			seen = append(seen, "explain: "+err.Error())
		}
	}
	for _, t := range r.terms {
		if v, _, err := t.prg.Eval(act); err == nil {
			seen = append(seen, t.text+" = "+render(v))
		} else {
			seen = append(seen, t.text+": "+err.Error())
		}
	}
	for _, s := range r.sets {
		n := p.counts[s]
		seen = append(seen, fmt.Sprintf("refs.%s has %d value%s", s, n, plural(n)))
	}
	if len(seen) == 0 {
		return msg
	}
	return msg + " (seen: " + strings.Join(seen, "; ") + ")"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// render formats a CEL value for an operator: strings quoted (long ones cut), lists up to 8
// items, maps by size.
func render(v ref.Val) string {
	switch x := v.(type) {
	case types.String:
		s := string(x)
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		return strconv.Quote(s)
	case types.Bool, types.Int, types.Uint, types.Double:
		return fmt.Sprint(x.Value())
	case traits.Mapper:
		return fmt.Sprintf("{%v entries}", x.Size())
	case traits.Lister:
		n, _ := x.Size().Value().(int64)
		var parts []string
		for i := int64(0); i < n && i < 8; i++ {
			parts = append(parts, render(x.Get(types.Int(i))))
		}
		if n > 8 {
			parts = append(parts, fmt.Sprintf("... %d more", n-8))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Value())
}
