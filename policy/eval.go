package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"

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
	// native holds, for each rule of prog with a native check, the sets it reads.
	native []nativeSets
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
	pol.native = make([]nativeSets, len(p.rules))
	for i, r := range p.rules {
		if r.native != nil {
			pol.native[i] = r.native.bind(pol.sets)
		}
	}
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
			in := a.in.pcrMap()
			pcrs := make(map[string]any, len(in))
			for bank, m := range in {
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

// activation returns the activation of in with p's reference values (in its box, when in has
// one).
func (p *Policy) activation(in *input) *activation {
	if in.box == nil {
		return &activation{in: in, refs: p.refs}
	}
	in.box.act = activation{in: in, refs: p.refs}
	return &in.box.act
}

// Appraise evaluates every rule over s and returns the appraisal: the trustworthiness vector
// (each claim keeps the worst value any rule set for it; a "none" value such as no_claim only
// where no rule said more, see combine), one Failure per failed rule with its reason, the
// built-in revoked-reference-value failure when the evidence carries a revoked digest, the
// reference values the evidence matched, RecordMeasured (Measured is the issuer's to call), and
// Status = Finish(): never better than the worst
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
	a.RecordMeasured = p.prog.usesSets
	in := buildInput(s, p.prog.needs)
	defer in.release() // after the frame is closed
	// One execution frame for every rule: cel-go evaluates in a frame it is given rather than
	// taking one from its pool for each evaluation (the programs have no default variables).
	var vars interpreter.Activation = p.activation(in)
	if f, err := interpreter.NewExecutionFrame(vars); err == nil {
		defer f.Close()
		vars = f
	}
	for i, r := range p.prog.rules {
		var out ref.Val
		var err error
		holds, native := false, false
		if r.native != nil {
			holds, native = r.native.verdict(in, p.native[i])
		}
		if native {
			out = types.Bool(holds) // what CEL computes (nativeCheck.verdict)
		} else {
			out, _, err = r.prg.Eval(vars)
		}
		if err == nil && out == types.True {
			if r.OnSuccess != nil {
				combine(a.Vector, r.Claim, int8(*r.OnSuccess))
			}
			continue
		}
		combine(a.Vector, r.Claim, int8(r.OnFailure))
		a.Failures = append(a.Failures, Failure{Rule: r.Name, Claim: r.Claim, Value: int8(r.OnFailure), Reason: p.reason(r, vars, out, err)})
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

// reason explains a failed rule: its message (or its expression), then what was seen: the
// evaluation error, the value of its explain expression, or the values of the input terms it
// reads and the sizes of the reference-value sets it uses.
func (p *Policy) reason(r *compiledRule, act interpreter.Activation, out ref.Val, err error) string {
	var b strings.Builder
	b.Grow(256)
	if r.Message != "" {
		b.WriteString(r.Message)
	} else {
		b.WriteString("expected ")
		b.WriteString(r.Expr)
	}
	n := 0 // items of "(seen: a; b)" written
	item := func(parts ...string) {
		if n == 0 {
			b.WriteString(" (seen: ")
		} else {
			b.WriteString("; ")
		}
		for _, s := range parts {
			b.WriteString(s)
		}
		n++
	}
	if err != nil {
		item("could not be evaluated: ", err.Error())
	} else if out != types.False {
		item("evaluated to ", render(out))
	}
	if r.explain != nil {
		if v, _, err := r.explain.Eval(act); err == nil {
			if s, ok := v.(types.String); ok {
				item(string(s)) // the rule's own words
			} else {
				item(r.Explain, " = ", render(v))
			}
		} else {
			item("explain: ", err.Error())
		}
	}
	for _, t := range r.terms {
		if v, _, err := t.prg.Eval(act); err == nil {
			item(t.text, " = ", render(v))
		} else {
			item(t.text, ": ", err.Error())
		}
	}
	for _, s := range r.sets {
		c := p.counts[s]
		item("refs.", s, " has ", strconv.Itoa(c), " value", plural(c))
	}
	if n > 0 {
		b.WriteString(")")
	}
	return b.String()
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
